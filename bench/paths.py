"""The request path from source against compiled, in turn, in one run of the benchmark.

The compiled request path (``orcarouter.native``) runs about a quarter fewer instructions per
request than the same code from source. CPU time on this kind of machine varies up to threefold
from one hour to the next, and in some hours the compiled path measured no faster, in others a
fifth faster; two reports from different hours cannot settle it. So each report measures both:
two gateways on the gateway's core, one with ``ORCAROUTER_NATIVE=0`` and one with ``require``,
and for each scenario closed-loop wrk runs that alternate between them (A B B A ...), each run
drained like the main ones. What the hour does to one path it does to the other, run by run.

Tunables: BENCH_PATHS_ROUNDS (4; each round is one run through each path; 0 skips the
comparison), BENCH_PATHS_SECONDS (5, per run).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence import ledger, ledger_problems, log_problems
from host import request_path

if TYPE_CHECKING:
    from bench import Bench

# (label, ORCAROUTER_NATIVE) of the two gateways.
PATHS = (("source", "0"), ("compiled", "require"))
SCENARIOS = ("openai non-stream", "anthropic non-stream", "cross-format stream")


@dataclass(slots=True)
class PathsRun:
    """The comparison's runs: per (scenario, path label), wrk's results in round order."""

    rounds: int
    seconds: int
    described: dict[str, str] = field(default_factory=dict)  # path label -> what it loaded
    runs: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    precheck: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str = ""  # why the comparison did not run


def unavailable() -> str:
    """Why the compiled path cannot be started here (no build, a stale one, another tree), or
    "" when it can."""
    described = request_path("require")
    return described if described.startswith("the gateway does not start") else ""


def measure_paths(bench: Bench, config: Path, stamp: str, rounds: int, seconds: int) -> PathsRun:
    """Both gateways, started side by side; each chosen scenario through each in turn."""
    import bench as orchestrator  # the caller's module; imported here to avoid a cycle

    run = PathsRun(rounds, seconds)
    if reason := unavailable():
        run.skipped = reason
        return run
    chosen = [s for s in bench.scenarios if s.name in SCENARIOS] or bench.scenarios[:1]
    targets, logs, procs = {}, {}, []
    try:
        for label, native in PATHS:
            logs[label] = orchestrator.RESULTS / f"gateway-{stamp}-{label}.log"
            proc, targets[label] = orchestrator.start_gateway(
                bench,
                config,
                bench.tmp / f"gateway-data-{label}",
                logs[label],
                # ``env`` sets the path over the benchmark's own ORCAROUTER_NATIVE.
                orchestrator.pinned(bench.opts.gateway_cpu, "env", f"ORCAROUTER_NATIVE={native}"),
                (label, f"gateway ({label})"),
            )
            procs.append(proc)
            bench.targets.append(targets[label])
            run.described[label] = request_path(native)
        run.precheck = orchestrator.precheck(bench, list(targets.values()))
        order = [label for label, _ in PATHS]
        for scenario in chosen:
            for label in order:  # one warm-up each, then the rounds
                orchestrator.log(f"request paths: warm-up {scenario.name} -> {label}")
                bench.wrk(scenario, targets[label], max(bench.opts.warmup, 1))
            for turn in range(rounds):
                for label in order if turn % 2 == 0 else order[::-1]:
                    orchestrator.log(f"request paths: {scenario.name} -> {label}, round {turn + 1}")
                    result = bench.wrk(scenario, targets[label], seconds)
                    run.runs.setdefault((scenario.name, label), []).append(result)
        for proc in procs:  # each drains its usage queue into its database
            bench.services.stop(proc)
    finally:
        for target in targets.values():
            bench.targets.remove(target)
    for label, _ in PATHS:
        records, error = ledger(bench.tmp / f"gateway-data-{label}" / "orcarouter.db")
        run.problems += ledger_problems(f"{label} gateway's ledger", records, error)
        _, lines = log_problems(logs[label])
        if lines:
            run.problems.append(f"{label} gateway log: {len(lines)} warning/error lines")
    run.problems += _run_problems(run)
    return run


MAX_FOREIGN = 5.0  # % of a run on the gateway's core used by no process of the benchmark


def _run_problems(run: PathsRun) -> list[str]:
    problems = [
        f"pre-check {row['scenario']} via {row['target']}: HTTP {row['status']}"
        for row in run.precheck
        if row["status"] != 200 or not row["identical"]
    ]
    for (name, label), results in run.runs.items():
        for turn, result in enumerate(results, 1):
            errors = sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout"))
            if errors or result["non_2xx"]:
                problems.append(f"{name} via {label}, round {turn}: {errors} wrk errors")
            foreign = result["cores"]["gateway_core_foreign"]
            if foreign > MAX_FOREIGN:
                problems.append(
                    f"{name} via {label}, round {turn}: other processes used {foreign:.0f} % "
                    "of the gateway's core"
                )
    return problems


def cpu_us(result: dict[str, Any]) -> float:
    """CPU µs per request of one drained wrk run."""
    return float(result["cpu_s"]) * 1e6 / max(int(result["requests"]), 1)


def render(run: PathsRun | None) -> list[str]:
    """The report's section: per scenario, every round's CPU per request through each path,
    the medians, and compiled ÷ source."""
    if run is None:
        return []
    out = ["", "## Request path: from source against compiled, in turn", ""]
    if run.skipped:
        return [*out, f"Not measured: the compiled path cannot start here ({run.skipped})."]
    source, compiled = (label for label, _ in PATHS)
    out += [
        "Two gateways on the gateway's core, one running its request path from source "
        f"(`ORCAROUTER_NATIVE=0`: {run.described.get(source, '?')}), one compiled "
        f"(`ORCAROUTER_NATIVE=require`: {run.described.get(compiled, '?')}). Per scenario, one "
        f"warm-up each, then {run.rounds} rounds of closed-loop wrk runs of {run.seconds} s "
        "through each in turn (the order flips every round), each drained. Gateway CPU µs "
        "per request:",
        "",
    ]
    if run.problems:
        out += ["**Not valid**:", "", *(f"- {p}" for p in run.problems), ""]
    rows = []
    for name in dict.fromkeys(n for n, _ in run.runs):
        a = [cpu_us(r) for r in run.runs.get((name, source), [])]
        b = [cpu_us(r) for r in run.runs.get((name, compiled), [])]
        if not a or not b:
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        faster = sum(y < x for x, y in zip(a, b, strict=False))
        rows.append(
            [
                name,
                ", ".join(f"{x:.1f}" for x in a),
                ", ".join(f"{y:.1f}" for y in b),
                f"{ma:.1f} / {mb:.1f}",
                f"{mb / ma:.3f}",
                f"{faster} of {min(len(a), len(b))}",
            ]
        )
    header = [
        "scenario", f"{source}, by round", f"{compiled}, by round",
        f"median {source} / {compiled}", f"{compiled} ÷ {source}", "rounds compiled was faster",
    ]  # fmt: skip
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out
