"""The benchmark orchestrator: fake upstream, gateway, load, measurements, report.

Run it through ``bash bench/run.sh`` (which installs nginx, wrk and valgrind and prepares the
venv). It starts nginx as a fixed fake upstream and the gateway on its own core, then for every
scenario measures closed-loop throughput with wrk (directly against nginx and through the
gateway, plus nginx ``proxy_pass`` as a reference hop) and open-loop latency at a fixed rate
with ``loadgen.py``, and writes a markdown report to ``bench/results/``.

Tunables (environment): BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2),
BENCH_CONNECTIONS (32), BENCH_RATE (req/s, 200), BENCH_LATENCY_DURATION (s, 10),
BENCH_LATENCY_WARMUP (s, 1), BENCH_GATEWAY_CPU (0), BENCH_LOAD_CPU (1),
BENCH_NGINX_PROXY (1: also measure nginx proxy_pass), BENCH_SCENARIOS (comma-separated names),
BENCH_GATEWAY_SRC (run the gateway from another checkout's ``src`` directory, for A/B runs),
BENCH_PACED_RATE (streams/s of the paced scenarios, 50; 0 skips them), BENCH_PACE_MS (2),
BENCH_WORKERS (2: also compare ``serve --workers 1`` with ``--workers 2`` on both cores; 1 or 0
skips that comparison), BENCH_SOAK_REQUESTS (1000000: after the latency runs, closed-loop load
cycling through the scenarios until the gateway has served this many more requests, with its RSS
after each step; 0 skips it), BENCH_INSTRUCTIONS (1: at the end, instructions per request with
``instructions.py`` under valgrind; 0 skips it), BENCH_PATHS_ROUNDS and BENCH_PATHS_SECONDS
(``paths.py``: the request path from source against compiled, in turn; 0 rounds skips it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import resource
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paths
import payloads
import report
from evidence import ledger, log_problems
from host import machine, with_gateway_src
from nginx_conf import HOST as HOST
from nginx_conf import write_proxy, write_upstream
from procfs import cmdline, core_busy_seconds, cpu_seconds, descendants, memory_kib, run_seconds
from scenarios import SCENARIOS, Scenario, by_provider, gateway_config, key_request, paced

from orcarouter.accounts.keys import DEFAULT_WORKSPACE

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
UPSTREAM_KEY = "bench-upstream-key"  # what the gateway sends the fake upstream; not a secret


def log(message: str) -> None:
    """Progress on stderr; the report goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _env_num(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass(frozen=True, slots=True)
class Options:
    """Durations, load shape and CPU placement."""

    duration: int
    warmup: int
    connections: int
    rate: float
    latency_duration: float
    latency_warmup: float
    gateway_cpu: int
    load_cpu: int
    nginx_proxy: bool
    scenarios: tuple[str, ...]
    workers: int = 2  # the multi-worker comparison: --workers 1 vs --workers N (N < 2: skip)
    soak_requests: int = 1_000_000  # requests of the memory soak (0: skip)
    paced_rate: float = 50  # streams/s of the paced streams (0: skip them)
    pace_ms: float = 2  # the pause before each event of a paced stream
    instructions: bool = True  # count instructions per request with callgrind at the end
    paths_rounds: int = 4  # source against compiled: rounds of one run through each (0: skip)
    paths_seconds: int = 5  # the length of each of those runs

    @classmethod
    def from_env(cls) -> Options:
        """Read the BENCH_* variables."""
        names = os.environ.get("BENCH_SCENARIOS", "")
        return cls(
            duration=int(_env_num("BENCH_DURATION", 10)),
            warmup=int(_env_num("BENCH_WARMUP", 2)),
            connections=int(_env_num("BENCH_CONNECTIONS", 32)),
            rate=_env_num("BENCH_RATE", 200),
            latency_duration=_env_num("BENCH_LATENCY_DURATION", 10),
            latency_warmup=_env_num("BENCH_LATENCY_WARMUP", 1),
            gateway_cpu=int(_env_num("BENCH_GATEWAY_CPU", 0)),
            load_cpu=int(_env_num("BENCH_LOAD_CPU", 1)),
            nginx_proxy=os.environ.get("BENCH_NGINX_PROXY", "1") not in ("0", "false", "no"),
            scenarios=tuple(n.strip() for n in names.split(",") if n.strip()),
            workers=int(_env_num("BENCH_WORKERS", 2)),
            soak_requests=int(_env_num("BENCH_SOAK_REQUESTS", 1_000_000)),
            paced_rate=_env_num("BENCH_PACED_RATE", 50),
            pace_ms=_env_num("BENCH_PACE_MS", 2),
            instructions=os.environ.get("BENCH_INSTRUCTIONS", "1") not in ("0", "false", "no"),
            paths_rounds=int(_env_num("BENCH_PATHS_ROUNDS", 4)),
            paths_seconds=int(_env_num("BENCH_PATHS_SECONDS", 5)),
        )

    @property
    def both_cpus(self) -> str:
        """The gateway's and the load's cores, for the multi-worker comparison."""
        return ",".join(str(c) for c in sorted({self.gateway_cpu, self.load_cpu}))


# --------------------------------------------------------------------------- processes


@dataclass(slots=True)
class Services:
    """Every process the benchmark started, so that all of them are stopped at the end."""

    pidfile: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        shown_env: Mapping[str, str] | None = None,
        stdout: Any = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in its own session and remember its pid."""
        self.record(argv, shown_env)
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        with self.pidfile.open("a") as handle:
            handle.write(f"{proc.pid}\n")
        return proc

    def record(self, argv: Sequence[str], shown_env: Mapping[str, str] | None = None) -> None:
        """Remember a command line for the report."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (shown_env or {}).items())
        self.commands.append((prefix + " " if prefix else "") + shlex.join(argv))

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Signal one process we started and wait for it (kill after 20 s)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        alive = [p.pid for p in self.procs if p.poll() is None]
        self.pidfile.write_text("".join(f"{pid}\n" for pid in alive))

    def stop_all(self) -> None:
        """Stop everything still running, newest first."""
        for proc in reversed(self.procs):
            self.stop(proc)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str, proc: subprocess.Popen[bytes], what: str, output: Path, timeout: float = 60
) -> None:
    """Poll ``url`` until it answers 200; fail early (showing its output) if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = output.read_text(errors="replace")[-3000:] if output.exists() else ""
            raise RuntimeError(
                f"{what} exited with status {proc.returncode} while starting:\n{tail}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s; see {output}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds at one moment."""

    when: float
    cores: dict[int, float]
    own: dict[str, float]  # per target key: the process that target charges
    tools: float  # this orchestrator and its finished children (wrk, load generator)


