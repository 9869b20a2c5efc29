"""Shared fixtures: a replay upstream and a gateway process in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet
from tests.support.gateway import GatewayProcess, closed_port
from tests.support.replay import ReplayUpstream
from tests.support.services import (  # noqa: F401 - fixtures for every test
    postgres_database,
    postgres_server,
    redis_server,
    redis_space,
)

ADMIN_KEY = "sk-orca-test-admin-0123456789abcdefghijklmnopqrstuv"
OPENAI_UPSTREAM_KEY = "sk-upstream-openai-SECRET-0123456789abcdef"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-upstream-SECRET-0123456789abcdef"
GEMINI_UPSTREAM_KEY = "AIza-upstream-gemini-SECRET-0123456789"
MAX_BODY_BYTES = 4 * 1024 * 1024
# The environment a gateway on ``replay_config`` needs: the admin key and the upstream keys.
REPLAY_ENV = {
    "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
    "REPLAY_OPENAI_KEY": OPENAI_UPSTREAM_KEY,
    "REPLAY_ANTHROPIC_KEY": ANTHROPIC_UPSTREAM_KEY,
    "REPLAY_GEMINI_KEY": GEMINI_UPSTREAM_KEY,
}


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Several fake upstreams whose behaviour a test sets (tests reset it first)."""
    server = Fleet(retry_after=2)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream() -> Iterator[ReplayUpstream]:
    """One replay upstream for the whole session."""
    server = ReplayUpstream()
    server.start()
    yield server
    server.stop()


def replay_config(upstream: ReplayUpstream) -> dict[str, object]:
    """A gateway config whose providers point at the replay upstream."""
    return {
        "providers": [
            {
                "id": "replay-openai",
                "protocol": "openai",
                "base_url": upstream.base_url + "/openai/v1",
                "api_key_env": "REPLAY_OPENAI_KEY",
                "timeouts": {"first_byte": 5, "idle": 5, "total": 30},
            },
            {
                "id": "replay-anthropic",
                "protocol": "anthropic",
                "base_url": upstream.base_url + "/anthropic/v1",
                "api_key_env": "REPLAY_ANTHROPIC_KEY",
                "timeouts": {"first_byte": 5, "idle": 5, "total": 30},
            },
            {
                "id": "replay-gemini",
                "protocol": "gemini",
                "base_url": upstream.base_url + "/gemini/v1beta",
                "api_key_env": "REPLAY_GEMINI_KEY",
                "timeouts": {"first_byte": 5, "idle": 5, "total": 30},
            },
            {
                "id": "replay-fast",
                "protocol": "openai",
                "base_url": upstream.base_url + "/fast/v1",
                "api_key_env": "REPLAY_OPENAI_KEY",
                "timeouts": {"first_byte": 1, "idle": 1, "total": 10},
            },
            {
                "id": "replay-anthropic-fast",
                "protocol": "anthropic",
                "base_url": upstream.base_url + "/anthropic/v1",
                "api_key_env": "REPLAY_ANTHROPIC_KEY",
                "timeouts": {"first_byte": 1, "idle": 1, "total": 10},
            },
            {
                "id": "dead",
                "protocol": "openai",
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                "timeouts": {"connect": 2},
            },
            {
                "id": "local",
                "protocol": "openai",
                "base_url": upstream.base_url + "/local/v1",
                "models": ["llama3.2"],
            },
        ],
    }


@pytest.fixture(scope="session")
def gateway(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The real gateway, started once for the session."""
    workdir = tmp_path_factory.mktemp("gateway")
    process = GatewayProcess(
        workdir,
        replay_config(upstream),
        env={**REPLAY_ENV, "ORCAROUTER_MAX_BODY_BYTES": str(MAX_BODY_BYTES)},
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(request: pytest.FixtureRequest) -> None:
    """Each test starts with an empty replay queue (only when the upstream is in use)."""
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()
