"""Profile the gateway at saturation with py-spy, one scenario at a time, and summarise it.

Starts the same fake upstream and gateway as ``bench.py`` (gateway on core 0, nginx, wrk and
py-spy on core 1), drives one scenario with wrk, and samples the gateway with
``py-spy record --format raw`` during the measured part. The summary (top functions by own time
and by inclusive time, plus req/s and CPU per request during the profile, which py-spy's pauses
inflate a little) is written to ``bench/profiles/<stamp>-<scenario>.txt`` and printed.

Usage: ``.venv/bin/python bench/profile.py [--seconds 10] [--rate 250] [--open-loop]
[--top 30] [--keep DIR] [--label TEXT] [scenario ...]`` (default: the two OpenAI scenarios and the
cross-format stream). ``--open-loop`` drives the scenario with the latency run's generator at its
fixed rate (``BENCH_RATE``, 200 req/s) instead of wrk: where the time goes when requests come
one at a time. py-spy must be able to ptrace the gateway (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import bench
import procfs
from scenarios import Scenario

PROFILES = bench.BENCH_DIR / "profiles"
DEFAULT_SCENARIOS = ("openai non-stream", "openai stream", "cross-format stream")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _slug(text: str) -> str:
    return re.sub(r"\W+", "-", text).strip("-")


def frame_name(frame: str, lines: bool = False) -> str:
    """``func (path/to/file.py:123)`` -> ``func (to/file.py)``: one row per function (per line
    with ``lines``)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    short = "/".join(match.group("file").split("/")[-2:])
    line = f":{match.group('line')}" if lines and match.group("line") else ""
    return f"{match.group('func')} ({short}{line})"