# --------------------------------------------------------------------------- fake upstream


def start_pacer(bench: Bench) -> int:
    """Start ``pacer.py`` for the paced scenarios on the load's core; its port."""
    port, spec = free_port(), {}
    for scenario in bench.paced:
        answer = bench.tmp / f"paced-{scenario.provider_id}.txt"
        answer.write_bytes(scenario.response)
        pause = bench.opts.pace_ms / 1000
        spec[scenario.upstream_path] = {
            "file": str(answer), "content_type": scenario.content_type, "pause_s": pause,
        }  # fmt: skip
    (bench.tmp / "pacer.json").write_bytes(orjson.dumps(spec))
    argv = [
        "taskset", "-c", str(bench.opts.load_cpu), sys.executable, str(BENCH_DIR / "pacer.py"),
        str(bench.tmp / "pacer.json"), str(port),
    ]  # fmt: skip
    with (bench.tmp / "pacer.out").open("wb") as handle:
        pacer = bench.services.start(argv, stdout=handle)
    wait_http(f"http://{HOST}:{port}/healthz", pacer, "pacer", bench.tmp / "pacer.out")
    return port


def start_nginx(
    services: Services, tmp: Path, name: str, conf: Path, cpu: int
) -> subprocess.Popen[bytes]:
    """Start one nginx (master + 1 worker) on ``cpu`` with its own prefix, config and logs."""
    argv = [
        "taskset", "-c", str(cpu), "nginx", "-p", str(tmp), "-e", str(tmp / f"{name}-error.log"),
        "-c", str(conf),
    ]  # fmt: skip
    with (tmp / f"{name}.out").open("wb") as output:
        return services.start(argv, stdout=output)


# --------------------------------------------------------------------------- load


