"""No secret reaches the logs, the database or an error body."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import ADMIN_KEY, ANTHROPIC_UPSTREAM_KEY, OPENAI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.replay import ReplayUpstream, json_answer


def test_logs_and_database_hold_no_key(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    upstream.expect(
        json_answer(
            {
                "error": {
                    "message": f"bad key {OPENAI_UPSTREAM_KEY}",
                    "type": "invalid_request_error",
                }
            },
            status=401,
        )
    )
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="replay-openai/x", messages=[])
    wrong = "sk-orca-attacker-guess-0123456789abcdefghijklmnop"
    request(gateway.base_url + "/v1/chat/completions", b"{}", {"authorization": f"Bearer {wrong}"})
    request(gateway.base_url + "/v1/messages", b"{}", {"x-api-key": wrong})
    logs = gateway.logs()
    assert "/v1/chat/completions 401" in logs  # the access log saw these requests
    for secret in (ADMIN_KEY, OPENAI_UPSTREAM_KEY, ANTHROPIC_UPSTREAM_KEY, wrong):
        assert secret not in logs
    dump = "\n".join(
        str(row)
        for table in ("api_keys", "usage_records", "workspaces")
        for row in gateway.query(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
    )
    for secret in (ADMIN_KEY, OPENAI_UPSTREAM_KEY, ANTHROPIC_UPSTREAM_KEY, wrong):
        assert secret not in dump
