"""The request path from source against compiled, in turn, in one run of the benchmark.

The compiled request path (``orcarouter.native``) runs about a quarter fewer instructions per
request than the same code from source. CPU time on this kind of machine varies up to threefold
from one hour to the next, and in some hours the compiled path measured no faster, in others a
fifth faster; two reports from different hours cannot settle it. So each report measures both:
two gateways on the gateway's core, one with ``ORCAROUTER_NATIVE=0`` and one with ``require``,
and for each scenario closed-loop wrk runs that alternate between them (A B B A ...), each run
drained like the main ones. What the hour does to one path it does to the other, run by run.

Tunables: BENCH_PATHS_ROUNDS (4; each round is one run through each path; 0 skips the
comparison), BENCH_PATHS_SECONDS (5, per run). ``report.py`` renders and checks the runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence import ledger, log_problems
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
    ledgers: dict[str, tuple[list[tuple[Any, ...]], str | None]] = field(default_factory=dict)
    log_problems: dict[str, list[str]] = field(default_factory=dict)  # path label -> lines
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
        run.ledgers[label] = ledger(bench.tmp / f"gateway-data-{label}" / "orcarouter.db")
        _, run.log_problems[label] = log_problems(logs[label])
    return run