@dataclass(slots=True)
class Target:
    """Where a scenario's requests go: directly to the upstream, via nginx, or the gateway."""

    key: str
    label: str
    base: str
    pid: int | None  # the process whose CPU is charged to this target's requests
    via_gateway: bool
    stopped: bool = False  # its process is gone (its results stay in the report)
    drains: bool = False  # one gateway process on the gateway's core: runs are drained
    keys: dict[str, str] = field(default_factory=dict)  # provider id -> the gateway key for it

    def url(self, scenario: Scenario) -> str:
        """The full URL a client of this target POSTs to."""
        path = scenario.gateway_route if self.via_gateway else scenario.upstream_path
        return self.base + path

    def body(self, scenario: Scenario) -> bytes:
        """The body a client of this target sends."""
        return scenario.gateway_body if self.via_gateway else scenario.direct_body

    def headers(self, scenario: Scenario) -> dict[str, str]:
        """Content type, the scenario's headers, and the key in the protocol's usual header:
        through the gateway, the workspace key made for the scenario's provider."""
        headers = {"content-type": "application/json", **dict(scenario.headers)}
        token = self.keys[scenario.provider_id] if self.via_gateway else UPSTREAM_KEY
        protocol = scenario.client if self.via_gateway else scenario.protocol
        if protocol == "anthropic":
            headers["x-api-key"] = token
        else:
            headers["authorization"] = f"Bearer {token}"
        return headers


