"""Open-loop load generator: fires POST requests on a fixed schedule, whatever the responses do.

Request ``i`` is started at ``start + i / rate`` even if earlier ones are still running, so a slow
server cannot slow the load down (no coordinated omission). For each request it records the
latency to the first body byte (for streams: the first event) and to the end of the body, both
measured from the moment the request was actually started; the lag between the scheduled and the
actual start is reported too, so an overloaded generator shows up instead of hiding.

Usage: ``python loadgen.py SPEC.json OUT.json`` where SPEC holds url, body_file, headers, rate,
duration, warmup, timeout and expect_tail (the last bytes every valid response ends with).
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson


@dataclass(slots=True)
class Spec:
    """What to send, how fast and for how long."""

    url: str
    body: bytes
    headers: dict[str, str]
    rate: float
    duration: float
    warmup: float
    timeout: float
    expect_tail: bytes

    @classmethod
    def load(cls, path: Path) -> Spec:
        """Read the JSON spec written by the orchestrator."""
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        return cls(
            url=raw["url"],
            body=Path(raw["body_file"]).read_bytes(),
            headers=dict(raw["headers"]),
            rate=float(raw["rate"]),
            duration=float(raw["duration"]),
            warmup=float(raw["warmup"]),
            timeout=float(raw["timeout"]),
            expect_tail=raw["expect_tail"].encode(),
        )


@dataclass(slots=True)
class Sample:
    """One request's outcome; times in seconds."""

    measured: bool
    lag: float
    ttfb: float = 0.0
    total: float = 0.0
    status: int = 0
    error: str | None = None


@dataclass(slots=True)
class Run:
    """All samples of one run."""

    samples: list[Sample] = field(default_factory=list)


async def one(session: aiohttp.ClientSession, spec: Spec, sample: Sample) -> None:
    """Send one request and read its whole body, recording first-byte and total latency."""
    started = time.perf_counter()
    tail = b""
    keep = len(spec.expect_tail)
    try:
        async with session.post(spec.url, data=spec.body, headers=spec.headers) as response:
            sample.status = response.status
            first = True
            async for chunk in response.content.iter_any():
                if first:
                    sample.ttfb = time.perf_counter() - started
                    first = False
                tail = (tail + chunk)[-keep:] if keep else b""
            sample.total = time.perf_counter() - started
            if first:
                sample.ttfb = sample.total
    except TimeoutError:
        sample.error = "timeout"
        return
    except (aiohttp.ClientError, OSError) as exc:
        sample.error = type(exc).__name__
        return
    if sample.status != 200:
        sample.error = f"http_{sample.status}"
    elif tail != spec.expect_tail:
        sample.error = "unexpected_body_end"


async def drive(spec: Spec) -> Run:
    """Fire ``rate`` requests a second for ``warmup + duration`` seconds on a fixed schedule."""
    run = Run()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        count = int((spec.warmup + spec.duration) * spec.rate)
        warm = int(spec.warmup * spec.rate)
        tasks: list[asyncio.Task[None]] = []
        begin = time.perf_counter() + 0.05
        for i in range(count):
            due = begin + i / spec.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sample = Sample(measured=i >= warm, lag=max(0.0, time.perf_counter() - due))
            run.samples.append(sample)
            tasks.append(asyncio.create_task(one(session, spec, sample)))
        await asyncio.gather(*tasks)
    return run


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(run: Run, spec: Spec) -> dict[str, Any]:
    """Percentiles in milliseconds over the measured (post-warm-up) requests."""
    measured = [s for s in run.samples if s.measured]
    ok = [s for s in measured if s.error is None]
    errors: dict[str, int] = {}
    for s in measured:
        if s.error is not None:
            errors[s.error] = errors.get(s.error, 0) + 1

    def stats(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        ms = [v * 1000 for v in values]
        return {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "max": max(ms),
            "mean": sum(ms) / len(ms),
        }

    return {
        "rate": spec.rate,
        "duration": spec.duration,
        "warmup": spec.warmup,
        "sent": len(run.samples),
        "measured": len(measured),
        "ok": len(ok),
        "errors": errors,
        "total_ms": stats([s.total for s in ok]),
        "ttfb_ms": stats([s.ttfb for s in ok]),
        "lag_ms": stats([s.lag for s in measured]),
    }


def main(argv: list[str]) -> int:
    """Run one spec and write its summary as JSON."""
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec = Spec.load(Path(argv[1]))
    gc.collect()
    gc.freeze()  # the run is short; keep collector pauses out of the measured latencies
    gc.disable()
    try:
        import uvloop  # the gateway's own loop; lower and steadier client overhead
    except ImportError:
        run = asyncio.run(drive(spec))
    else:
        run = uvloop.run(drive(spec))
    Path(argv[2]).write_bytes(orjson.dumps(summarize(run, spec), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
