"""Rendering the benchmark's results as a markdown report."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence import ledger_problems
from paths import PATHS

if TYPE_CHECKING:
    from bench import Bench, Results, WorkersRun
    from paths import PathsRun
    from scenarios import Scenario

# Issue 6's targets, shown next to the measured values as a reading aid.
TARGET_CPU_US = 110.0
TARGET_PROXY_FRACTION = 0.25
TARGET_ADDED_P50_MS = 0.3
TARGET_ADDED_P99_MS = 1.0
TARGET_ADDED_TTFT_MS = 1.0
TARGET_TRANSLATED_EVENTS_PER_CPU_S = 100_000.0

# Above this share (in % of a run) of CPU used by processes that are not the benchmark's, a run
# measured a shared core, not the gateway alone.
MAX_FOREIGN_GATEWAY_CORE = 5.0
MAX_FOREIGN_LOAD_CORE = 10.0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _errors(result: dict[str, Any] | None) -> int:
    if result is None:
        return 0
    return sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout"))


def _error_text(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    parts = [f"{k} {result[k]}" for k in ("connect", "read", "write", "status", "timeout")]
    parts = [p for p in parts if not p.endswith(" 0")]
    return ", ".join(parts) if parts else "0"


def _cores(result: dict[str, Any] | None, which: int, *, busy: bool = True) -> str:
    """Core ``which`` (0: the gateway's, 1: the load's) busy and foreign CPU in % of the run."""
    if result is None or "cores" not in result:
        return "-"
    c = result["cores"]
    name = "gateway_core" if which == 0 else "load_core"
    foreign = f"{c[name + '_foreign']:.0f}"
    return f"{c[name + '_busy']:.0f} / {foreign}" if busy else foreign


def _rps(result: dict[str, Any] | None) -> float | None:
    if result is None or not result["duration_us"]:
        return None
    return float(result["requests"]) * 1e6 / float(result["duration_us"])


def _cpu_us(result: dict[str, Any] | None) -> float | None:
    if result is None or not result["requests"]:
        return None
    return float(result["cpu_s"]) * 1e6 / float(result["requests"])


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _ms(stats: dict[str, float], key: str) -> float | None:
    return stats.get(key) if stats else None


def _pair(a: float | None, b: float | None, digits: int = 3) -> str:
    return f"{_fmt(a, digits)} / {_fmt(b, digits)}"


def _cpu_per_request(result: dict[str, Any] | None) -> float | None:
    """A latency run's CPU µs per request sent (None without the run)."""
    if result is None or not result["sent"]:
        return None
    return float(result["cpu_s"]) * 1e6 / float(result["sent"])


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _added(through: dict[str, Any], direct: dict[str, Any], key: str, pct: str) -> float | None:
    """What going ``through`` a hop added to ``direct``'s percentile ``pct`` of timing ``key``."""
    return _diff(_ms(through[key], pct), _ms(direct[key], pct))


def _added_pair(through: dict[str, Any] | None, direct: dict[str, Any], key: str) -> str:
    """What going ``through`` a proxy added to ``direct``'s p50 and p99 (``key``: which
    timing), or "-" when it was not measured."""
    if through is None:
        return "-"
    return " / ".join(_fmt(_added(through, direct, key, pct), 3) for pct in ("p50", "p99"))


def _reference(through: dict[str, Any] | None, direct: dict[str, Any], key: str, pct: str) -> str:
    """The suffix naming what the reference hop (nginx proxy_pass) added in the same run."""
    if through is None:
        return ""
    return f" (nginx proxy_pass: {_fmt(_added(through, direct, key, pct), 3, ' ms')})"


def _contention(results: Results, bench: Bench, labels: dict[str, str]) -> list[str]:
    problems: list[str] = []
    runs = [("throughput", k, r) for k, r in results.throughput.items()]
    runs += [("latency", k, r) for k, r in results.latency.items()]
    for kind, (name, key), result in runs:
        cores = result.get("cores", {})
        gw_foreign = cores.get("gateway_core_foreign", 0.0)
        load_foreign = cores.get("load_core_foreign", 0.0)
        shared = []
        if key != "direct" and gw_foreign > MAX_FOREIGN_GATEWAY_CORE:
            shared.append(f"{gw_foreign:.0f} % of gateway core {bench.opts.gateway_cpu}")
        if load_foreign > MAX_FOREIGN_LOAD_CORE:
            shared.append(f"{load_foreign:.0f} % of load core {bench.opts.load_cpu}")
        if shared:
            problems.append(
                f"{kind} {name} via {labels[key]}: other processes used " + ", ".join(shared)
            )
    return problems