@dataclass(slots=True)
class Bench:
    """The state of one run."""

    opts: Options
    tmp: Path
    services: Services
    admin_key: str
    scenarios: list[Scenario]
    targets: list[Target] = field(default_factory=list)
    bodies: dict[tuple[str, str], Path] = field(default_factory=dict)
    paced: list[Scenario] = field(default_factory=list)  # measured apart (``pacer.py``)

    def body_file(self, scenario: Scenario, target: Target) -> Path:
        """The request body on disk (wrk and the load generator read it from there)."""
        kind = "gateway" if target.via_gateway else "direct"
        path = self.bodies.get((scenario.name, kind))
        if path is None:
            path = self.tmp / f"body-{len(self.bodies)}-{kind}.json"
            path.write_bytes(target.body(scenario))
            self.bodies[(scenario.name, kind)] = path
        return path

    def wrk(self, scenario: Scenario, target: Target, seconds: int) -> dict[str, Any]:
        """One closed-loop wrk run; returns wrk's summary plus the target's CPU time."""
        headers = target.headers(scenario)
        env = {
            **os.environ,
            "BENCH_BODY_FILE": str(self.body_file(scenario, target)),
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items()),
        }
        argv = [
            "taskset", "-c", str(self.opts.load_cpu), "wrk", "-t1",
            f"-c{self.opts.connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(BENCH_DIR / "wrk.lua"), target.url(scenario),
        ]  # fmt: skip
        shown = {"BENCH_BODY_FILE": f"<{scenario.name} body>", "BENCH_HEADERS": "<headers>"}
        self.services.record(argv, shown)
        before = self.snapshot()
        done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=seconds + 60)
        drained = self.drain(target)
        after = self.snapshot()
        out = done.stdout.decode(errors="replace")
        match = re.search(r"^BENCH_WRK (\{.*\})$", out, re.MULTILINE)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {out}{done.stderr.decode()}")
        result: dict[str, Any] = orjson.loads(match.group(1))
        result["cpu_s"] = after.own[target.key] - before.own[target.key]
        result["cores"] = self.cores(before, after)
        result["non_2xx"] = _wrk_non_2xx(out)
        result["drain_s"] = drained
        return result

    def drain(self, target: Target, poll: float = 0.1) -> float | None:
        """Through the single-process gateway: wait until its usage writer has committed every
        record of the run (``orcarouter_usage_records_pending`` 0), so that the run's CPU
        includes writing them; the seconds that took after the load stopped, asking every
        ``poll`` seconds. None for other targets (with ``--workers`` each process has its own
        writer and its own ``/metrics``, so those runs are not drained)."""
        if not target.drains or target.stopped:
            return None
        began = time.monotonic()
        request = urllib.request.Request(  # noqa: S310 (loopback)
            target.base + "/metrics", headers={"Authorization": f"Bearer {self.admin_key}"}
        )
        while (left := DRAIN_TIMEOUT_S - (time.monotonic() - began)) > 0:
            # A gateway still busy after the load answers late: that is part of the drain.
            with urllib.request.urlopen(request, timeout=left) as answer:  # noqa: S310 (loopback)
                text = answer.read().decode()
            pending = re.search(r"^orcarouter_usage_records_pending ([0-9.e+]+)$", text, re.M)
            if pending is None:
                raise RuntimeError("the gateway's /metrics has no orcarouter_usage_records_pending")
            if float(pending.group(1)) == 0:
                return time.monotonic() - began
            time.sleep(poll)
        raise RuntimeError(f"usage records still pending {DRAIN_TIMEOUT_S} s after a run")

    def loadgen(
        self, scenario: Scenario, target: Target, rate: float | None = None
    ) -> dict[str, Any]:
        """One open-loop run at the fixed rate (or ``rate``); the generator's summary and CPU."""
        spec = {
            "url": target.url(scenario),
            "body_file": str(self.body_file(scenario, target)),
            "headers": target.headers(scenario),
            "rate": rate or self.opts.rate,
            "duration": self.opts.latency_duration,
            "warmup": self.opts.latency_warmup,
            "timeout": 10.0,
            "expect_tail": (
                scenario.expect_tail if target.via_gateway else scenario.response[-48:]
            ).decode(),
        }
        slug = re.sub(r"\W+", "-", f"{scenario.name}-{target.key}")
        spec_path, out_path = self.tmp / f"spec-{slug}.json", self.tmp / f"lat-{slug}.json"
        spec_path.write_bytes(orjson.dumps(spec))
        argv = [
            "taskset", "-c", str(self.opts.load_cpu), sys.executable,
            str(BENCH_DIR / "loadgen.py"), str(spec_path), str(out_path),
        ]  # fmt: skip
        self.services.record(argv)
        before = self.snapshot()
        limit = self.opts.latency_duration + self.opts.latency_warmup + 60
        done = subprocess.run(argv, capture_output=True, check=False, timeout=limit)
        after = self.snapshot()
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed: {done.stderr.decode(errors='replace')}")
        result: dict[str, Any] = orjson.loads(out_path.read_bytes())
        result["cpu_s"] = after.own[target.key] - before.own[target.key]
        result["cores"] = self.cores(before, after)
        return result

    def snapshot(self) -> Snapshot:
        """CPU time so far: per core, per started service, and of the load tools."""
        own = {
            t.key: cpu_seconds(t.pid)[0] if t.pid and not t.stopped else 0.0 for t in self.targets
        }
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return Snapshot(
            time.monotonic(),
            core_busy_seconds(),
            own,
            children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime,
        )

    def cores(self, before: Snapshot, after: Snapshot) -> dict[str, float]:
        """Busy and foreign CPU (% of the run) on the gateway's core and on the load core.

        Foreign is what no process of this benchmark used: other work on the machine, which
        takes the core away from the process being measured.
        """
        elapsed = after.when - before.when
        gw, load = self.opts.gateway_cpu, self.opts.load_cpu

        def used(keys: Sequence[str]) -> float:
            return sum(after.own.get(k, 0.0) - before.own.get(k, 0.0) for k in keys)

        busy_gw = after.cores.get(gw, 0.0) - before.cores.get(gw, 0.0)
        busy_load = after.cores.get(load, 0.0) - before.cores.get(load, 0.0)
        ours_gw = used(["proxy", *(t.key for t in self.targets if t.drains)])
        ours_load = used(["direct"]) + after.tools - before.tools
        # Both cores together, every process of the benchmark (the multi-worker runs spread the
        # gateway over both cores, so only the total says whether someone else was there).
        busy_all = busy_gw + busy_load if gw != load else busy_gw
        ours_all = used(list(after.own)) + after.tools - before.tools
        return {
            "gateway_core_busy": 100 * busy_gw / elapsed,
            "gateway_core_foreign": max(0.0, 100 * (busy_gw - ours_gw) / elapsed),
            "load_core_busy": 100 * busy_load / elapsed,
            "load_core_foreign": max(0.0, 100 * (busy_load - ours_load) / elapsed),
            "all_busy": 100 * busy_all / elapsed,
            "all_foreign": max(0.0, 100 * (busy_all - ours_all) / elapsed),
        }


def _wrk_non_2xx(output: str) -> int:
    match = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------- checks


def answer_ok(scenario: Scenario, target: Target, raw: bytes) -> bool:
    """The upstream's exact bytes, or (translated through the gateway) a complete stream in the
    client's protocol with the whole answer and its usage."""
    if target.via_gateway and scenario.translated:
        return payloads.translated_stream_ok(scenario.client, raw)
    return raw == scenario.response


async def _fetch(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=dict(headers)) as response,
    ):
        raw = await response.read()
        return response.status, raw, response.headers.get("x-orca-resolved-model", "")


