"""Every recording, replayed through the gateway in the OTHER client format (issue 3, "Proof on
real traffic").

For each recorded chat-completions / messages request R, the client request is R expressed in
the other wire by the project's own translators (R → canonical → other wire), sent with that
wire's official SDK to ``replay-openai/<model>`` or ``replay-anthropic/<model>``; the replay
upstream answers with the recorded response. Checked:

1. the request the gateway sent upstream has the meaning of R (``cross_support`` normalisers,
   every forgiven difference a numbered rule there);
2. the SDK's result carries what the recorded answer carried that its format can carry: text,
   tool calls (argument JSON), thinking text and signatures, the mapped stop reason, usage
   converted exactly; streamed recordings through the SDK stream helpers, compared with the same
   expectation as a whole answer; recorded errors raise in the client's envelope.

Recordings whose request uses something the other client format cannot express are excluded
(skipped) with their reason, from ``openai_exclusion`` / ``anthropic_exclusion``.

How the client request is made (``anthropic_client_request`` / ``openai_client_request``): the
Anthropic client speaks adaptive thinking, the Anthropic form that carries every OpenAI effort;
its assistant turns carry reasoning as the gateway showed it (a thinking block with an empty
signature); Mistral's dialect (untyped tools, ``"any"``) is read by the translators as it is.
The OpenAI client carries signed thinking, redacted thinking and server-tool blocks in
``reasoning_details``, so multi-turn tool use with Claude thinking goes through the OpenAI
format (e.g. ``test_anthropic_tool_with_thinking#1``). Bugs the recordings exposed are also
shown, at the end, in the direction where they bite.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import openai
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as AnthropicMessage

from orcarouter.canonical import ANTHROPIC_THINKING_FORMAT, Message, Request, Thinking
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc
from tests.conftest import ADMIN_KEY
from tests.replay.cross_support import (
    ANTHROPIC_ERROR_TYPES,
    CLIENT_MAX_TOKENS,
    accumulate_openai_stream,
    anthropic_answer,
    anthropic_request_meaning,
    assert_same,
    expected_anthropic_answer,
    expected_openai_answer,
    openai_answer,
    openai_choice,
    openai_request_meaning,
    sse_events,
)
from tests.support.gateway import GatewayProcess
from tests.support.recordings import Interaction, load_family
from tests.support.replay import ReplayUpstream, json_answer, replay

OPENAI = [
    i
    for i in load_family("openai-chat")
    if i.uri.split("?")[0].split("#")[0].endswith("/chat/completions")
]
ANTHROPIC = [
    i for i in load_family("anthropic-messages") if i.uri.split("?")[0].endswith("/v1/messages")
]

# ---- exclusions: what the other client format cannot say -------------------------------------

_STANDARD_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh", "max"}


def openai_exclusion(body: dict[str, Any]) -> str | None:
    """Why an OpenAI request cannot be sent by an Anthropic client (``None``: it can)."""
    parts = [
        p
        for m in body.get("messages") or ()
        if isinstance(m.get("content"), list)
        for p in m["content"]
    ]
    kinds = {p.get("type") for p in parts}
    if "input_audio" in kinds:
        return "audio input: Anthropic Messages has no audio content"
    if "video_url" in kinds:
        return "video input: Anthropic Messages has no video content"
    if kinds & {"document_url", "thinking"}:
        return (
            "Mistral-only content part (document_url / thinking): no Anthropic block the "
            "gateway renders as it"
        )
    if (body.get("n") or 1) > 1 or body.get("logprobs") or body.get("top_logprobs"):
        return "n > 1 / logprobs: an Anthropic answer is one message without log probabilities"
    if any(body.get(k) for k in ("modalities", "audio", "prediction")):
        return "audio output / predicted outputs: no Anthropic equivalent"
    if (body.get("response_format") or {}).get("type") == "json_object":
        return "response_format json_object: Anthropic has no JSON mode without a schema"
    tools = {t.get("type", "function") for t in body.get("tools") or ()}
    if tools - {"function"}:
        return f"vendor server tool {sorted(tools - {'function'})}: no Anthropic tool for it"
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _STANDARD_EFFORTS:
        return f"vendor reasoning_effort {effort!r}: no Anthropic effort level for it"
    return None


_OPENAI_BLOCKS = {"text", "image", "document", "tool_result"}


def _client_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """System, user and tool-result blocks (assistant blocks of any kind ride in OpenAI
    ``reasoning_details`` entries, translate/openai_chat/parts.py, so they are not listed)."""
    blocks: list[dict[str, Any]] = [b for b in body.get("system") or () if isinstance(b, dict)]
    for message in body.get("messages") or ():
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if message.get("role") == "assistant":
                continue
            blocks.append(block)
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                blocks.extend(block["content"])
    return blocks


def anthropic_exclusion(body: dict[str, Any]) -> str | None:
    """Why an Anthropic request cannot be sent by an OpenAI client (``None``: it can)."""
    tools = {
        str(t.get("type"))
        for t in body.get("tools") or ()
        if t.get("type") not in (None, "custom") and not t["type"].startswith("web_search_")
    }
    if tools:
        return f"Anthropic server tool {sorted(tools)}: no Chat Completions tool for it"
    blocks = _client_blocks(body)
    kinds = {str(b.get("type")) for b in blocks} - _OPENAI_BLOCKS
    if kinds:
        return f"Anthropic-only content block {sorted(kinds)}: no Chat Completions part"
    sources = {
        f"{b['type']} by {b['source'].get('type')}"
        for b in blocks
        if isinstance(b.get("source"), dict)
        and (
            b["source"].get("type") == "file"
            or (b["source"].get("type") == "url" and b.get("type") == "document")
        )
    }
    if sources:
        return f"{sorted(sources)}: Chat Completions has no file-id parts and no document URLs"
    return None


# ---- the client requests: R in the other wire, by the project's translators -------------------


def _as_shown_to_anthropic_clients(message: Message) -> Message:
    """An assistant turn as the gateway showed it to an Anthropic client, which replays it.

    Reasoning from an OpenAI-compatible model reaches Anthropic clients as a ``thinking`` block
    with an empty signature (``am.response_from_canonical``), and comes back as such.
    """
    if message.role != "assistant":
        return message
    content = tuple(
        replace(b, format=ANTHROPIC_THINKING_FORMAT, signature=b.signature or "")
        if isinstance(b, Thinking) and b.format is None
        else b
        for b in message.content
    )
    return replace(message, content=content)


def anthropic_client_request(recorded: dict[str, Any]) -> dict[str, Any]:
    """R (OpenAI) as an Anthropic client sends it.

    The client speaks adaptive thinking (``thinking: adaptive`` + ``output_config.effort``),
    the one Anthropic form that carries every OpenAI effort level exactly.
    """
    canonical: Request = oc.request_to_canonical(recorded)
    canonical = replace(
        canonical, messages=tuple(_as_shown_to_anthropic_clients(m) for m in canonical.messages)
    )
    translation = am.request_from_canonical(
        canonical, default_max_tokens=CLIENT_MAX_TOKENS, adaptive_thinking=True
    )
    return translation.body


def openai_client_request(recorded: dict[str, Any]) -> dict[str, Any]:
    """R (Anthropic) as an OpenAI client sends it (reasoning_details carry signed thinking)."""
    return oc.request_from_canonical(am.request_to_canonical(recorded)).body


def _split(method: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fields the SDK method names as parameters, and the rest for ``extra_body``."""
    names = set(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names}
    return known, {k: v for k, v in body.items() if k not in names}


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message")) if isinstance(error, dict) else ""