def _validity(results: Results, bench: Bench) -> list[str]:
    problems: list[str] = []
    for row in results.precheck:
        if row["status"] != 200:
            problems.append(
                f"pre-check {row['scenario']} via {row['target']}: HTTP {row['status']}"
            )
        elif not row["identical"]:
            problems.append(f"pre-check {row['scenario']} via {row['target']}: bytes differ")
    labels = {t.key: t.label for t in bench.targets}
    for (name, key), result in results.throughput.items():
        if _errors(result) or result["non_2xx"]:
            problems.append(f"wrk {name} via {labels[key]}: errors {_error_text(result)}")
    for (name, key), result in results.warmups.items():
        if _errors(result):
            problems.append(f"wrk warm-up {name} via {labels[key]}: errors {_error_text(result)}")
    for (name, key), result in {**results.latency, **results.paced}.items():
        if result["errors"]:
            problems.append(f"latency {name} via {labels[key]}: errors {result['errors']}")
    problems += _contention(results, bench, labels)
    problems += _workers_validity(results)
    problems += _paths_validity(results.paths) if results.paths else []
    problems += ledger_problems("usage ledger", results.ledger, results.ledger_error)
    if results.log_problems:
        problems.append(f"gateway log: {len(results.log_problems)} warning/error lines")
    return problems


def _workers_validity(results: Results) -> list[str]:
    problems: list[str] = []
    runs = [(f"--workers {count}", run) for count, run in results.workers.items()]
    if results.capped is not None:
        runs.append((f"--workers {results.capped.count}, capped keys", results.capped))
    for label, run in runs:
        for row in run.precheck:
            if row["status"] != 200 or not row["identical"]:
                problems.append(f"pre-check {row['scenario']} via {label}: HTTP {row['status']}")
        for name, result in run.throughput.items():
            if _errors(result) or result["non_2xx"]:
                problems.append(f"wrk {name} via {label}: errors {_error_text(result)}")
            foreign = result.get("cores", {}).get("all_foreign", 0.0)
            if foreign > MAX_FOREIGN_LOAD_CORE:
                problems.append(f"wrk {name} via {label}: other processes used {foreign:.0f} %")
        problems += ledger_problems(f"{label} ledger", run.ledger, run.ledger_error)
        if run.log_problems:
            problems.append(f"{label} log: {len(run.log_problems)} warning/error lines")
    return problems


def _paths_validity(run: PathsRun) -> list[str]:
    """What makes the source-against-compiled runs (``paths.py``) invalid."""
    problems = [
        f"pre-check {row['scenario']} via {row['target']}: HTTP {row['status']}"
        for row in run.precheck
        if row["status"] != 200 or not row["identical"]
    ]
    for (name, label), results in run.runs.items():
        for turn, result in enumerate(results, 1):
            where = f"wrk {name} via the {label} gateway, round {turn}"
            if _errors(result) or result["non_2xx"]:
                problems.append(f"{where}: errors {_error_text(result)}")
            foreign = result["cores"]["gateway_core_foreign"]
            if foreign > MAX_FOREIGN_GATEWAY_CORE:
                problems.append(f"{where}: other processes used {foreign:.0f} % of its core")
    for label, (records, error) in run.ledgers.items():
        problems += ledger_problems(f"{label} gateway's ledger", records, error)
    for label, lines in run.log_problems.items():
        if lines:
            problems.append(f"{label} gateway log: {len(lines)} warning/error lines")
    return problems


def _paths(run: PathsRun | None) -> list[str]:
    """The source-against-compiled section: per scenario, every round's CPU per request
    through each path, the medians, and compiled ÷ source."""
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
    rows = []
    for name in dict.fromkeys(n for n, _ in run.runs):
        a = [v for r in run.runs.get((name, source), []) if (v := _cpu_us(r)) is not None]
        b = [v for r in run.runs.get((name, compiled), []) if (v := _cpu_us(r)) is not None]
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
    return out + _table(header, rows)