def precheck(bench: Bench, targets: Sequence[Target] | None = None) -> list[dict[str, Any]]:
    """One request per scenario and target: status 200 and the upstream's exact bytes back."""
    rows: list[dict[str, Any]] = []
    for scenario in [*bench.scenarios, *bench.paced]:
        for target in bench.targets if targets is None else targets:
            status, raw, resolved = asyncio.run(
                _fetch(
                    target.url(scenario),
                    target.body(scenario),
                    target.headers(scenario),
                )
            )
            rows.append(
                {
                    "scenario": scenario.name,
                    "target": target.label,
                    "status": status,
                    "bytes": len(raw),
                    "identical": answer_ok(scenario, target, raw),
                    "translated": target.via_gateway and scenario.translated,
                    "resolved": resolved,
                    "snippet": raw[:300].decode(errors="replace") if status != 200 else "",
                }
            )
    return rows


# --------------------------------------------------------------------------- main


@dataclass(slots=True)
class Results:
    """Every number the report shows."""

    machine: dict[str, str]
    started: dt.datetime
    precheck: list[dict[str, Any]] = field(default_factory=list)
    throughput: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    warmups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    latency: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    idle_cpu_ms_per_s: float = 0.0
    idle_cores: dict[str, float] = field(default_factory=dict)
    descendants: int = 0
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    ledger_error: str | None = None
    log_lines: int = 0
    log_problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    workers: dict[int, WorkersRun] = field(default_factory=dict)  # by worker count
    soak: list[SoakStep] = field(default_factory=list)
    soak_step_s: int = 0
    routing: str = ""  # bench/routing.py's table, or why it is missing
    instructions: str = ""  # bench/instructions.py's table, or why it is missing
    paced: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    capped: WorkersRun | None = None  # the most workers again, every key with a USD cap
    paths: paths.PathsRun | None = None  # source against compiled (``paths.py``)


@dataclass(frozen=True, slots=True)
class SoakStep:
    """The gateway after one step of the memory soak."""

    scenario: str  # the step's load
    requests: int  # served in the soak so far
    seconds: float  # since the soak began
    rss_kib: int
    peak_kib: int
    errors: int  # wrk socket errors and non-2xx answers in this step


@dataclass(slots=True)
class WorkersRun:
    """One gateway started with ``--workers count`` on both cores."""

    count: int
    log: Path
    precheck: list[dict[str, Any]] = field(default_factory=list)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)  # by scenario
    processes: int = 0  # the parent and its children at the end
    rss_kib: int = 0  # their RSS together
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    ledger_error: str | None = None
    log_problems: list[str] = field(default_factory=list)


