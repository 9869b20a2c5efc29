"""Count the instructions the gateway executes per request, with valgrind's callgrind.

CPU seconds on this machine vary up to threefold from one hour to the next; an instruction
count does not: the same code, inputs and requests give the same count on a quiet or a busy
machine. So this is how two trees are compared in any hour (``BENCH_GATEWAY_SRC=<tree>/src``
runs another checkout's gateway), before the benchmark measures the winner's time. It counts
user-space instructions only (the kernel's work in system calls is not in it); it is a guide for
A/B, not a claim of speed. With ``--simulate`` callgrind also simulates the caches (the host's
L1 and last level, as valgrind detects them) and the branch predictor, and the table gives
instruction-cache misses, data-cache misses and mispredicted branches per request too: what
instructions alone cannot show, for instance a larger body of machine code that runs fewer
instructions but misses the instruction cache more often. Simulated, so also hour-independent,
and only an approximation of the real core's caches and predictor.

Starts the benchmark's fake upstream and the gateway under ``valgrind --tool=callgrind`` with
collection off. For each scenario: warm-up requests, the usage writer drained, the counters
zeroed, then exactly ``--requests`` requests one after another on one keep-alive connection,
the writer drained again (writing the records is part of a request's cost), and a dump; the
dump's total over the requests, less the idle rate (read first, over ``--idle`` seconds) for
as long as they took, is the result. The gateway runs some 50 times slower under valgrind, so
timers (the writer's tick, health polls) fire more often per request than at full speed; the
idle rate takes most of that off, and what is left is the same for both trees.

Usage: ``.venv/bin/python bench/instructions.py [--requests 300] [--warmup 60]
[--simulate] [--keep DIR] [scenario ...]`` (default: the OpenAI ones and the cross-format stream).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bench
from host import request_path
from scenarios import Scenario

DEFAULT_SCENARIOS = ("openai non-stream", "openai stream", "cross-format stream")
DRAIN_POLL = 1.0  # seconds between asks for /metrics while draining
_EVENTS = re.compile(rb"^events: (.+)$", re.MULTILINE)
_TOTALS = re.compile(rb"^(?:totals|summary): (.+)$", re.MULTILINE)
# With --simulate: the columns after the instructions, as (heading, callgrind's events summed).
SIMULATED = (
    ("I1 misses", ("I1mr",)),
    ("LL instruction misses", ("ILmr",)),
    ("D1 misses", ("D1mr", "D1mw")),
    ("LL data misses", ("DLmr", "DLmw")),
    ("mispredicted branches", ("Bcm", "Bim")),
)


def send(target: bench.Target, scenario: Scenario, count: int) -> None:
    """``count`` requests of ``scenario`` one after another on one keep-alive connection; each
    must answer 200 with what ``bench.answer_ok`` accepts (the upstream's exact bytes, or the
    whole translated answer)."""
    url = urllib.parse.urlsplit(target.url(scenario))
    body, headers = target.body(scenario), target.headers(scenario)
    connection = http.client.HTTPConnection(url.netloc, timeout=120)
    try:
        for _ in range(count):
            connection.request("POST", url.path, body, headers)
            answer = connection.getresponse()
            raw = answer.read()
            if answer.status != 200 or not bench.answer_ok(scenario, target, raw):
                raise RuntimeError(f"{scenario.name}: {answer.status} {raw[-300:]!r}")
    finally:
        connection.close()


def drain(b: bench.Bench, target: bench.Target) -> None:
    """Wait until the usage writer has committed every record: ``Bench.drain``, asking seldom
    (each ask is counted too)."""
    time.sleep(DRAIN_POLL)
    b.drain(target, poll=DRAIN_POLL)


def callgrind(pid: int, *flags: str) -> None:
    """Tell the callgrind run ``pid`` something (``-i on``, ``-z``, ``-d``)."""
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def dump_totals(text: bytes) -> dict[str, int] | None:
    """A callgrind dump's totals by event name (``Ir``, and with simulation ``I1mr``, ``Bcm``,
    ...), or None while the dump is incomplete."""
    events, totals = _EVENTS.search(text), _TOTALS.search(text)
    if not events or not totals:
        return None
    names, values = events.group(1).split(), totals.group(1).split()
    return {n.decode(): int(v) for n, v in zip(names, values, strict=False)}


def newest_totals(out_dir: Path, before: set[Path]) -> dict[int, dict[str, int]]:
    """Per thread (1 is the main thread, which runs the event loop), the event totals of the
    dump written since ``before`` was listed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        totals: dict[int, dict[str, int]] = {}
        for path in set(out_dir.glob("callgrind.out*")) - before:
            thread = re.search(r"-(\d+)$", path.name)
            found = dump_totals(path.read_bytes())
            if thread and found is not None:
                totals[int(thread.group(1))] = found
        if 1 in totals:
            return totals
        time.sleep(0.5)
    raise RuntimeError(f"no callgrind dump appeared in {out_dir}")