def _events_per_cpu_s(scenario_events: int, result: dict[str, Any] | None) -> float | None:
    if result is None or not scenario_events or not float(result["cpu_s"]):
        return None
    return scenario_events * float(result["requests"]) / float(result["cpu_s"])


def _streams(results: Results, bench: Bench) -> list[str]:
    rows = []
    for s in bench.scenarios:
        if not s.stream:
            continue
        gateway = results.throughput.get((s.name, "gateway"))
        rows.append(
            [s.name, f"{s.client} -> {s.protocol}", str(s.events),
             _fmt(_events_per_cpu_s(s.events, gateway))]
        )  # fmt: skip
    if not rows:
        return []
    lines = ["", "Streams, upstream events relayed per second of gateway CPU (one core):", ""]
    return lines + _table(
        ["scenario", "client -> upstream protocol", "events per answer", "events / CPU s"], rows
    )


def _runs(
    table: dict[tuple[str, str], dict[str, Any]], scenarios: Sequence[Scenario]
) -> Iterator[tuple[Scenario, dict[str, Any], dict[str, Any], dict[str, Any] | None]]:
    """Each scenario measured both directly and through the gateway in ``table``: its direct,
    gateway and (when measured) nginx proxy_pass results."""
    for s in scenarios:
        direct, gateway = table.get((s.name, "direct")), table.get((s.name, "gateway"))
        if direct is not None and gateway is not None:
            yield s, direct, gateway, table.get((s.name, "proxy"))


def _paced_events_per_cpu_s(scenario: Scenario, result: dict[str, Any] | None) -> float | None:
    """Upstream events relayed per CPU second in a paced (open-loop) run."""
    if result is None or not float(result["cpu_s"]):
        return None
    return scenario.events * float(result["sent"]) / float(result["cpu_s"])


def _paced(results: Results, bench: Bench) -> list[str]:
    """The paced streams: CPU per stream and per event, gateway against nginx."""
    opts, rows = bench.opts, []
    for s, direct, gateway, proxy in _runs(results.paced, bench.paced):
        cpu, proxy_cpu = _cpu_per_request(gateway), _cpu_per_request(proxy)
        per_event = [None if c is None else c / s.events for c in (cpu, proxy_cpu)]
        rows.append(
            [s.name, str(s.events), _fmt(_ms(direct["total_ms"], "p50"), 1),
             f"{_fmt(cpu)} / {_fmt(per_event[0], 1)}",
             f"{_fmt(proxy_cpu)} / {_fmt(per_event[1], 1)}",
             _fmt(cpu / proxy_cpu if cpu and proxy_cpu else None, 2),
             _fmt(_paced_events_per_cpu_s(s, gateway)),
             _added_pair(gateway, direct, "ttfb_ms"),
             f"{direct['ok']}/{direct['measured']} / {gateway['ok']}/{gateway['measured']}"]
        )  # fmt: skip
    if not rows:
        return []
    lines = [
        "",
        "## Streams paced like a model's (one event per upstream write)",
        "",
        "The fake upstream above writes each answer at once, so the gateway reads a whole stream "
        "in one or two reads. Here `pacer.py` (behind the upstream nginx, unbuffered) sends the "
        f"same answers as a model does: one event per write, {opts.pace_ms:g} ms before each. "
        "Every event is then a read, a wake-up and a write to the client of its own. Open loop "
        f"at {opts.paced_rate:g} streams/s for {opts.latency_duration:g} s; CPU per stream is "
        "the process's CPU over the run divided by the streams sent.",
        "",
    ]
    return lines + _table(
        [
            "scenario", "events per stream", "direct stream p50 ms",
            "gateway CPU µs per stream / per event",
            "nginx proxy_pass CPU µs per stream / per event",
            "gateway ÷ nginx", "events / gateway CPU s", "added TTFB p50 / p99 ms",
            "ok/measured (direct / gateway)",
        ],
        rows,
    )  # fmt: skip


