"""What a benchmark run was measured on: the machine, the tools and the code."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, check=False, timeout=10)
        except OSError as exc:
            return f"unavailable ({exc})"
        text = (done.stdout + done.stderr).decode(errors="replace").strip()
        return text.splitlines()[0] if text else "unknown"

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        check=False,
    ).stdout.strip()
    interpreter = sys.executable
    if (built := os.path.realpath(sys.executable)) != interpreter:
        interpreter += f" -> {built}"  # the build (a venv's python links to it)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({interpreter})",
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
        "libraries": ", ".join(
            f"{n} {version(n)}" for n in ("uvicorn", "uvloop", "httptools", "aiohttp", "orjson")
        ),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "gateway_src": os.environ.get("BENCH_GATEWAY_SRC") or str(REPO / "src"),
        "request_path": request_path(),
        "loadavg": Path("/proc/loadavg").read_text().strip(),
    }


def request_path(native: str | None = None) -> str:
    """Whether the gateway runs its request path compiled (``orcarouter.native``) or from
    source, asked of the interpreter and the tree the benchmark starts it with (``native``:
    with that ``ORCAROUTER_NATIVE`` instead of the benchmark's)."""
    env = with_gateway_src({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, native)
    probe = "import orcarouter as o; n = getattr(o, 'NATIVE', None); print(n and n.describe())"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return "the gateway does not start: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    answer = done.stdout.strip()
    return "from source (a tree without orcarouter.native)" if answer == "None" else answer


def with_gateway_src(env: dict[str, str], native: str | None = None) -> dict[str, str]:
    """``env`` for running the gateway's code: from another checkout's ``src`` when
    ``BENCH_GATEWAY_SRC`` names one (A/B runs), else the project's install; compiled or from
    source as ``native`` or else ``ORCAROUTER_NATIVE`` says (``orcarouter.native``)."""
    if os.environ.get("BENCH_GATEWAY_SRC"):
        env["PYTHONPATH"] = os.environ["BENCH_GATEWAY_SRC"]
    for name in ("ORCAROUTER_NATIVE", "ORCAROUTER_NATIVE_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    if native is not None:
        env["ORCAROUTER_NATIVE"] = native
    return env
