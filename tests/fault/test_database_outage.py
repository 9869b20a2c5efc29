"""The database goes away under a running gateway (failure mode 14), simulated by cutting a TCP
proxy between the gateway and PostgreSQL, then comes back.

During the outage known keys are served from the key cache, unknown keys get 503 (fail closed,
never 401 and never let through), the management API answers 503 ``unavailable`` with
``Retry-After`` and applies nothing, and ``/readyz`` reports the database unreachable (degraded,
still 200). After it, readiness recovers within seconds and every request served meanwhile has
exactly one usage record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from orcarouter.api.health import HealthEndpoints
from orcarouter.api.management import database_unavailable
from orcarouter.store.database import create_engine_for
from tests.conftest import (
    ADMIN_KEY,
    ANTHROPIC_UPSTREAM_KEY,
    GEMINI_UPSTREAM_KEY,
    OPENAI_UPSTREAM_KEY,
    replay_config,
)
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.management import Api
from tests.support.replay import ReplayUpstream, json_answer, openai_stream, sse_answer
from tests.support.tcp_proxy import TcpProxy

MODEL = "replay-openai/gpt-4o-mini"
UNKNOWN_KEY = "sk-orca-" + "never-issued-0123456789abcdefghijklmnopqrstu"
KEYS = "/api/workspaces/ws_default/keys"
OUTAGE_SECONDS = 4.0
CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Up."}}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}


def _wait_for(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _ready(gateway: GatewayProcess) -> Answer:
    return request(gateway.base_url + "/readyz", method="GET")


def _settled(database_url: str, request_ids: list[str]) -> dict[str, list[str]]:
    """Each request's usage record outcomes, read straight from PostgreSQL (not the proxy)."""
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT request_id, outcome FROM usage_records WHERE request_id = ANY(%s)",
            (request_ids,),
        ).fetchall()
    found: dict[str, list[str]] = {request_id: [] for request_id in request_ids}
    for request_id, outcome in rows:
        found[request_id].append(outcome)
    return found


def _chat(client: openai.OpenAI) -> str:
    """One non-streaming completion; returns its request id."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Status?"}]
    )
    assert raw.parse().choices[0].message.content == "Up."
    return raw.headers["x-orca-request-id"]


def _stream(client: openai.OpenAI) -> str:
    """One streamed completion; returns its request id."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Status?"}], stream=True
    )
    texts = [c.choices[0].delta.content for c in raw.parse() if c.choices]
    assert texts == ["Up", None]
    return raw.headers["x-orca-request-id"]


@pytest.fixture
def proxy(postgres_database: str) -> Iterator[TcpProxy]:
    with TcpProxy.for_url(postgres_database) as running:
        yield running


@pytest.fixture
def gateway(
    upstream: ReplayUpstream, proxy: TcpProxy, postgres_database: str, tmp_path: Path
) -> Iterator[GatewayProcess]:
    """A gateway on a fresh PostgreSQL database reached only through the proxy."""
    process = GatewayProcess(
        tmp_path,
        replay_config(upstream),
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "ORCAROUTER_DATABASE_URL": proxy.url_for(postgres_database),
            "REPLAY_OPENAI_KEY": OPENAI_UPSTREAM_KEY,
            "REPLAY_ANTHROPIC_KEY": ANTHROPIC_UPSTREAM_KEY,
            "REPLAY_GEMINI_KEY": GEMINI_UPSTREAM_KEY,
        },
    )
    process.start()
    yield process
    proxy.restore()  # let the shutdown drain whatever is still queued
    process.stop()