def pick_scenarios(names: Sequence[str]) -> list[Scenario]:
    """All scenarios, or the named ones."""
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    missing = [n for n in names if n not in known]
    if missing:
        raise SystemExit(f"unknown scenario(s) {missing}; known: {list(known)}")
    return [known[n] for n in names]


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(opts: Options, tmp: Path) -> tuple[Results, Path]:
    """Start everything, measure, stop everything; return the results and the gateway log."""
    scenarios = pick_scenarios(opts.scenarios)
    results = Results(machine=machine(), started=dt.datetime.now(dt.UTC))
    stamp = results.started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    gateway_log = RESULTS / f"gateway-{stamp}.log"
    services = Services(pidfile=tmp / "pids")
    admin_key = "sk-orca-" + secrets.token_urlsafe(32)
    bench = Bench(opts, tmp, services, admin_key, scenarios)
    if opts.paced_rate > 0:
        bench.paced = [paced(s) for s in scenarios if s.stream]
    served = [*scenarios, *bench.paced]
    began = time.monotonic()
    try:
        upstream_port = free_port()
        upstream = f"http://{HOST}:{upstream_port}"
        pacer_port = start_pacer(bench) if bench.paced else None
        conf = write_upstream(tmp, upstream_port, served, pacer_port)
        nginx = start_nginx(services, tmp, "upstream", conf, opts.load_cpu)
        wait_http(upstream + "/healthz", nginx, "upstream nginx", tmp / "upstream.out")
        bench.targets.append(Target("direct", "direct (nginx)", upstream, nginx.pid, False))
        log(f"fake upstream (nginx) on {upstream}, core {opts.load_cpu}")

        if opts.nginx_proxy:
            proxy_port = free_port()
            proxy_conf = write_proxy(tmp, proxy_port, upstream_port)
            proxy = start_nginx(services, tmp, "proxy", proxy_conf, opts.gateway_cpu)
            proxy_url = f"http://{HOST}:{proxy_port}"
            wait_http(proxy_url + "/healthz", proxy, "reference nginx proxy", tmp / "proxy.out")
            bench.targets.append(Target("proxy", "nginx proxy_pass", proxy_url, proxy.pid, False))

        config = tmp / "gateway.yaml"
        config.write_text(gateway_config(upstream, served))
        data_dir = tmp / "gateway-data"
        gateway, target = start_gateway(
            bench, config, data_dir, gateway_log, pinned(opts.gateway_cpu), ("gateway", "gateway")
        )
        bench.targets.append(target)
        log(f"gateway on {target.base}, core {opts.gateway_cpu}, pid {gateway.pid}")
        results.memory["after start"] = memory_kib(gateway.pid)

        results.precheck = precheck(bench)
        idle_before, idle_ran = bench.snapshot(), run_seconds(gateway.pid)
        time.sleep(2)
        idle_after, idle_cpu = bench.snapshot(), run_seconds(gateway.pid) - idle_ran
        results.idle_cpu_ms_per_s = idle_cpu * 1000 / (idle_after.when - idle_before.when)
        results.idle_cores = bench.cores(idle_before, idle_after)

        for scenario in scenarios:
            for target in bench.targets:
                log(f"throughput: {scenario.name} -> {target.label}")
                if opts.warmup > 0:
                    results.warmups[(scenario.name, target.key)] = bench.wrk(
                        scenario, target, opts.warmup
                    )
                results.throughput[(scenario.name, target.key)] = bench.wrk(
                    scenario, target, opts.duration
                )
        results.memory["after throughput"] = memory_kib(gateway.pid)

        for scenario in scenarios:
            for target in bench.targets:  # nginx proxy_pass too: one extra hop's cost here
                log(f"latency at {opts.rate:g} req/s: {scenario.name} -> {target.label}")
                results.latency[(scenario.name, target.key)] = bench.loadgen(scenario, target)
        measure_paced(bench, results)
        results.memory["after latency"] = memory_kib(gateway.pid)
        if opts.soak_requests > 0:
            gateway_target = next(t for t in bench.targets if t.key == "gateway")
            results.soak = soak(bench, gateway_target, opts.soak_requests)
            results.soak_step_s = SOAK_STEP_S
        results.memory["end"] = memory_kib(gateway.pid)
        results.descendants = cpu_seconds(gateway.pid)[1]

        log("stopping the gateway (it drains its usage queue)")
        services.stop(gateway)
        results.ledger, results.ledger_error = ledger(data_dir / "orcarouter.db")
        for target in bench.targets:
            target.stopped = target.key == "gateway"
        measure_others(bench, results, config, stamp)
    finally:
        services.stop_all()
        results.wall_s = time.monotonic() - began
    results.log_lines, results.log_problems = log_problems(gateway_log)
    for name in ("upstream-error.log", "proxy-error.log"):
        source = tmp / name
        if source.exists() and source.stat().st_size:
            (RESULTS / f"nginx-{name.removesuffix('.log')}-{stamp}.log").write_bytes(
                source.read_bytes()
            )
    text = report.render(results, bench, gateway_log)
    out = RESULTS / f"report-{stamp}.md"
    out.write_text(text)
    return results, out


def measure_others(bench: Bench, results: Results, config: Path, stamp: str) -> None:
    """After the single gateway: source against compiled, the worker processes, routing by
    pool size, instructions per request."""
    opts = bench.opts
    if opts.paths_rounds > 0:
        results.paths = paths.measure_paths(
            bench, config, stamp, opts.paths_rounds, opts.paths_seconds
        )
    if opts.workers > 1:
        for count in (1, opts.workers):
            results.workers[count] = measure_workers(bench, config, count, stamp)
        results.capped = measure_workers(bench, config, opts.workers, stamp, capped=True)
    routing = [arg for pool in ROUTING_POOLS for arg in ("--providers", pool)]
    results.routing = script_table("routing.py", routing, opts.gateway_cpu)
    if opts.instructions:
        results.instructions = script_table("instructions.py", INSTRUCTION_SCENARIOS)


def measure_paced(bench: Bench, results: Results) -> None:
    """The paced streams at their own fixed rate, open loop, through every target."""
    rate = bench.opts.paced_rate
    for scenario in bench.paced:
        for target in bench.targets:
            log(f"paced at {rate:g} streams/s: {scenario.name} -> {target.label}")
            results.paced[(scenario.name, target.key)] = bench.loadgen(scenario, target, rate)


