"""The command line: configuration errors, the bootstrap admin key, and key management."""

from __future__ import annotations

import re
import time
from pathlib import Path

import openai
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.replay import ReplayUpstream, json_answer

OK = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


def _config(upstream: ReplayUpstream) -> dict[str, object]:
    return {
        "providers": [{"id": "up", "protocol": "openai", "base_url": upstream.base_url + "/v1"}]
    }


@pytest.mark.parametrize(
    ("config_text", "env", "message"),
    [
        ("providers: [", {}, "not valid YAML"),
        ("- a\n- b\n", {}, "mapping"),
        ("bogus_setting: 1\n", {}, "bogus_setting"),
        (
            "providers:\n- {id: x, protocol: openai, base_url: 'https://a.b', api_key_env: NOPE}\n",
            {},
            "NOPE",
        ),
        ("providers:\n- {id: x, protocol: grpc, base_url: 'https://a.b'}\n", {}, "protocol"),
        ("providers:\n- {id: x, protocol: openai, base_url: 'ftp://a.b'}\n", {}, "base_url"),
        ("{}\n", {"ORCAROUTER_ADMIN_KEY": "plain-key"}, "ORCAROUTER_ADMIN_KEY"),
        ("{}\n", {"ORCAROUTER_PORT": "eighty"}, "ORCAROUTER_PORT"),
        ("models:\n- {provider: openai, model: x, contex_window: 5}\n", {}, "contex_window"),
        ("{}\n", {"ORCAROUTER_DATABASE_URL": "mysql://u:hunter2@db/x"}, "mysql"),
        ("health: {consecutive_failures: 0}\n", {}, "consecutive_failures"),
    ],
)
def test_bad_configuration_exits_non_zero_with_a_clear_message(
    tmp_path: Path, config_text: str, env: dict[str, str], message: str
) -> None:
    process = GatewayProcess(tmp_path, {}, env)
    process.config_path.write_text(config_text)
    result = process.cli("serve")
    assert result.returncode == 2
    assert "configuration error" in result.stderr and message in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_first_start_prints_a_generated_admin_key_once(
    tmp_path: Path, upstream: ReplayUpstream
) -> None:
    process = GatewayProcess(tmp_path, _config(upstream), {"ORCAROUTER_ADMIN_KEY": ""})
    process.start()
    process.stop()
    keys = re.findall(r"sk-orca-[A-Za-z0-9_-]{40,}", process.logs())
    assert len(keys) == 1
    process.start()
    try:
        assert re.findall(r"sk-orca-[A-Za-z0-9_-]{40,}", process.logs()) == keys  # not again
        upstream.expect(json_answer(OK))
        client = openai.OpenAI(base_url=process.base_url + "/v1", api_key=keys[0])
        client.chat.completions.create(model="up/m", messages=[])
    finally:
        process.stop()
    stored = process.query("SELECT key_hash, display_prefix FROM api_keys")
    assert all(keys[0] not in str(row) for row in stored)


def test_keys_create_list_revoke(tmp_path: Path, upstream: ReplayUpstream) -> None:
    process = GatewayProcess(tmp_path, _config(upstream), {"ORCAROUTER_ADMIN_KEY": ""})
    process.start()
    try:
        created = process.cli("keys", "create", "--name", "ci-bot")
        assert created.returncode == 0, created.stderr
        secret = re.search(r"secret: (sk-orca-\S+)", created.stdout)
        key_id = re.search(r"id:\s+(key_\w+)", created.stdout)
        assert secret and key_id
        upstream.expect(json_answer(OK))
        client = openai.OpenAI(base_url=process.base_url + "/v1", api_key=secret[1])
        client.chat.completions.create(model="up/m", messages=[])  # usable at once

        listed = process.cli("keys", "list")
        assert key_id[1] in listed.stdout and "ci-bot" in listed.stdout
        assert secret[1] not in listed.stdout

        assert process.cli("keys", "revoke", key_id[1]).returncode == 0
        deadline = time.monotonic() + 3
        status = 200
        while time.monotonic() < deadline:
            upstream.expect(json_answer(OK))
            status = request(
                process.base_url + "/v1/chat/completions",
                b'{"model":"up/m","messages":[]}',
                {"authorization": f"Bearer {secret[1]}"},
            ).status
            if status == 401:
                break
            time.sleep(0.1)
        assert status == 401
        assert process.cli("keys", "revoke", "key_missing").returncode == 1
    finally:
        process.stop()
