"""Provider credentials per workspace (BYOK) through the real gateway and its CLI.

A workspace's own OpenAI key reaches the upstream instead of the operator's, for that workspace
only; it is stored sealed (the SQLite files never hold it in clear), never answered by the API
or written to the log, and survives a rotation of the secret key by the CLI.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from orcarouter.accounts.credentials import new_secret_key
from tests.conftest import ADMIN_KEY, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.replay import ReplayUpstream, json_answer

WORKSPACE = "ws_default"  # the admin key's workspace
OTHER = "ws_other"
WORKSPACE_KEY = "sk-proj-workspace-OWN-SECRET-0123456789abcdefWXYZ"
SECRET_KEY = new_secret_key()
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def _gateway(upstream: ReplayUpstream, workdir: Path, **env: str) -> tuple[GatewayProcess, str]:
    """A gateway (not started yet) serving ``openai`` from the replay upstream, and the key of a
    second workspace, made first so that it is loaded at start."""
    config = {
        "providers": [
            {
                "id": "openai",
                "protocol": "openai",
                "base_url": upstream.base_url + "/openai/v1",
                "api_key_env": "BYOK_OPENAI_KEY",
                "models": ["gpt-4o-mini"],
                "timeouts": {"first_byte": 5, "idle": 5, "total": 30},
            }
        ]
    }
    process = GatewayProcess(
        workdir,
        config,
        env={"ORCAROUTER_ADMIN_KEY": ADMIN_KEY, "BYOK_OPENAI_KEY": OPENAI_UPSTREAM_KEY, **env},
    )
    created = process.cli("keys", "create", "--name", "other", "--workspace", OTHER)
    assert created.returncode == 0, created.stderr
    found = re.search(r"secret: (sk-orca-\S+)", created.stdout)
    assert found
    return process, found[1]


@pytest.fixture(scope="module")
def byok_and_other(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, str]]:
    workdir = tmp_path_factory.mktemp("byok")
    process, other = _gateway(upstream, workdir, ORCAROUTER_SECRET_KEY=SECRET_KEY)
    process.start()
    yield process, other
    process.stop()


@pytest.fixture
def byok(byok_and_other: tuple[GatewayProcess, str]) -> GatewayProcess:
    return byok_and_other[0]


def _manage(
    gateway: GatewayProcess, method: str, path: str = "", body: Any = None, token: str = ADMIN_KEY
) -> Answer:
    return request(
        f"{gateway.base_url}/api/workspaces/{WORKSPACE}/credentials{path}",
        orjson.dumps(body) if body is not None else None,
        {"authorization": f"Bearer {token}", "content-type": "application/json"},
        method=method,
    )


def _chat(gateway: GatewayProcess, upstream: ReplayUpstream, api_key: str = ADMIN_KEY) -> str:
    """One chat completion through the openai SDK; the Authorization the upstream saw."""
    upstream.expect(json_answer(COMPLETION))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=api_key, max_retries=0)
    answer = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "ok"
    headers = {k.lower(): v for k, v in upstream.received[-1].headers.items()}
    return headers["authorization"]


def _until_sent(
    gateway: GatewayProcess, upstream: ReplayUpstream, wanted: str, timeout: float = 5.0
) -> None:
    """Chat until the upstream sees ``wanted``: the cache refreshes about once a second."""
    deadline = time.monotonic() + timeout
    while (seen := _chat(gateway, upstream)) != wanted:
        assert time.monotonic() < deadline, f"the upstream still sees {seen[:12]}…"
        time.sleep(0.2)


def _stored_bytes(gateway: GatewayProcess) -> bytes:
    """Every byte of the SQLite database: the main file, its write-ahead log, its index."""
    files = sorted(gateway.database.parent.glob(gateway.database.name + "*"))
    assert files
    return b"".join(path.read_bytes() for path in files)


def test_a_workspace_key_is_used_for_that_workspace_only_and_never_shown(
    byok_and_other: tuple[GatewayProcess, str], upstream: ReplayUpstream
) -> None:
    byok, other = byok_and_other
    assert _chat(byok, upstream) == f"Bearer {OPENAI_UPSTREAM_KEY}"
    stored = _manage(byok, "PUT", "/openai", {"api_key": WORKSPACE_KEY})
    assert stored.status == 200, stored.body
    assert stored.json()["hint"] == "sk-...WXYZ" and stored.json()["provider_id"] == "openai"
    _until_sent(byok, upstream, f"Bearer {WORKSPACE_KEY}")
    assert _chat(byok, upstream, other) == f"Bearer {OPENAI_UPSTREAM_KEY}"  # another workspace

    listed = _manage(byok, "GET")
    assert listed.status == 200
    assert [(c["provider_id"], c["hint"]) for c in listed.json()] == [("openai", "sk-...WXYZ")]
    audit = request(
        f"{byok.base_url}/api/workspaces/{WORKSPACE}/audit",
        None,
        {"authorization": f"Bearer {ADMIN_KEY}"},
        method="GET",
    )
    assert "credential.stored" in [e["action"] for e in audit.json()]
    for answer in (stored, listed, audit):
        assert WORKSPACE_KEY.encode() not in answer.body

    row = byok.query("SELECT ciphertext, key_version, hint FROM provider_credentials")[0]
    assert WORKSPACE_KEY not in str(row) and row["hint"] == "sk-...WXYZ"
    secret = WORKSPACE_KEY.encode()
    assert secret not in _stored_bytes(byok)
    assert secret[8:24] not in _stored_bytes(byok)  # not even a piece of it
    assert WORKSPACE_KEY not in byok.logs() and SECRET_KEY not in byok.logs()

    assert _manage(byok, "DELETE", "/openai").status == 204
    assert _manage(byok, "DELETE", "/openai").status == 404
    _until_sent(byok, upstream, f"Bearer {OPENAI_UPSTREAM_KEY}")


def test_an_upstream_error_echoing_the_workspace_key_is_redacted(
    byok: GatewayProcess, upstream: ReplayUpstream
) -> None:
    assert _manage(byok, "PUT", "/openai", {"api_key": WORKSPACE_KEY}).status == 200
    try:
        _until_sent(byok, upstream, f"Bearer {WORKSPACE_KEY}")
        refusal = {"error": {"message": f"Incorrect API key provided: {WORKSPACE_KEY}."}}
        upstream.expect(json_answer(refusal, status=401))
        body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        answer = request(
            byok.base_url + "/v1/chat/completions",
            orjson.dumps(body),
            {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
        )
        assert answer.status == 401
        assert WORKSPACE_KEY.encode() not in answer.body and b"Incorrect API key" in answer.body
        assert WORKSPACE_KEY not in byok.logs()
    finally:
        _manage(byok, "DELETE", "/openai")


def test_storing_is_refused_for_an_unknown_provider_and_a_bad_key(byok: GatewayProcess) -> None:
    unknown = _manage(byok, "PUT", "/not-configured", {"api_key": WORKSPACE_KEY})
    assert (unknown.status, unknown.json()["error"]["code"]) == (404, "provider_not_found")
    for bad in ({"api_key": "has a space 0123456789"}, {"api_key": "short"}, {}):
        refused = _manage(byok, "PUT", "/openai", bad)
        assert refused.status == 400 and b"0123456789" not in refused.body
    extra = _manage(byok, "PUT", "/openai", {"api_key": WORKSPACE_KEY, "workspace_id": OTHER})
    assert extra.status == 400 and WORKSPACE_KEY.encode() not in extra.body
    assert _manage(byok, "GET").json() == []


def test_without_a_secret_key_byok_is_off_and_says_how_to_turn_it_on(
    gateway: GatewayProcess,
) -> None:
    refused = _manage(gateway, "PUT", "/replay-openai", {"api_key": WORKSPACE_KEY})
    assert refused.status == 409, refused.body
    error = refused.json()["error"]
    assert error["code"] == "byok_disabled" and "ORCAROUTER_SECRET_KEY" in error["message"]
    assert _manage(gateway, "GET").json() == []


def test_a_rotation_by_the_cli_keeps_requests_on_the_workspace_key(
    upstream: ReplayUpstream, tmp_path: Path
) -> None:
    old_key, new_key = new_secret_key(), new_secret_key()
    new_file = tmp_path / "new-secret.key"
    new_file.write_text(new_key + "\n")
    process, other = _gateway(upstream, tmp_path, ORCAROUTER_SECRET_KEY=old_key)
    process.start()
    try:
        assert _manage(process, "PUT", "/openai", {"api_key": WORKSPACE_KEY}).status == 200
        _until_sent(process, upstream, f"Bearer {WORKSPACE_KEY}")
        before = process.query("SELECT ciphertext, key_version FROM provider_credentials")[0]

        rotated = process.cli("credentials", "rotate", "--new-key-file", str(new_file))
        assert rotated.returncode == 0, rotated.stderr
        assert "re-encrypted 1 of 1" in rotated.stdout
        after = process.query("SELECT ciphertext, key_version FROM provider_credentials")[0]
        assert after["key_version"] != before["key_version"]
        assert after["ciphertext"] != before["ciphertext"]
        # The running gateway (still on the old key) keeps serving the workspace's key.
        assert _chat(process, upstream) == f"Bearer {WORKSPACE_KEY}"

        # The operator switches: new key current, old one previous while gateways restart.
        process.stop()
        process.env.pop("ORCAROUTER_SECRET_KEY")
        process.env["ORCAROUTER_SECRET_KEY_FILE"] = str(new_file)
        process.env["ORCAROUTER_SECRET_KEY_PREVIOUS"] = old_key
        process.start()
        assert _chat(process, upstream) == f"Bearer {WORKSPACE_KEY}"
        listed = process.cli("credentials", "list")
        assert listed.returncode == 0 and WORKSPACE_KEY not in listed.stdout
        assert "ws_default  openai" in listed.stdout and "sk-...WXYZ" in listed.stdout
        assert f"key {after['key_version']} (current)" in listed.stdout

        # A gateway left on the old key alone refuses rather than use the operator's key.
        process.stop()
        process.env.pop("ORCAROUTER_SECRET_KEY_FILE")
        process.env.pop("ORCAROUTER_SECRET_KEY_PREVIOUS")
        process.env["ORCAROUTER_SECRET_KEY"] = old_key
        process.start()
        body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        sent = len(upstream.received)
        refused = request(
            process.base_url + "/v1/chat/completions",
            orjson.dumps(body),
            {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
        )
        assert refused.status == 503
        assert refused.json()["error"]["code"] == "credential_unavailable"
        assert len(upstream.received) == sent  # nothing went upstream
        assert _chat(process, upstream, other) == f"Bearer {OPENAI_UPSTREAM_KEY}"
    finally:
        process.stop()
    logs = process.logs()
    for secret in (WORKSPACE_KEY, old_key, new_key):
        assert secret not in logs
    assert WORKSPACE_KEY.encode() not in _stored_bytes(process)


def test_a_429_on_a_workspace_key_cools_the_model_for_that_workspace_only(
    byok_and_other: tuple[GatewayProcess, str], upstream: ReplayUpstream
) -> None:
    byok, other = byok_and_other
    assert _manage(byok, "PUT", "/openai", {"api_key": WORKSPACE_KEY}).status == 200
    try:
        _until_sent(byok, upstream, f"Bearer {WORKSPACE_KEY}")
        throttled = {"error": {"message": "Rate limit reached", "type": "requests"}}
        upstream.expect(json_answer(throttled, status=429, headers={"retry-after": "30"}))
        client = openai.OpenAI(base_url=byok.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        # The other workspace reaches the model on the operator's key at once ...
        assert _chat(byok, upstream, other) == f"Bearer {OPENAI_UPSTREAM_KEY}"
        health = request(
            f"{byok.base_url}/api/health/targets",
            None,
            {"authorization": f"Bearer {ADMIN_KEY}"},
            method="GET",
        )
        states = {t["model"]: t["status"] for t in health.json()["targets"]}
        # ... while only the workspace's own way to it cools down.
        assert states.get("openai/gpt-4o-mini", "healthy") == "healthy"
        assert states[f"openai/gpt-4o-mini@{WORKSPACE}"] == "cooling_down"
    finally:
        _manage(byok, "DELETE", "/openai")