def _workers(results: Results, bench: Bench) -> list[str]:
    if not results.workers:
        return []
    counts = sorted(results.workers)
    low, high = results.workers[counts[0]], results.workers[counts[-1]]
    opts = bench.opts
    lines = [
        "",
        f"## Worker processes (`serve --workers {low.count}` vs `--workers {high.count}`)",
        "",
        f"Each gateway on cores {opts.both_cpus} (`taskset`), the fake upstream and wrk on core "
        f"{opts.load_cpu} as above, so the extra worker shares that core with the load side: "
        "the ratio shows how throughput scales on this machine, a machine with spare cores "
        "for the load would show more. CPU µs/req sums the parent and every worker.",
        "",
    ]
    rows = []
    for s in bench.scenarios:
        a, b = low.throughput.get(s.name), high.throughput.get(s.name)
        ra, rb = _rps(a), _rps(b)

        def busy(r: dict[str, Any] | None) -> str:
            return _fmt(r["cores"]["all_busy"], 0, " %") if r and "cores" in r else "-"

        rows.append(
            [s.name, _fmt(ra), _fmt(rb), _fmt(rb / ra if ra and rb else None, 2),
             f"{_fmt(_cpu_us(a), 1)} / {_fmt(_cpu_us(b), 1)}", f"{busy(a)} / {busy(b)}",
             f"{_error_text(a)} / {_error_text(b)}"]
        )  # fmt: skip
    lines += _table(
        ["scenario", f"req/s, {low.count} worker", f"req/s, {high.count} workers",
         f"{high.count} / {low.count}", "CPU µs/req", "both cores busy", "errors"],
        rows,
    )  # fmt: skip
    lines.append("")
    lines += _capped(results.capped, high)
    for run in (low, high, *([results.capped] if results.capped else [])):
        records = sum(int(r[5]) for r in run.ledger)
        lines.append(
            f"- `--workers {run.count}`{', capped keys' if run is results.capped else ''}: "
            f"{run.processes} processes at the end, "
            f"{run.rss_kib / 1024:.1f} MiB RSS together, {records:,} usage records "
            f"({run.ledger_error or 'ledger read'}), log `{run.log.name}` with "
            f"{len(run.log_problems)} warning/error lines."
        )
    return lines


def _capped(capped: WorkersRun | None, uncapped: WorkersRun) -> list[str]:
    """The most workers again with a USD cap on every key, against the same without."""
    if capped is None or not capped.throughput:
        return []
    name, result = next(iter(capped.throughput.items()))
    with_cap, without = _rps(result), _rps(uncapped.throughput.get(name))
    ratio = _fmt(with_cap / without if with_cap and without else None, 2)
    return [
        f"With a USD cap on every key (never reached: each request holds money, which across "
        f"workers without Redis is a database transaction, shared by the holds a worker asks "
        f"for meanwhile), `--workers {capped.count}`, {name}: {_fmt(with_cap)} req/s, "
        f"{ratio} of the same without caps ({_fmt(_cpu_us(result), 1)} CPU µs/req, errors "
        f"{_error_text(result)}).",
        "",
    ]