def summarise(
    raw: Path, top: int, lines: bool = False, thread: int | None = None
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples, the top functions by own (leaf) samples and by inclusive samples; only those of
    ``thread`` when given (stacks recorded with py-spy's ``--threads``)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if stack.startswith("thread ("):  # "thread (TID): name;frames..."
            tid, _, stack = stack[len("thread (") :].partition("):")
            if thread is not None and int(tid) != thread:
                continue
            stack = stack.partition(";")[2]
        frames = [frame_name(f, lines) for f in stack.split(";") if f]  # outermost first
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own.most_common(top), inclusive.most_common(top)


def _rows(items: Sequence[tuple[str, int]], total: int) -> list[str]:
    return [f"  {100 * n / total:5.1f} %  {n:7d}  {name}" for name, n in items]


def _thread_rows(
    before: dict[int, tuple[str, float, int, int]],
    after: dict[int, tuple[str, float, int, int]],
    requests: int,
    main: int,
) -> list[str]:
    """Each thread's CPU and context switches (voluntary: it slept and was woken;
    involuntary: preempted) over the driven part, per request, busiest first (Python 3.11 does
    not name its threads for the OS: the event loop's is the one whose id is the process's)."""
    per = max(requests, 1)
    spent = sorted(
        (
            (seconds - old[1], woken - old[2], preempted - old[3], tid, name)
            for tid, (name, seconds, woken, preempted) in after.items()
            for old in [before.get(tid, (name, 0.0, 0, 0))]
        ),
        reverse=True,
    )
    return [
        f"  {seconds * 1e6 / per:9,.1f} µs/req  {woken / per:6.2f} wake-ups/req  "
        f"{preempted / per:5.2f} preempted/req  "
        f"{'event loop' if tid == main else 'thread'} {tid} ({name})"
        for seconds, woken, preempted, tid, name in spent
        if seconds > 0 or woken > 0
    ]


def profile(
    b: bench.Bench, scenario: Scenario, target: bench.Target, args: argparse.Namespace
) -> str:
    """Drive ``scenario`` with wrk while py-spy samples the gateway; the summary text."""
    opts = b.opts
    assert target.pid is not None  # the gateway, started here
    raw = b.tmp / f"pyspy-{_slug(scenario.name)}.txt"
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [
        "taskset", "-c", str(opts.load_cpu), pyspy, "record", "--pid", str(target.pid),
        "--rate", str(args.rate), "--duration", str(args.seconds), "--format", "raw",
        "--output", str(raw),
    ]  # fmt: skip
    # Non-blocking by default: the gateway is never paused, but a stack read while Python runs
    # may be torn and dropped, so frames waiting in a system call are over-counted. Blocking
    # mode (--blocking) pauses the gateway for each sample: slower, but no frame is favoured.
    mode = "blocking, the event loop's thread only" if args.blocking else "non-blocking"
    # Blocking mode counts threads parked in Python (the thread pool's) as busy: it samples only
    # the event loop's thread.
    argv.append("--threads" if args.blocking else "--nonblocking")
    b.wrk(scenario, target, opts.warmup)
    threads_before = procfs.thread_cpu_seconds(target.pid)
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches
    if args.open_loop:
        result = b.loadgen(scenario, target)
        requests, seconds = int(result["sent"]), float(args.seconds - 1)
        errors = int(result["measured"]) - int(result["ok"])
        driver = f"open loop at {result['rate']} req/s, p50 {result['total_ms']['p50']:.2f} ms"
    else:
        result = b.wrk(scenario, target, args.seconds - 1)
        requests, seconds = int(result["requests"]), result["duration_us"] / 1e6
        errors = sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout"))
        driver = f"wrk: {requests / max(seconds, 1e-6):,.0f} req/s"
    threads = _thread_rows(
        threads_before, procfs.thread_cpu_seconds(target.pid), requests, target.pid
    )
    _, err = spy.communicate(timeout=args.seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')}")
    total, own, inclusive = summarise(raw, args.top, thread=target.pid if args.blocking else None)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        label = f"-{_slug(args.label)}" if args.label else ""
        shutil.copy(raw, args.keep / f"{_slug(scenario.name)}{label}.raw.txt")
    cpu_us = float(result["cpu_s"]) * 1e6 / max(requests, 1)
    lines = [
        f"## {scenario.name}" + (f" ({args.label})" if args.label else ""),
        "",
        f"{driver}, gateway CPU {cpu_us:,.1f} µs/req while sampled, "
        f"{errors} errors; py-spy {args.rate} Hz {mode}, "
        f"{total} samples of the gateway's threads (idle excluded)",
        "",
        "CPU by thread while driven (from /proc, not sampled):",
        "",
        "```",
        *threads,
        "```",
        "",
        "Top functions by own time (the innermost frame of each sample):",
        "",
        "```",
        *_rows(own, total),
        "```",
        "",
        "Top functions by inclusive time (on the stack anywhere in the sample):",
        "",
        "```",
        *_rows(inclusive, total),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; ``summarise RAW [--lines]`` re-reads a kept raw file."""
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "summarise":
        lines = "--lines" in argv
        total, own, inclusive = summarise(Path(argv[1]), 40, lines)
        print("\n".join(["own:", *_rows(own, total), "inclusive:", *_rows(inclusive, total)]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--seconds", type=int, default=10, help="sampled seconds per scenario")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--open-loop", action="store_true", help="drive at the latency run's fixed rate"
    )

    parser.add_argument(
        "--blocking", action="store_true", help="pause the gateway for each sample (unbiased)"
    )
    parser.add_argument("--label", default="", help="a note for the headings, e.g. 'before'")
    parser.add_argument("--keep", type=Path, help="copy py-spy's raw stacks to this directory")
    args = parser.parse_args(argv)
    opts = bench.Options.from_env()
    if args.open_loop:  # the generator runs for the sampled time, warmed up by wrk before
        opts = dataclasses.replace(opts, latency_duration=args.seconds - 1, latency_warmup=0)
    scenarios = bench.pick_scenarios(args.scenarios)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    PROFILES.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="orca-profile-"))
    services = bench.Services(pidfile=tmp / "pids")
    b = bench.Bench(opts, tmp, services, "sk-orca-" + "p" * 40, scenarios)
    os.sched_setaffinity(0, {opts.load_cpu})  # the orchestrator stays off the gateway's core
    sections: list[str] = []
    try:
        target = bench.gateway_alone(b, bench.pinned(opts.gateway_cpu))
        for scenario in scenarios:
            bench.log(f"profiling {scenario.name} for {args.seconds} s")
            sections.append(profile(b, scenario, target, args))
    finally:
        services.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    text = f"# py-spy profile, {stamp}\n\n" + "\n".join(sections)
    slug = "-".join(_slug(s.name) for s in scenarios)
    out = PROFILES / f"{stamp}-{slug}{'-' + _slug(args.label) if args.label else ''}.txt"
    out.write_text(text)
    print(text)
    bench.log(f"profile written to {out.relative_to(bench.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
