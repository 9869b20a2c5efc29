"""The real gateway in a subprocess, on a free port, with its logs captured to a file."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port that refuses connections (bound, never listened on, then released)."""
    return free_port()


class GatewayProcess:
    """``orcarouter serve`` with a YAML config, a data dir and extra environment."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        """``serve_args``: extra arguments after ``serve``, e.g. ``("--workers", "2")``."""
        self.workdir = workdir
        self.serve_args = serve_args
        self.port = free_port()
        self.config_path = workdir / "orcarouter.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "gateway.log"
        self.env = {
            **os.environ,
            "ORCAROUTER_DATA_DIR": str(workdir / "data"),
            "ORCAROUTER_PORT": str(self.port),
            "ORCAROUTER_HOST": "127.0.0.1",
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an ``orcarouter`` command against the same config and data."""
        return subprocess.run(
            [sys.executable, "-m", "orcarouter", "--config", str(self.config_path), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until ``/healthz`` answers."""
        argv = [sys.executable, "-m", "orcarouter", "--config", str(self.config_path), "serve"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*argv, *self.serve_args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise RuntimeError("gateway did not become healthy")

    @property
    def pid(self) -> int:
        """The ``orcarouter serve`` process (with workers: their supervising parent)."""
        assert self._proc is not None
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (no shutdown, no drain)."""
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(5)

    def stop(self) -> int:
        """SIGTERM, wait for the graceful shutdown, return the exit code."""
        assert self._proc is not None
        self._proc.terminate()
        try:
            return self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait(5)

    @property
    def database(self) -> Path:
        """The gateway's SQLite file."""
        return self.workdir / "data" / "orcarouter.db"

    def usage_record(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The settled usage record of ``request_id`` once the batch writer has committed it
        (with ``usage.open_rows: database`` a request is stored ``open`` first, settled after)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query("SELECT * FROM usage_records WHERE request_id = ?", (request_id,))
            if rows and rows[0]["outcome"] != "open":
                return rows[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no usage record for {request_id}")
            time.sleep(0.05)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query on the gateway's database."""
        with contextlib.closing(sqlite3.connect(self.database)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params)]

    def logs(self) -> str:
        """Everything the gateway printed."""
        return self.log_path.read_text(errors="replace")