def render(results: Results, bench: Bench, gateway_log: Path) -> str:  # noqa: C901
    """The whole report."""
    opts = bench.opts
    m = results.machine
    keys = [t.key for t in bench.targets]
    has_proxy = "proxy" in keys
    out: list[str] = [
        f"# OrcaRouter benchmark, {results.started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
    ]
    problems = _validity(results, bench)
    if problems:
        out += ["**NOT A VALID MEASUREMENT**: errors, or other work on the measured cores:", ""]
        out += [f"- {p}" for p in problems]
    else:
        out.append(
            "**Valid run**: every response was 200 with the upstream's exact bytes, no wrk or "
            "load-generator errors, no warnings or errors in the gateway log, and no other "
            "work on the measured cores."
        )
    out += [
        "",
        "## Machine",
        "",
        f"- CPUs: {m['nproc']} x {m['cpu']}",
        f"- Kernel {m['kernel']}; load average at start: {m['loadavg']}",
        f"- Python {m['python']}",
        f"- {m['nginx']}; {m['wrk']}",
        f"- Gateway libraries: {m['libraries']}",
        f"- Code: commit {m['commit']}; gateway run from `{m['gateway_src']}`",
        f"- Request path: {m['request_path']}",
        "",
        "## Set-up",
        "",
        f"- Gateway: one process (`orcarouter serve`) pinned to core {opts.gateway_cpu}; "
        f"fake upstream (nginx, 1 worker), wrk and the load generator pinned to core "
        f"{opts.load_cpu}"
        + (
            f"; reference nginx `proxy_pass` (1 worker) pinned to core {opts.gateway_cpu}."
            if has_proxy
            else "."
        ),
        f"- Throughput: wrk, 1 thread, {opts.connections} connections, {opts.warmup} s warm-up "
        f"then {opts.duration} s measured, per scenario and target.",
        f"- Latency: open-loop generator at a fixed {opts.rate:g} req/s, "
        f"{opts.latency_warmup:g} s warm-up then {opts.latency_duration:g} s measured "
        f"({int(opts.rate * opts.latency_duration)} requests), latency from request start to "
        "the last body byte; TTFB to the first body byte (first SSE event).",
        "- Gateway CPU: utime+stime of the gateway process (all threads, children included) "
        "from `/proc/<pid>/stat` over the measured run and until its usage writer had committed "
        "every record of it (`orcarouter_usage_records_pending` back to 0: the drain), divided "
        "by the requests wrk completed.",
        "",
        "| scenario | request bytes (gateway / direct) | response bytes | SSE events |",
        "|---|---|---|---|",
    ]
    for s in bench.scenarios:
        out.append(
            f"| {s.name} | {len(s.gateway_body)} / {len(s.direct_body)} | {len(s.response)} | "
            f"{s.events or '-'} |"
        )

    # Throughput
    out += ["", "## Throughput (closed loop, wrk)", ""]
    header = ["scenario", "direct req/s"]
    if has_proxy:
        header += ["nginx proxy req/s"]
    header += ["gateway req/s", "gateway / direct"]
    if has_proxy:
        header += ["gateway / nginx proxy"]
    header += ["gateway CPU µs/req", "gateway CPU busy", "drain s"]
    if has_proxy:
        header += ["nginx proxy CPU µs/req"]
    header += ["errors (direct / gateway)"]
    rows = []
    for s in bench.scenarios:
        direct = results.throughput.get((s.name, "direct"))
        proxy = results.throughput.get((s.name, "proxy"))
        gateway = results.throughput.get((s.name, "gateway"))
        d, p, g = _rps(direct), _rps(proxy), _rps(gateway)
        row = [s.name, _fmt(d)]
        if has_proxy:
            row.append(_fmt(p))
        row += [_fmt(g), _fmt(g / d if g and d else None, 3)]
        if has_proxy:
            row.append(_fmt(g / p if g and p else None, 3))
        drain = gateway.get("drain_s") if gateway else None
        busy = (
            float(gateway["cpu_s"])
            * 1e6
            / (float(gateway["duration_us"]) + (drain or 0.0) * 1e6)
            * 100
            if gateway and gateway["duration_us"]
            else None
        )
        row += [_fmt(_cpu_us(gateway), 1), _fmt(busy, 0, " %"), _fmt(drain, 2)]
        if has_proxy:
            row.append(_fmt(_cpu_us(proxy), 1))
        errs = f"{_error_text(direct)} / {_error_text(gateway)}"
        non2 = [str(r["non_2xx"]) for r in (direct, gateway) if r is not None]
        row.append(errs + ("" if set(non2) <= {"0"} else f" (non-2xx {'/'.join(non2)})"))
        rows.append(row)
    out += _table(header, rows)
    raw_rows = []
    for s in bench.scenarios:
        for t in bench.targets:
            r = results.throughput.get((s.name, t.key))
            if r is None:
                continue
            raw_rows.append(
                [
                    s.name,
                    t.label,
                    f"{r['requests']:,}",
                    f"{r['duration_us'] / 1e6:.2f}",
                    f"{float(r['cpu_s']):.2f}",
                    f"{r['bytes'] / max(r['requests'], 1):,.0f}",
                    f"{r['latency_p50_us'] / 1000:.2f}",
                    f"{r['latency_p99_us'] / 1000:.2f}",
                    _error_text(r),
                    str(r["non_2xx"]),
                    _cores(r, 0),
                    _cores(r, 1),
                ]
            )
    out += _streams(results, bench)
    out += ["", "Raw wrk numbers (measured runs):", ""]
    out += _table(
        [
            "scenario", "target", "requests", "seconds", "target CPU s", "bytes/response",
            "wrk p50 ms", "wrk p99 ms", "socket/status errors", "non-2xx",
            f"core {opts.gateway_cpu} busy / foreign %", f"core {opts.load_cpu} busy / foreign %",
        ],
        raw_rows,
    )  # fmt: skip

    # Latency
    out += ["", f"## Added latency at {opts.rate:g} req/s (open loop)", ""]
    rows = []
    ttfb_rows = []
    for s, direct, gateway, proxy in _runs(results.latency, bench.scenarios):
        dt, gt = direct["total_ms"], gateway["total_ms"]
        cpu = _cpu_per_request(gateway)
        rows.append(
            [
                s.name,
                f"{_fmt(_ms(dt, 'p50'), 3)} / {_fmt(_ms(dt, 'p99'), 3)}",
                f"{_fmt(_ms(gt, 'p50'), 3)} / {_fmt(_ms(gt, 'p99'), 3)}",
                _fmt(_diff(_ms(gt, "p50"), _ms(dt, "p50")), 3),
                _fmt(_diff(_ms(gt, "p99"), _ms(dt, "p99")), 3),
                _added_pair(proxy, direct, "total_ms"),
                f"{_fmt(_ms(dt, 'max'), 2)} / {_fmt(_ms(gt, 'max'), 2)}",
                f"{direct['ok']}/{direct['measured']} / {gateway['ok']}/{gateway['measured']}",
                _pair(_ms(direct["lag_ms"], "p99"), _ms(gateway["lag_ms"], "p99")),
                _pair(cpu, _cpu_per_request(proxy), 0),
                f"{_cores(direct, 1, busy=False)} / {_cores(gateway, 0, busy=False)} / "
                f"{_cores(gateway, 1, busy=False)}",
            ]
        )
        if s.stream:
            df, gf = direct["ttfb_ms"], gateway["ttfb_ms"]
            ttfb_rows.append(
                [
                    s.name,
                    f"{_fmt(_ms(df, 'p50'), 3)} / {_fmt(_ms(df, 'p99'), 3)}",
                    f"{_fmt(_ms(gf, 'p50'), 3)} / {_fmt(_ms(gf, 'p99'), 3)}",
                    _fmt(_diff(_ms(gf, "p50"), _ms(df, "p50")), 3),
                    _fmt(_diff(_ms(gf, "p99"), _ms(df, "p99")), 3),
                    _added_pair(proxy, direct, "ttfb_ms"),
                ]
            )
    out += _table(
        [
            "scenario", "direct p50 / p99 ms", "gateway p50 / p99 ms", "added p50 ms",
            "added p99 ms", "nginx proxy_pass added p50 / p99 ms", "max ms (direct / gateway)",
            "ok/measured (direct / gateway)",
            "generator lag p99 ms (direct / gateway)",
            "CPU µs/req at this rate (gateway / nginx proxy_pass)",
            "foreign CPU %: load core (direct) / gateway core / load core (gateway)",
        ],
        rows,
    )  # fmt: skip
    if ttfb_rows:
        out += ["", "Streams, time to first byte (the first SSE event):", ""]
        out += _table(
            [
                "scenario", "direct TTFB p50 / p99 ms", "gateway TTFB p50 / p99 ms",
                "added TTFB p50 ms", "added TTFB p99 ms", "nginx proxy_pass added p50 / p99 ms",
            ],
            ttfb_rows,
        )  # fmt: skip
    out += _paced(results, bench)

    out += _workers(results, bench)

    # Memory
    out += ["", "## Gateway memory", ""]
    mem_rows = [
        [when, _fmt(v.get("VmRSS", 0) / 1024, 1), _fmt(v.get("VmHWM", 0) / 1024, 1)]
        for when, v in results.memory.items()
    ]
    out += _table(["when", "RSS MiB", "peak RSS (VmHWM) MiB"], mem_rows)
    out += _soak(results)
    out += [
        "",
        "Idle CPU of the gateway after start-up (its threads' run time, `schedstat`, over 2 s): "
        f"{results.idle_cpu_ms_per_s:.2f} ms per second. "
        "Other processes on the machine during that idle sample: "
        f"{results.idle_cores.get('gateway_core_foreign', 0):.0f} % of core {opts.gateway_cpu}, "
        f"{results.idle_cores.get('load_core_foreign', 0):.0f} % of core {opts.load_cpu}. "
        f"Child processes of the gateway at the end: {results.descendants}.",
    ]

    if results.routing:
        out += [
            "",
            "## Routing by pool size (in-process)",
            "",
            "CPU µs per request through `orcarouter/auto` for the decision (health included), "
            "its usage-record JSON, its response header and the live targets it would try, from "
            "`bench/routing.py` on the gateway's core. The pools are "
            "what providers that list no models serve (their whole entry in the shipped catalog); "
            "the scenarios above give each provider one model, so their router pool is small.",
            "",
            results.routing,
        ]

    if results.instructions:
        out += [
            "",
            "## Instructions per request (callgrind)",
            "",
            "From `bench/instructions.py`: the gateway under valgrind's callgrind, requests one "
            "after another on one connection, their usage records drained; user-space "
            "instructions of the event loop's thread per request, the idle rate's share taken "
            "off. Unlike CPU time, the count does not depend on the hour or on what else the "
            "machine runs, so it compares reports and trees across hours; it leaves out the "
            "kernel and cache misses.",
            "",
            results.instructions,
        ]

    out += _paths(results.paths)

    # Targets
    out += _targets(results, bench)

    # Checks
    out += ["", "## Checks", "", "Pre-check, one request per scenario and target:", ""]
    out += _table(
        ["scenario", "target", "status", "bytes", "the upstream's exact bytes"],
        [
            [
                r["scenario"],
                r["target"],
                str(r["status"]),
                str(r["bytes"]),
                ("yes" if r["identical"] else "NO")
                + (" (translated: the whole text and the usage)" if r.get("translated") else "")
                + (f" ({r['snippet']})" if r["snippet"] else ""),
            ]
            for r in results.precheck
        ],
    )
    out += ["", "Gateway usage ledger after the run (records grouped):", ""]
    if results.ledger_error:
        out.append(f"- {results.ledger_error}")
    else:
        out += _table(
            ["model (asked -> served)", "stream", "status", "outcome", "error type", "records",
             "without tokens or cost"],
            [
                [str(r[0]), "yes" if r[1] else "no", str(r[2]), str(r[3]), str(r[4] or "-"),
                 f"{r[5]:,}", f"{r[6] or 0:,}"]
                for r in results.ledger
            ],
        )  # fmt: skip
        out += [
            "",
            "`client_cancelled` (499) records are the requests in flight when each wrk run "
            f"stopped (at most {opts.connections} per run): wrk closes its connections, the "
            "gateway cancels the upstream request and records it. They are expected.",
        ]
    out += [
        "",
        f"Gateway log: `{gateway_log.relative_to(bench_repo(gateway_log))}`, "
        f"{results.log_lines} lines, {len(results.log_problems)} with a warning or error.",
    ]
    for line in results.log_problems[:10]:
        out.append(f"    {line[:300]}")

    # Commands
    out += [
        "",
        "## Commands",
        "",
        f"Whole run: `bash bench/run.sh` ({results.wall_s:.0f} s wall time). "
        "Processes it started, in order:",
        "",
        "```",
        *bench.services.commands,
        "```",
        "",
    ]
    return "\n".join(out)