ROUTING_POOLS = ("openai,anthropic,google", "openai,anthropic,google,openrouter,mistral,groq")
INSTRUCTION_SCENARIOS = ("openai non-stream", "anthropic non-stream", "cross-format stream")


def script_table(script: str, args: Sequence[str], cpu: int | None = None) -> str:
    """What another script of the benchmark prints (a markdown table), run on ``cpu`` when
    given, with the gateway's code chosen as here; or why it failed."""
    log(f"{script}: {shlex.join(args)}")
    env = with_gateway_src({**os.environ})
    argv = [sys.executable, str(BENCH_DIR / script), *args]
    if cpu is not None:
        argv = pinned(cpu, *argv)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"{script} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
    return done.stdout.strip()


SOAK_STEP_S = 20
DRAIN_TIMEOUT_S = 300.0


def soak(bench: Bench, target: Target, total: int) -> list[SoakStep]:
    """Closed-loop load through ``target``, each scenario in turn for ``SOAK_STEP_S`` seconds,
    until it has served ``total`` requests; the gateway's memory after every step (the first
    row is before the soak)."""
    assert target.pid is not None
    pid = target.pid
    memory = memory_kib(pid)
    steps = [SoakStep("-", 0, 0.0, memory.get("VmRSS", 0), memory.get("VmHWM", 0), 0)]
    began = time.monotonic()
    served = 0
    turn = 0
    while served < total:
        scenario = bench.scenarios[turn % len(bench.scenarios)]
        turn += 1
        result = bench.wrk(scenario, target, SOAK_STEP_S)
        served += int(result["requests"])
        memory = memory_kib(pid)
        errors = sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout"))
        errors += result["non_2xx"]
        steps.append(
            SoakStep(
                scenario.name,
                served,
                time.monotonic() - began,
                memory.get("VmRSS", 0),
                memory.get("VmHWM", 0),
                errors,
            )
        )
        log(f"soak: {served:,} requests, RSS {memory.get('VmRSS', 0) / 1024:.1f} MiB")
    return steps


def pinned(cpus: str | int, *wrapper: str) -> list[str]:
    """A command's prefix that runs it on ``cpus`` (``taskset``'s list), under ``wrapper``."""
    return ["taskset", "-c", str(cpus), *wrapper]


def start_gateway(
    bench: Bench,
    config: Path,
    data_dir: Path,
    log_path: Path,
    launcher: Sequence[str],
    name: tuple[str, str],
    serve_args: Sequence[str] = (),
    capped: bool = False,
) -> tuple[subprocess.Popen[bytes], Target]:
    """Start ``orcarouter serve`` under ``launcher`` (``pinned``) with a fresh data dir; wait
    until it answers, then make the workspace keys the scenarios' requests carry (``capped``:
    with a USD cap each). ``name``: the target's key and label."""
    port = free_port()
    data_dir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(bench.tmp),
        "LANG": "C.UTF-8",
        "ORCAROUTER_DATA_DIR": str(data_dir),
        "ORCAROUTER_HOST": HOST,
        "ORCAROUTER_PORT": str(port),
        "ORCAROUTER_ADMIN_KEY": bench.admin_key,
        "ORCAROUTER_ACCESS_LOG": "false",
        "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
    }
    with_gateway_src(env)
    shown_env = {**env, "ORCAROUTER_ADMIN_KEY": "sk-orca-<random per run>"}
    del shown_env["PATH"], shown_env["HOME"], shown_env["LANG"]
    argv = [
        *launcher, sys.executable, "-m", "orcarouter", "--config", str(config), "serve",
        *serve_args,
    ]  # fmt: skip
    with log_path.open("wb") as log_handle:
        gateway = bench.services.start(argv, env=env, shown_env=shown_env, stdout=log_handle)
    url = f"http://{HOST}:{port}"
    slow = "valgrind" in launcher  # its start alone takes tens of seconds
    wait_http(url + "/healthz", gateway, "gateway", log_path, 600 if slow else 60)
    keys = {
        provider_id: create_key(url, bench.admin_key, scenario, capped)
        for provider_id, scenario in by_provider([*bench.scenarios, *bench.paced]).items()
    }
    single = "--workers" not in serve_args
    return gateway, Target(name[0], name[1], url, gateway.pid, True, keys=keys, drains=single)