@dataclass(frozen=True, slots=True)
class Count:
    """Events over a stretch of time: the event loop's thread's (by name), the instructions of
    the other threads, the seconds."""

    loop: dict[str, int]
    others: int
    seconds: float

    def loop_events(self, names: Sequence[str]) -> int:
        """The event loop's thread's total of ``names`` (0 for an event not simulated)."""
        return sum(self.loop.get(name, 0) for name in names)


def measure(
    b: bench.Bench, target: bench.Target, scenario: Scenario, requests: int, warmup: int
) -> Count:
    """Instructions over ``requests`` requests of ``scenario``, their records' writing included."""
    assert target.pid is not None
    send(target, scenario, warmup)
    drain(b, target)

    def work() -> None:
        send(target, scenario, requests)
        drain(b, target)

    return counted(b, target.pid, work)


def counted(b: bench.Bench, pid: int, work: Callable[[], object]) -> Count:
    """The instructions ``pid`` executed while ``work`` ran."""
    callgrind(pid, "-z")
    began = time.monotonic()
    work()
    elapsed = time.monotonic() - began
    before = set(b.tmp.glob("callgrind.out*"))
    callgrind(pid, "-d")
    totals = newest_totals(b.tmp, before)
    loop = totals.pop(1)
    return Count(loop, sum(t.get("Ir", 0) for t in totals.values()), elapsed)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints one line per scenario, instructions per request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--requests", type=int, default=300, help="counted requests")
    parser.add_argument("--warmup", type=int, default=60, help="requests before counting")
    parser.add_argument("--idle", type=float, default=10, help="seconds to read the idle rate")
    parser.add_argument(
        "--simulate", action="store_true", help="also simulate the caches and branch predictor"
    )
    parser.add_argument("--keep", type=Path, help="copy callgrind's dumps to this directory")
    args = parser.parse_args(argv)
    opts = bench.Options.from_env()
    scenarios = bench.pick_scenarios(args.scenarios)
    tmp = Path(tempfile.mkdtemp(prefix="orca-instructions-"))
    services = bench.Services(pidfile=tmp / "pids")
    b = bench.Bench(opts, tmp, services, "sk-orca-" + "i" * 40, scenarios)
    os.sched_setaffinity(0, {opts.load_cpu})
    valgrind = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
        "--separate-threads=yes", f"--callgrind-out-file={tmp}/callgrind.out",
        f"--log-file={tmp}/valgrind.log",
    ]  # fmt: skip
    simulated = SIMULATED if args.simulate else ()
    if args.simulate:
        valgrind[2:2] = ["--cache-sim=yes", "--branch-sim=yes"]
    try:
        target = bench.gateway_alone(b, bench.pinned(opts.gateway_cpu, *valgrind))
        assert target.pid is not None
        callgrind(target.pid, "-i", "on")
        source = os.environ.get("BENCH_GATEWAY_SRC", "the project's install")
        source += f" ({request_path()})"
        idle = counted(b, target.pid, lambda: time.sleep(args.idle))
        columns = [("Ir",), *(events for _, events in simulated)]
        idle_rates = [idle.loop_events(events) / idle.seconds for events in columns]
        others_rate = idle.others / idle.seconds
        extra = "".join(f" {heading} (event loop's thread) |" for heading, _ in simulated)
        print(
            f"Instructions per request, the gateway from {source}, {args.requests} requests "
            f"after {args.warmup}. Idle, per second under valgrind: {idle_rates[0]:,.0f} on the "
            f"event loop's thread, {others_rate:,.0f} on the others; taken off below.\n\n"
            "| scenario | event loop's thread | other threads (the usage writer's batches: "
            f"more and smaller than at full speed) |{extra} seconds |\n"
            f"|---|---|---|{'---|' * len(simulated)}---|"
        )
        for scenario in scenarios:
            bench.log(f"counting {scenario.name}: {args.warmup} + {args.requests} requests")
            count = measure(b, target, scenario, args.requests, args.warmup)
            per_request = [
                (count.loop_events(events) - rate * count.seconds) / args.requests
                for events, rate in zip(columns, idle_rates, strict=True)
            ]
            others = (count.others - others_rate * count.seconds) / args.requests
            cells = [f"{per_request[0]:,.0f}", f"{others:,.0f}"]
            cells += [f"{value:,.0f}" for value in per_request[1:]]
            print(f"| {scenario.name} | {' | '.join(cells)} | {count.seconds:.1f} |")
    finally:
        services.stop_all()
        if args.keep:  # for callgrind_annotate: by C function, e.g. --inclusive=yes
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in tmp.glob("callgrind.out*"):
                shutil.copy(dump, args.keep)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