def _verdict(value: float | None, limit: float, *, at_least: bool = False) -> str:
    if value is None:
        return "-"
    ok = value >= limit if at_least else value <= limit
    if ok:
        return "met"
    return f"missed by {abs(value - limit):.3g}"


def _scaling_targets(results: Results, bench: Bench) -> list[list[str]]:
    """Translated events per CPU second, and throughput with more workers."""
    rows: list[list[str]] = []
    for s in bench.scenarios:
        if s.translated and s.stream:
            rate = _events_per_cpu_s(s.events, results.throughput.get((s.name, "gateway")))
            limit = TARGET_TRANSLATED_EVENTS_PER_CPU_S
            rows.append(
                [f"{s.name}: translated events per second per core", f"≥ {limit:,.0f}",
                 _fmt(rate), _verdict(rate, limit, at_least=True)]
            )  # fmt: skip
    for s in bench.paced:
        if s.translated:
            rate = _paced_events_per_cpu_s(s, results.paced.get((s.name, "gateway")))
            limit = TARGET_TRANSLATED_EVENTS_PER_CPU_S
            rows.append(
                [f"{s.name}: translated events per second per core", f"≥ {limit:,.0f}",
                 _fmt(rate), _verdict(rate, limit, at_least=True)]
            )  # fmt: skip
    one = results.workers.get(1)
    for count, run in sorted(results.workers.items()):
        if count == 1:
            continue
        for s in bench.scenarios:
            base = _rps(one.throughput.get(s.name)) if one else None
            more = _rps(run.throughput.get(s.name))
            ratio = more / base if more and base else None
            rows.append(
                [f"{s.name}: throughput, {count} workers ÷ 1 worker", "scales with cores",
                 _fmt(ratio, 2), "-"]
            )  # fmt: skip
    return rows


