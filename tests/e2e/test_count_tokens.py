"""``/v1/messages/count_tokens``: Anthropic's own count, or a marked estimate."""

from __future__ import annotations

import anthropic
import pytest

from orcarouter.providers.token_estimate import count_text
from tests.conftest import ADMIN_KEY, ANTHROPIC_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.replay import ReplayUpstream, json_answer


def test_anthropic_models_get_anthropics_count(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer({"input_tokens": 42}))
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    counted = client.messages.count_tokens(
        model="replay-anthropic/claude-x", messages=[{"role": "user", "content": "Hello"}]
    )
    assert counted.input_tokens == 42
    seen = upstream.received[-1]
    assert seen.path == "/anthropic/v1/messages/count_tokens"
    assert seen.body == {"model": "claude-x", "messages": [{"role": "user", "content": "Hello"}]}
    assert seen.headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY


def test_openai_models_get_a_marked_estimate(gateway: GatewayProcess) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY)
    text = "The quick brown fox jumps over the lazy dog. " * 20
    raw = client.messages.with_raw_response.count_tokens(
        model="replay-openai/gpt-4o",
        system="Be terse.",
        messages=[{"role": "user", "content": text}],
    )
    counted = raw.parse()
    assert raw.headers["x-orca-token-count"] == "estimate; encoding=o200k_base"
    assert (counted.model_extra or {})["estimated"] is True
    # two messages (system, user) at 3 tokens each plus their roles, the texts, and the priming
    expected = (
        3
        + 3
        + count_text("system", "o200k_base")
        + count_text("Be terse.", "o200k_base")
        + count_text("user", "o200k_base")
        + count_text(text, "o200k_base")
        + 3
    )
    assert counted.input_tokens == expected
    assert 180 < counted.input_tokens < 260  # about 10 tokens per sentence, 20 sentences


def test_count_tokens_needs_a_key(gateway: GatewayProcess) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-orca-nope" + "x" * 40)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(
            model="replay-openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
