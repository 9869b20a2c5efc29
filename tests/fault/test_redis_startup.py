"""Redis configured but unreachable at start: refuse to start, unless told to start degraded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, REPLAY_ENV, replay_config
from tests.support.gateway import GatewayProcess, closed_port
from tests.support.http import request
from tests.support.replay import ReplayUpstream

REDIS_PASSWORD = "redis-SECRET-password-0123456789"


def _gateway(workdir: Path, upstream: ReplayUpstream, **env: str) -> GatewayProcess:
    dead = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"
    return GatewayProcess(
        workdir,
        replay_config(upstream),
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "ORCAROUTER_REDIS_URL": dead,
            **REPLAY_ENV,
            **env,
        },
    )


def test_an_unreachable_redis_stops_the_start_with_a_clear_message(
    tmp_path: Path, upstream: ReplayUpstream
) -> None:
    gateway = _gateway(tmp_path, upstream)
    argv = [sys.executable, "-m", "orcarouter", "--config", str(gateway.config_path), "serve"]
    done = subprocess.run(
        argv, env=gateway.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Redis at 127.0.0.1:" in output and "ORCAROUTER_REDIS_OPTIONAL=1" in output
    assert REDIS_PASSWORD not in output


def test_told_so_it_starts_degraded_and_serves(tmp_path: Path, upstream: ReplayUpstream) -> None:
    gateway = _gateway(tmp_path, upstream, ORCAROUTER_REDIS_OPTIONAL="1")
    gateway.start()
    try:
        ready = request(gateway.base_url + "/readyz", None, {}, method="GET")
        assert ready.status == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"] == "unreachable"
        models = request(
            gateway.base_url + "/v1/models",
            None,
            {"authorization": f"Bearer {ADMIN_KEY}"},
            method="GET",
        )
        assert models.status == 200
    finally:
        gateway.stop()
    assert REDIS_PASSWORD not in gateway.logs()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis-but-not-a-url"])
def test_a_url_that_is_not_redis_is_a_configuration_error(
    tmp_path: Path, upstream: ReplayUpstream, url: str
) -> None:
    gateway = GatewayProcess(
        tmp_path, replay_config(upstream), env={"ORCAROUTER_REDIS_URL": url, **REPLAY_ENV}
    )
    done = gateway.cli("migrate")
    assert done.returncode == 2
    assert "ORCAROUTER_REDIS_URL" in done.stderr