def _soak(results: Results) -> list[str]:
    steps = results.soak
    if not steps:
        return []
    last = steps[-1]
    warm = steps[min(2, max(len(steps) - 2, 0))]  # after two steps: warmed up
    growth = (last.rss_kib - warm.rss_kib) / 1024
    per_million = growth * 1e6 / max(last.requests - warm.requests, 1)
    lines = [
        "",
        f"### Memory over {last.requests:,} more requests (soak)",
        "",
        "Closed-loop wrk through the gateway, each scenario in turn for "
        f"{results.soak_step_s} s, until it had served {last.requests:,} requests "
        f"({last.seconds / 60:.1f} min); RSS after "
        f"each step. From the end of step {steps.index(warm)} to the end: "
        f"{growth:+.1f} MiB ({per_million:+.1f} MiB per million requests); "
        f"peak {last.peak_kib / 1024:.1f} MiB; errors {sum(s.errors for s in steps)}.",
        "",
    ]
    rows = [
        [str(i), s.scenario, f"{s.requests:,}", _fmt(s.seconds, 0), _fmt(s.rss_kib / 1024, 1),
         _fmt(s.peak_kib / 1024, 1), str(s.errors)]
        for i, s in enumerate(steps)
    ]  # fmt: skip
    lines += _table(["step", "load", "requests so far", "s", "RSS MiB", "peak MiB", "errors"], rows)
    return lines


