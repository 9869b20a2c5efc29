"""Every OpenAI-chat and Anthropic-messages recording, replayed through the same-protocol path.

The recorded request is sent with the official SDK of its format; the fake upstream answers
with the recorded response. The upstream must receive the recorded request (only the model
id and the usage option may differ), and the SDK must return exactly what the provider sent.
"""

from __future__ import annotations

import inspect
from typing import Any

import anthropic
import openai
import orjson
import pytest
from anthropic._models import construct_type
from anthropic.types import Message, RawMessageStreamEvent
from openai._models import construct_type as openai_construct
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from orcarouter.wire.sse import SSESplitter
from tests.conftest import ADMIN_KEY
from tests.support.gateway import GatewayProcess
from tests.support.recordings import Interaction, load_family
from tests.support.replay import ReplayUpstream, replay

OPENAI = [
    i
    for i in load_family("openai-chat")
    if i.uri.split("?")[0].split("#")[0].endswith("/chat/completions")
]
ANTHROPIC = [
    i for i in load_family("anthropic-messages") if i.uri.split("?")[0].endswith("/v1/messages")
]
# Anthropic stream events the SDK yields (it skips ping and raises on error).
SDK_EVENTS = {
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
}


def _split(client_method: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recorded fields the SDK method names as parameters, and the rest for ``extra_body``."""
    names = set(inspect.signature(client_method).parameters)
    known = {k: v for k, v in body.items() if k in names}
    extra = {k: v for k, v in body.items() if k not in names}
    return known, extra


def _events(text: str) -> list[tuple[str, Any]]:
    splitter = SSESplitter()
    events = splitter.feed(text.encode())
    tail = splitter.close()
    if tail is not None:
        events.append(tail)
    return [(e.event, e.data) for e in events if e.data]


def _forwarded_as_recorded(seen: Any, recorded: dict[str, Any], stream: bool) -> None:
    body = dict(seen.body)
    if stream and "stream_options" not in recorded:
        assert body.pop("stream_options") == {"include_usage": True}
    assert body == recorded


def test_recording_counts() -> None:
    """The suite covers every same-protocol recording we ship (reported in the closing note)."""
    assert len(OPENAI) == 514
    assert len(ANTHROPIC) == 293


@pytest.mark.parametrize("interaction", OPENAI, ids=lambda i: i.id)
def test_openai_recording(
    interaction: Interaction, gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    body = dict(interaction.request_body)
    model = body.pop("model")
    known, extra = _split(client.chat.completions.create, body)
    upstream.expect(replay(interaction))
    call = {"model": f"replay-openai/{model}", **known, "extra_body": extra or None}
    stream = bool(body.get("stream"))
    if interaction.status >= 400:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**call)
        assert caught.value.status_code == interaction.status
        assert caught.value.response.json() == interaction.response_json
    elif interaction.response_json is None and not interaction.is_stream:
        # A recording of a non-provider test server answering text/plain: not a chat
        # completion, so the client gets a 502 in its envelope rather than garbage.
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**call)
        assert caught.value.status_code == 502
    elif stream:
        _check_openai_stream(client, call, body, interaction)
    else:
        raw = client.chat.completions.with_raw_response.create(**call)
        assert orjson.loads(raw.http_response.content) == interaction.response_json
        assert _dump(raw.parse()) == _dump(
            openai_construct(type_=ChatCompletion, value=interaction.response_json)
        )
        assert raw.headers["x-orca-resolved-model"] == f"replay-openai/{model}"
    _forwarded_as_recorded(upstream.received[-1], interaction.request_body, stream)


def _check_openai_stream(
    client: openai.OpenAI, call: dict[str, Any], body: dict[str, Any], interaction: Interaction
) -> None:
    """Chunks equal the recorded ones; a recorded error event raises the SDK's APIError."""
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    expected: list[dict[str, Any]] = []
    error: str | None = None
    for _, data in _events(interaction.response_text or ""):
        if data.startswith("[DONE]"):
            break
        chunk = orjson.loads(data)
        if "error" in chunk:
            error = chunk["error"]["message"]
            break
        if not wants_usage and not chunk.get("choices") and chunk.get("usage"):
            continue
        expected.append(_dump(openai_construct(type_=ChatCompletionChunk, value=chunk)))
    got: list[dict[str, Any]] = []
    if error is None:
        got = [_dump(c) for c in client.chat.completions.create(**call)]
    else:
        with pytest.raises(openai.APIError) as caught:
            got.extend(_dump(c) for c in client.chat.completions.create(**call))
        assert caught.value.message == error
    assert got == expected


def _dump(model: Any) -> dict[str, Any]:
    # Provider extras (e.g. Mistral's structured content) do not fit the SDK's declared
    # types; the SDK keeps them as given, and so does the comparison.
    return model.model_dump(warnings=False)  # type: ignore[no-any-return]


@pytest.mark.parametrize("interaction", ANTHROPIC, ids=lambda i: i.id)
def test_anthropic_recording(
    interaction: Interaction, gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0)
    body = dict(interaction.request_body)
    model = body.pop("model")
    known, extra = _split(client.messages.create, body)
    headers = {"anthropic-version": interaction.request_header("anthropic-version") or "2023-06-01"}
    beta = interaction.request_header("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    upstream.expect(replay(interaction))
    call = {
        "model": f"replay-anthropic/{model}",
        **known,
        "extra_body": extra or None,
        "extra_headers": headers,
    }
    stream = bool(body.get("stream"))
    if interaction.status >= 400:
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(**call)
        assert caught.value.status_code == interaction.status
        assert caught.value.response.json() == interaction.response_json
    elif stream:
        got = [_dump(e) for e in client.messages.create(**call)]
        expected = [
            _dump(construct_type(type_=RawMessageStreamEvent, value=orjson.loads(data)))
            for name, data in _events(interaction.response_text or "")
            if name in SDK_EVENTS
        ]
        assert got == expected
    else:
        raw = client.messages.with_raw_response.create(**call)
        assert orjson.loads(raw.http_response.content) == interaction.response_json
        assert _dump(raw.parse()) == _dump(
            construct_type(type_=Message, value=interaction.response_json)
        )
    seen = upstream.received[-1]
    assert seen.headers["anthropic-version"] == headers["anthropic-version"]
    assert seen.headers.get("anthropic-beta") == beta
    _forwarded_as_recorded(seen, interaction.request_body, stream=False)