@pytest.fixture(scope="module")
def anthropic_client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    """One Anthropic SDK client for the module (building one costs ~40 ms)."""
    with anthropic.Anthropic(
        base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    """One OpenAI SDK client for the module."""
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


# ---- coverage ----------------------------------------------------------------------------------


def test_recording_counts() -> None:
    """Every recording is run or excluded with a reason (the counts go in the closing note)."""
    assert len(OPENAI) == 514 and len(ANTHROPIC) == 293
    openai_excluded = [i.id for i in OPENAI if openai_exclusion(i.request_body)]
    anthropic_excluded = [i.id for i in ANTHROPIC if anthropic_exclusion(i.request_body)]
    assert (len(openai_excluded), len(anthropic_excluded)) == (30, 94)


# ---- OpenAI-upstream recordings, Anthropic client --------------------------------------------


@pytest.mark.parametrize("interaction", OPENAI, ids=lambda i: i.id)
def test_openai_recording_from_anthropic_client(
    interaction: Interaction, anthropic_client: anthropic.Anthropic, upstream: ReplayUpstream
) -> None:
    recorded = interaction.request_body
    reason = openai_exclusion(recorded)
    if reason is not None:
        pytest.skip(f"excluded: {reason}")
    body = anthropic_client_request(recorded)
    model, stream = body.pop("model"), bool(body.pop("stream", False))
    known, extra = _split(anthropic_client.messages.create, body)
    call: dict[str, Any] = {"model": f"replay-openai/{model}", **known, "extra_body": extra or None}
    upstream.expect(replay(interaction))
    _anthropic_client_answer(anthropic_client, call, stream, interaction)
    seen = upstream.received[-1]
    assert seen.path == "/openai/v1/chat/completions"
    assert_same(
        openai_request_meaning(seen.body),
        openai_request_meaning(recorded, limit_if_absent=CLIENT_MAX_TOKENS),
        f"upstream request differs from the recording; client request: {json.dumps(body):.1500}",
    )


def _anthropic_client_answer(
    client: anthropic.Anthropic, call: dict[str, Any], stream: bool, interaction: Interaction
) -> None:
    if interaction.status >= 400:
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(**call, stream=stream)
        assert caught.value.status_code == interaction.status
        envelope = caught.value.body
        assert isinstance(envelope, dict) and envelope.get("type") == "error"
        assert envelope["error"]["type"] == ANTHROPIC_ERROR_TYPES[interaction.status]
        assert envelope["error"]["message"] == _error_message(interaction.response_json)
        return
    if not stream and not isinstance((interaction.response_json or {}).get("choices"), list):
        # A non-provider test server answering text/plain, or JSON that is no chat completion:
        # nothing to translate, so a 502 in the client's envelope rather than an empty message.
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(**call)
        assert caught.value.status_code == 502
        return
    if not stream:
        message = client.messages.create(**call)
        expected = expected_anthropic_answer(openai_choice(interaction.response_json or {}))
        assert_same(anthropic_answer(message), expected, "answer")
        return
    recorded = accumulate_openai_stream(interaction.response_text or "")
    if recorded["error"] is not None:
        # An error event after HTTP 200: the Anthropic SDK raises on the "event: error" frame.
        with pytest.raises(anthropic.APIError) as failed, client.messages.stream(**call) as events:
            events.get_final_message()
        assert recorded["error"] in str(failed.value)
        return
    with client.messages.stream(**call) as events:
        final = events.get_final_message()
    assert_same(anthropic_answer(final), expected_anthropic_answer(recorded), "streamed answer")


# ---- Anthropic-upstream recordings, OpenAI client --------------------------------------------


def _anthropic_recorded_message(interaction: Interaction) -> tuple[dict[str, Any], str | None]:
    """The recorded stream accumulated by the Anthropic SDK, and a recorded error event."""
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for name, data in sse_events(interaction.response_text or ""):
        event = json.loads(data)
        if (name or event.get("type")) == "error":
            return {}, str(event["error"].get("message"))
        if event.get("type") == "ping":
            continue
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert isinstance(snapshot, AnthropicMessage)
    return snapshot.model_dump(exclude_unset=True, warnings=False), None


@pytest.mark.parametrize("interaction", ANTHROPIC, ids=lambda i: i.id)
def test_anthropic_recording_from_openai_client(
    interaction: Interaction, openai_client: openai.OpenAI, upstream: ReplayUpstream
) -> None:
    recorded = interaction.request_body
    reason = anthropic_exclusion(recorded)
    if reason is not None:
        pytest.skip(f"excluded: {reason}")
    body = openai_client_request(recorded)
    model, stream = body.pop("model"), bool(body.pop("stream", False))
    known, extra = _split(openai_client.chat.completions.create, body)
    call: dict[str, Any] = {
        "model": f"replay-anthropic/{model}",
        **known,
        "extra_body": extra or None,
    }
    upstream.expect(replay(interaction))
    _openai_client_answer(openai_client, call, stream, interaction)
    seen = upstream.received[-1]
    assert seen.path == "/anthropic/v1/messages"
    assert_same(
        anthropic_request_meaning(seen.body),
        anthropic_request_meaning(recorded),
        f"upstream request differs from the recording; client request: {json.dumps(body):.1500}",
    )


def _openai_client_answer(
    client: openai.OpenAI, call: dict[str, Any], stream: bool, interaction: Interaction
) -> None:
    if interaction.status >= 400:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**call, stream=stream)
        status = 503 if interaction.status == 529 else interaction.status
        assert caught.value.status_code == status
        envelope = caught.value.response.json()
        recorded_error = (interaction.response_json or {})["error"]
        assert envelope["error"]["message"] == recorded_error["message"]
        assert envelope["error"]["code"] == recorded_error["type"]  # §4.10: type kept as code
        return
    if not stream:
        completion = client.chat.completions.create(**call)
        expected = expected_openai_answer(interaction.response_json or {})
        assert_same(openai_answer(completion), expected, "answer")
        return
    recorded, error = _anthropic_recorded_message(interaction)
    if error is not None:
        with (
            pytest.raises(openai.APIError) as failed,
            client.chat.completions.stream(**call) as events,
        ):
            events.get_final_completion()
        assert failed.value.message == error
        return
    with client.chat.completions.stream(**call) as events:
        final = events.get_final_completion()
    assert_same(openai_answer(final), expected_openai_answer(recorded), "streamed answer")


