"""OpenAI- and Anthropic-format clients reach Gemini models (recorded Gemini traffic)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest

from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini
from orcarouter.translate import openai_chat as oc
from tests.conftest import ADMIN_KEY, GEMINI_UPSTREAM_KEY
from tests.support.gateway import GatewayProcess
from tests.support.recordings import Interaction, load_family
from tests.support.replay import ReplayUpstream, replay, sse_answer


def _interaction(test_id: str) -> Interaction:
    return next(i for i in load_family("gemini") if i.id == test_id)


def _model(interaction: Interaction) -> str:
    return interaction.uri.split("/models/")[1].split(":")[0]


def _as_openai_request(interaction: Interaction) -> dict[str, Any]:
    request = gemini.request_to_canonical(interaction.request_body, model=_model(interaction))
    body = oc.request_from_canonical(request).body
    body.pop("model", None)
    return body


def test_openai_client_non_stream_tool_call_from_gemini(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    interaction = _interaction("test_google__test_google_model_retry#0")
    upstream.expect(replay(interaction))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    body = _as_openai_request(interaction)
    completion = client.chat.completions.create(
        model=f"replay-gemini/{_model(interaction)}", **body
    )
    seen = upstream.received[-1]
    assert seen.path == f"/gemini/v1beta/models/{_model(interaction)}:generateContent"
    assert seen.headers["x-goog-api-key"] == GEMINI_UPSTREAM_KEY
    assert "model" not in seen.body
    assert seen.body["contents"] == interaction.request_body["contents"]
    assert isinstance(interaction.response_json, dict)
    expected = oc.response_from_canonical(gemini.response_to_canonical(interaction.response_json))
    got = completion.model_dump(exclude_unset=True, warnings=False)
    assert got["choices"][0]["message"].get("content") == expected["choices"][0]["message"].get(
        "content"
    )
    expected_calls = expected["choices"][0]["message"].get("tool_calls") or []
    got_calls = got["choices"][0]["message"].get("tool_calls") or []
    assert [orjson.loads(c["function"]["arguments"]) for c in got_calls] == [
        orjson.loads(c["function"]["arguments"]) for c in expected_calls
    ]
    assert got["choices"][0]["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert got["usage"] == expected["usage"]


def test_anthropic_client_streams_from_gemini(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    interaction = _interaction("test_google__test_google_model_iter_stream#0")
    upstream.expect(replay(interaction, chunk_size=11))
    request = gemini.request_to_canonical(interaction.request_body, model=_model(interaction))
    body = am.request_from_canonical(request, default_max_tokens=1024).body
    body.pop("model")
    body.pop("stream", None)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0)
    with client.messages.stream(model=f"replay-gemini/{_model(interaction)}", **body) as stream:
        final = stream.get_final_message()
    seen = upstream.received[-1]
    assert seen.path.endswith(f"/models/{_model(interaction)}:streamGenerateContent")
    text = "".join(b.text for b in final.content if b.type == "text")
    recorded = "".join(
        part.get("text", "")
        for line in (interaction.response_text or "").splitlines()
        if line.startswith("data:")
        for candidate in orjson.loads(line[5:]).get("candidates", [])
        for part in candidate.get("content", {}).get("parts", [])
        if not part.get("thought")
    )
    assert text == recorded
    assert final.usage.output_tokens > 0


def test_gemini_stream_cut_before_its_finish_reason_is_not_a_clean_end(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    chunk = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Par"}]}}],
        "modelVersion": "gemini-2.5-flash",
    }
    upstream.expect(sse_answer([b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"], "end"))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    got: list[str | None] = []
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        for part in client.chat.completions.create(
            model="replay-gemini/gemini-2.5-flash",
            messages=[{"role": "user", "content": "Capital of France?"}],
            stream=True,
        ):
            got.extend(choice.delta.content for choice in part.choices)
    assert "Par" in got