def gateway_alone(b: Bench, launcher: Sequence[str]) -> Target:
    """The fake upstream nginx on the load's core and a gateway in front of it under
    ``launcher``, for the scripts that look at one gateway (``profile.py``, ``instructions.py``)."""
    port = free_port()
    upstream = f"http://{HOST}:{port}"
    conf = write_upstream(b.tmp, port, b.scenarios)
    nginx = start_nginx(b.services, b.tmp, "upstream", conf, b.opts.load_cpu)
    wait_http(upstream + "/healthz", nginx, "upstream nginx", b.tmp / "upstream.out")
    config = b.tmp / "gateway.yaml"
    config.write_text(gateway_config(upstream, b.scenarios))
    log_path = b.tmp / "gateway.log"
    _, target = start_gateway(b, config, b.tmp / "data", log_path, launcher, ("gateway", "gateway"))
    b.targets.append(target)
    return target


def create_key(url: str, admin_key: str, scenario: Scenario, capped: bool = False) -> str:
    """A member key of the default workspace for ``scenario`` (``key_request``); its secret."""
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{url}/api/workspaces/{DEFAULT_WORKSPACE}/keys",
        data=orjson.dumps(key_request(scenario, capped)),
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
        secret: str = orjson.loads(answer.read())["secret"]
    return secret


def wait_workers(pid: int, count: int, timeout: float = 60) -> None:
    """Wait until ``pid`` has ``count`` worker processes (uvicorn starts them after binding)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [c for c in descendants(pid) if b"spawn_main" in cmdline(c)]
        if len(workers) >= count:
            time.sleep(2)  # each worker's startup (keys, routers, budgets) after it appears
            return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not start {count} workers in {timeout:g} s")


def measure_workers(
    bench: Bench, config: Path, count: int, stamp: str, *, capped: bool = False
) -> WorkersRun:
    """Throughput of ``serve --workers count`` spread over both cores, per scenario; ``capped``:
    the first non-streamed scenario only, every key with a USD cap (each request then holds
    money; across workers without Redis, in the database).

    The load side (wrk and the fake upstream) stays on its core, so with two cores the second
    worker shares it with them: this shows how throughput scales, not a clean capacity figure.
    """
    opts = bench.opts
    tag = f"workers{count}" + ("-capped" if capped else "")
    log_path = RESULTS / f"gateway-{stamp}-{tag}.log"
    data_dir = bench.tmp / f"gateway-data-{tag}"
    label = f"gateway, {count} worker(s)" + (", capped keys" if capped else "")
    gateway, target = start_gateway(
        bench,
        config,
        data_dir,
        log_path,
        pinned(opts.both_cpus),
        (tag, label),
        ("--workers", str(count)),
        capped,
    )
    scenarios = [s for s in bench.scenarios if not s.stream][:1] if capped else bench.scenarios
    run = WorkersRun(count=count, log=log_path)
    bench.targets.append(target)
    try:
        if count > 1:
            wait_workers(gateway.pid, count)
        run.precheck = precheck(bench, [target])
        for scenario in scenarios:
            log(f"throughput: {scenario.name} -> {label} on {opts.both_cpus}")
            if opts.warmup > 0:
                bench.wrk(scenario, target, opts.warmup)
            run.throughput[scenario.name] = bench.wrk(scenario, target, opts.duration)
        run.processes = 1 + len(descendants(gateway.pid))
        run.rss_kib = sum(
            memory_kib(p).get("VmRSS", 0) for p in [gateway.pid, *descendants(gateway.pid)]
        )
        bench.services.stop(gateway)
    finally:
        bench.targets.remove(target)
    run.ledger, run.ledger_error = ledger(data_dir / "orcarouter.db")
    _, run.log_problems = log_problems(log_path)
    return run


def main() -> int:
    """Entry point for ``bash bench/run.sh``."""
    opts = Options.from_env()
    if (os.cpu_count() or 1) < 2 and opts.gateway_cpu == opts.load_cpu:
        log("warning: one CPU only; gateway and load share it, numbers are not comparable")
    # The orchestrator (and the load tools it runs) stays off the gateway's core.
    os.sched_setaffinity(0, {opts.load_cpu})
    own_tmp = "BENCH_TMP" not in os.environ
    tmp = Path(os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="orca-bench-"))
    try:
        with _terminate_on_sigterm():
            _, out = run(opts, tmp)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    except (KeyboardInterrupt, SystemExit):
        log("interrupted; everything it started is stopped")
        raise
    finally:
        if own_tmp:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(out.read_text(), end="")
    log(f"report written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