def test_a_database_outage_keeps_known_keys_served_and_loses_no_usage(
    gateway: GatewayProcess, proxy: TcpProxy, upstream: ReplayUpstream, postgres_database: str
) -> None:
    api = Api(gateway.base_url)
    ready = _ready(gateway)
    assert (ready.status, ready.json()["checks"]["database"]) == (200, "ok"), ready.body
    created = api.call("POST", KEYS, {"name": "before the outage", "role": "member"}, ADMIN_KEY)
    assert created.status == 201, created.body
    member_key: str = created.json()["secret"]
    admin = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    member = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=member_key, max_retries=0)
    upstream.expect(json_answer(CHAT))
    served = [_chat(member)]  # the member key is in the cache from here on

    proxy.cut()
    cut_at = time.monotonic()
    # Degraded, not unready: a load balancer keeps the replica, which still serves known keys.
    _wait_for(
        "/readyz reports the outage",
        lambda: _ready(gateway).json()["status"] == "degraded",
        5,
    )
    ready = _ready(gateway)
    assert ready.status == 200
    assert ready.json()["checks"]["database"] == "unreachable"
    assert ready.json()["checks"]["redis"] == "not configured"
    assert request(gateway.base_url + "/healthz", method="GET").status == 200  # still alive

    # Known keys: answered from the cache, both plain and streamed.
    upstream.expect(json_answer(CHAT))
    upstream.expect(json_answer(CHAT))
    upstream.expect(sse_answer(openai_stream(["Up"], usage=(7, 1))))
    served += [_chat(admin), _chat(member), _stream(member)]
    pending = _ready(gateway).json()["checks"]["usage_journal"]["pending"]
    assert pending >= 3  # served in the outage, not committed yet

    # Unknown keys: 503 in each endpoint's own envelope, never served. The key cache notices
    # the outage at its next refresh (every second): until then an unknown key is a 401, as it
    # is with the database up when the cache was refreshed less than half a second ago.
    def unknown_key_status() -> int:
        headers = {"authorization": f"Bearer {UNKNOWN_KEY}", "content-type": "application/json"}
        return request(gateway.base_url + "/v1/chat/completions", b"{}", headers).status

    _wait_for("the key cache notices the outage", lambda: unknown_key_status() == 503, 3)
    stranger = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=UNKNOWN_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        stranger.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 503
    assert refused.value.response.json()["error"]["code"] == "service_unavailable"
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=UNKNOWN_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused_too:
        claude.messages.create(
            model="replay-anthropic/claude-x",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert refused_too.value.status_code == 503
    body: Any = refused_too.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert len(upstream.received) == 4  # the refused requests never went upstream

    # The management API: 503 unavailable with Retry-After, writes and reads alike.
    write = api.call("POST", KEYS, {"name": "during the outage", "role": "member"}, ADMIN_KEY)
    assert write.status == 503, write.body
    assert write.json()["error"]["code"] == "unavailable"
    assert int(write.headers["retry-after"]) > 0
    assert b"Traceback" not in write.body
    read = api.call("GET", KEYS, None, ADMIN_KEY)
    assert (read.status, read.json()["error"]["code"]) == (503, "unavailable")

    # Long enough for the usage writer to fail and back off several times.
    time.sleep(max(0.0, cut_at + OUTAGE_SECONDS - time.monotonic()))
    proxy.restore()
    _wait_for("/readyz is ready again", lambda: _ready(gateway).json()["status"] == "ready", 5)

    def every_request_settled() -> bool:
        found = _settled(postgres_database, served)
        return all(len(outcomes) == 1 and outcomes[0] != "open" for outcomes in found.values())

    _wait_for("every request served in the outage is recorded", every_request_settled, 10)
    outcomes_found = _settled(postgres_database, served)
    assert all(outcomes == ["ok"] for outcomes in outcomes_found.values()), outcomes_found

    # The write refused during the outage left nothing behind; the same write works now.
    names = [k["name"] for k in api.call("GET", KEYS, None, ADMIN_KEY).json()]
    assert "during the outage" not in names
    again = api.call("POST", KEYS, {"name": "after the outage", "role": "member"}, ADMIN_KEY)
    assert again.status == 201, again.body


# --- what the management API counts as "the database is unavailable" ----------------------


async def _failure(engine: Any, statement: str) -> BaseException:
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    except Exception as exc:
        return exc
    raise AssertionError(f"{statement!r} did not fail")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_connection_failures_of_each_driver_count_as_unavailable(
    proxy: TcpProxy, postgres_database: str, driver: str
) -> None:
    url = make_url(proxy.url_for(postgres_database)).set(drivername=f"postgresql+{driver}")
    engine = create_engine_for(url.render_as_string(False))
    try:
        refused = await _failure(engine, "SELECT 1/0")  # a refused statement is not an outage
        assert isinstance(refused, sa_exc.DBAPIError)
        assert not database_unavailable(refused)
        asyncio.get_running_loop().call_later(0.3, proxy.cut)
        mid_query = await _failure(engine, "SELECT pg_sleep(5)")  # cut while it runs
        assert database_unavailable(mid_query), repr(mid_query)
        pooled = await _failure(engine, "SELECT 1")  # connects anew: reset on arrival
        assert database_unavailable(pooled), repr(pooled)
    finally:
        proxy.restore()
        await engine.dispose()


# --- readiness policy, in process ---------------------------------------------------------


def _probe(answer: bool | None) -> Callable[[], Awaitable[bool]]:
    """A probe that answers ``answer``, or raises when it is None."""

    async def probe() -> bool:
        if answer is None:
            raise ConnectionRefusedError("refused")
        return answer

    return probe


@pytest.mark.parametrize(
    ("database", "redis", "status", "state"),
    [
        (True, True, 200, "ready"),
        (True, False, 200, "degraded"),  # Redis down: still serving, keep it in rotation
        (True, None, 200, "degraded"),  # a probe that raises counts as unreachable
        (False, True, 503, "unavailable"),
        (None, False, 503, "unavailable"),
    ],
)
async def test_readiness_status_follows_required_and_degrading_checks(
    database: bool | None, redis: bool | None, status: int, state: str
) -> None:
    health = HealthEndpoints(
        {"database": _probe(database)}, degrading={"redis": _probe(redis)}, pending=lambda: 3
    )
    code, body = await health.report()
    assert (code, body["status"]) == (status, state)
    checks: Any = body["checks"]
    assert checks["database"] == ("ok" if database else "unreachable")
    assert checks["redis"] == ("ok" if redis else "unreachable")
    assert checks["usage_journal"] == {"pending": 3}


async def test_a_dependency_not_configured_never_fails_readiness() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    health = HealthEndpoints({"database": _probe(True)}, degrading={"redis": None})
    assert await health.report() == (
        200,
        {
            "status": "ready",
            "checks": {"database": "ok", "redis": "not configured", "config": "ok"},
        },
    )
    slow = HealthEndpoints({"database": hangs}, timeout=0.05)  # a hung probe times out
    code, body = await slow.report()
    assert (code, body["status"]) == (503, "unavailable")