# ---- bugs found on the recordings, shown in the direction where they bite ----------------------

CLAUDE_OK = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
# Mistral and the Hugging Face router omit "type" on function tools and named tool choices, and
# Mistral says "any" for "required": the choice Anthropic must receive.
MISTRAL_DIALECT = {
    "test_tool_choice_matrix__test_tool_choice_matrix[required-mistral]#0": {"type": "any"},
    "test_tool_choice_matrix__test_tool_choice_matrix[list_single-huggingface]#0": {
        "type": "tool",
        "name": "get_weather",
    },
}


@pytest.mark.parametrize(
    "interaction", [i for i in OPENAI if i.id in MISTRAL_DIALECT], ids=lambda i: i.id
)
def test_mistral_dialect_tools_reach_an_anthropic_model(
    interaction: Interaction, openai_client: openai.OpenAI, upstream: ReplayUpstream
) -> None:
    """The recorded Mistral-dialect request, from an OpenAI client to a Claude model."""
    body = dict(interaction.request_body)
    body.pop("model")
    upstream.expect(json_answer(CLAUDE_OK))
    known, extra = _split(openai_client.chat.completions.create, body)
    completion = openai_client.chat.completions.create(
        model="replay-anthropic/claude-sonnet-4-5", **known, extra_body=extra or None
    )
    assert completion.choices[0].message.content == "ok"
    sent = upstream.received[-1].body
    assert [t["name"] for t in sent["tools"]] == [t["function"]["name"] for t in body["tools"]]
    assert sent["tool_choice"] == MISTRAL_DIALECT[interaction.id]