def _targets(results: Results, bench: Bench) -> list[str]:
    rows: list[list[str]] = []
    verdict = _verdict
    for s in bench.scenarios:
        if s.stream:
            continue
        cpu = _cpu_us(results.throughput.get((s.name, "gateway")))
        rows.append(
            [f"{s.name}: CPU per request", f"≤ {TARGET_CPU_US:g} µs", _fmt(cpu, 1, " µs"),
             verdict(cpu, TARGET_CPU_US)]
        )  # fmt: skip
        # Capacity on one core is 1 / CPU per request; nginx's req/s in this run is usually
        # capped by the load core, so the ratio of CPU per request is the fair comparison.
        proxy_cpu = _cpu_us(results.throughput.get((s.name, "proxy")))
        if cpu and proxy_cpu:
            ratio = proxy_cpu / cpu
            rows.append(
                [f"{s.name}: capacity per core vs nginx proxy_pass (nginx µs/req ÷ gateway "
                 "µs/req)", f"≥ {TARGET_PROXY_FRACTION:g}", _fmt(ratio, 3),
                 verdict(ratio, TARGET_PROXY_FRACTION, at_least=True)]
            )  # fmt: skip
    rows += _scaling_targets(results, bench)
    for s, direct, gateway, proxy in _runs(results.latency, bench.scenarios):
        for pct, limit in (("p50", TARGET_ADDED_P50_MS), ("p99", TARGET_ADDED_P99_MS)):
            added = _added(gateway, direct, "total_ms", pct)
            rows.append(
                [f"{s.name}: added {pct}", f"≤ {limit:g} ms",
                 _fmt(added, 3, " ms") + _reference(proxy, direct, "total_ms", pct),
                 verdict(added, limit)]
            )  # fmt: skip
        if s.stream:
            added = _added(gateway, direct, "ttfb_ms", "p50")
            rows.append(
                [f"{s.name}: added time to first event p50", f"≤ {TARGET_ADDED_TTFT_MS:g} ms",
                 _fmt(added, 3, " ms") + _reference(proxy, direct, "ttfb_ms", "p50"),
                 verdict(added, TARGET_ADDED_TTFT_MS)]
            )  # fmt: skip
    lines = ["", "## Against the performance targets (issue 6)", ""]
    if _validity(results, bench):
        lines += ["The run is not valid (see the top): these verdicts are indicative only.", ""]
    lines += _table(["what", "target", "measured", "verdict"], rows)
    return lines


def bench_repo(path: Path) -> Path:
    """The repository root (two levels above bench/results/…)."""
    return path.resolve().parent.parent.parent
