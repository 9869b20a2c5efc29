"""Every recorded OpenAI-chat and Anthropic-messages exchange through the translators.

Same wire: parse then render is the identity. Other wire: there and back loses no text, tool
call, argument, reasoning (with signatures), stop reason or usage number. Streams: recorded SSE
through the stream translators into the other wire, accumulated by the OFFICIAL SDKs, equals
the non-stream translation. Exclusions are listed below with their reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orcarouter.canonical import (
    Audio,
    Block,
    Document,
    FileIdSource,
    Image,
    OpaqueBlock,
    RedactedThinking,
    StopReason,
    StreamAccumulator,
    Text,
    Thinking,
    UrlSource,
)
from orcarouter.translate import TranslationError
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.anthropic_messages.blocks import keeps_thinking
from orcarouter.translate.anthropic_messages.requests import JSON_OBJECT_INSTRUCTION
from tests.support.recordings import Interaction, load_family
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    json_events,
    openai_accumulate,
    request_essence,
    response_essence,
    sse_events,
)

OPENAI = load_family("openai-chat")
ANTHROPIC = load_family("anthropic-messages")

# Requests whose meaning the other wire cannot carry: translation must refuse them.
GROQ_DEFAULT_EFFORT = "test_reasoning_wire_contract[groq-qwen3-effort-setting]#0"
EXPECTED_REFUSALS = {
    # Groq's vendor-only reasoning_effort value "default" has no thinking budget (§4.7: 400).
    f"test_thinking_wire_contract__{GROQ_DEFAULT_EFFORT}": "reasoning_effort",
}


def _json(it: Interaction) -> dict[str, Any]:
    """The recorded JSON response body (the parametrisation only yields JSON responses)."""
    assert isinstance(it.response_json, dict)
    return it.response_json


def _ids(it: Interaction) -> str:
    return it.id


def _requests(items: tuple[Interaction, ...]) -> list[Interaction]:
    return [i for i in items if isinstance(i.request_body, dict) and "messages" in i.request_body]


def _responses(items: tuple[Interaction, ...], key: str) -> list[Interaction]:
    return [i for i in items if isinstance(i.response_json, dict) and i.response_json.get(key)]


def _streams(items: tuple[Interaction, ...]) -> list[Interaction]:
    return [i for i in items if i.is_stream and i.status == 200]


def _portable_to_anthropic(block: Block) -> bool:
    """Blocks Anthropic has no form for are reported (dropped/refused), so not compared.

    Audio input, vendor-only OpenAI parts (Mistral ``document_url``/``thinking``), and
    reasoning Anthropic did not sign (it rejects unsigned or foreign thinking, §4.6 B.8). The
    system instruction that stands in for ``response_format: json_object`` is the output
    format, not conversation.
    """
    if isinstance(block, Audio) or (isinstance(block, OpaqueBlock) and block.wire == "openai"):
        return False
    if isinstance(block, Text) and block.text == JSON_OBJECT_INSTRUCTION:
        return False
    if isinstance(block, Thinking | RedactedThinking):
        return keeps_thinking(block)
    return True


def _portable_to_openai(block: Block) -> bool:
    """Anthropic-only blocks OpenAI messages cannot hold are reported, so not compared.

    Vendor file ids, documents by URL, and Anthropic-only blocks inside user turns or tool
    results (``container_upload``, ``tool_reference``, ``search_result``).
    """
    if isinstance(block, OpaqueBlock) and block.wire == "anthropic":
        return False
    if isinstance(block, Image) and isinstance(block.source, FileIdSource):
        return False
    return not (isinstance(block, Document) and isinstance(block.source, UrlSource | FileIdSource))


# ---- same wire: identity ---------------------------------------------------------------------


@pytest.mark.parametrize("it", _requests(OPENAI), ids=_ids)
def test_openai_request_identity(it: Interaction) -> None:
    canonical = oc.request_to_canonical(it.request_body)
    assert oc.request_from_canonical(canonical).body == it.request_body


@pytest.mark.parametrize("it", _responses(OPENAI, "choices"), ids=_ids)
def test_openai_response_identity(it: Interaction) -> None:
    canonical = oc.response_to_canonical(_json(it))
    assert oc.response_from_canonical(canonical) == it.response_json


@pytest.mark.parametrize("it", _requests(ANTHROPIC), ids=_ids)
def test_anthropic_request_identity(it: Interaction) -> None:
    canonical = am.request_to_canonical(it.request_body)
    rendered = am.request_from_canonical(canonical, default_max_tokens=1).body
    assert rendered == it.request_body


@pytest.mark.parametrize("it", _responses(ANTHROPIC, "content"), ids=_ids)
def test_anthropic_response_identity(it: Interaction) -> None:
    canonical = am.response_to_canonical(_json(it))
    assert am.response_from_canonical(canonical) == it.response_json


# ---- other wire and back: nothing essential lost ---------------------------------------------


@pytest.mark.parametrize("it", _requests(OPENAI), ids=_ids)
def test_openai_request_via_anthropic(it: Interaction) -> None:
    canonical = oc.request_to_canonical(it.request_body)
    if it.id in EXPECTED_REFUSALS:
        with pytest.raises(TranslationError) as error:
            am.request_from_canonical(canonical, default_max_tokens=4096, drop_params=True)
        assert error.value.param == EXPECTED_REFUSALS[it.id]
        return
    there = am.request_from_canonical(canonical, default_max_tokens=4096, drop_params=True)
    back = oc.request_to_canonical(
        oc.request_from_canonical(am.request_to_canonical(there.body), drop_params=True).body
    )
    keep = _portable_to_anthropic
    assert request_essence(back, keep) == request_essence(canonical, keep)


@pytest.mark.parametrize("it", _requests(ANTHROPIC), ids=_ids)
def test_anthropic_request_via_openai(it: Interaction) -> None:
    canonical = am.request_to_canonical(it.request_body)
    there = oc.request_from_canonical(canonical, drop_params=True)
    back = am.request_to_canonical(
        am.request_from_canonical(
            oc.request_to_canonical(there.body), default_max_tokens=4096, drop_params=True
        ).body
    )
    keep = _portable_to_openai
    assert request_essence(back, keep) == request_essence(canonical, keep)


def _same_stop(essence: dict[str, Any]) -> dict[str, Any]:
    # OpenAI strips the matched stop sequence: "stop_sequence" comes back as "end_turn" (§4.4);
    # a stream that ends without finish_reason is closed as end_turn.
    stop = essence["stop"]
    if stop in (StopReason.STOP_SEQUENCE, None):
        stop = StopReason.END_TURN
    return {**essence, "stop": stop}


@pytest.mark.parametrize("it", _responses(OPENAI, "choices"), ids=_ids)
def test_openai_response_via_anthropic(it: Interaction) -> None:
    canonical = oc.response_to_canonical(_json(it))
    there = am.response_from_canonical(canonical)
    back = oc.response_to_canonical(oc.response_from_canonical(am.response_to_canonical(there)))
    assert response_essence(back) == response_essence(canonical)


@pytest.mark.parametrize("it", _responses(ANTHROPIC, "content"), ids=_ids)
def test_anthropic_response_via_openai(it: Interaction) -> None:
    canonical = am.response_to_canonical(_json(it))
    there = oc.response_from_canonical(canonical)
    back = am.response_to_canonical(am.response_from_canonical(oc.response_to_canonical(there)))
    assert _same_stop(response_essence(back)) == _same_stop(response_essence(canonical))


# ---- streams through the official SDK accumulators -------------------------------------------


def _anthropic_raw(it: Interaction) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, data in sse_events(it.response_text or ""):
        if data:
            payload = json.loads(data)
            out.append((name or payload["type"], payload))
    return out


@pytest.mark.parametrize("it", _streams(ANTHROPIC), ids=_ids)
def test_anthropic_stream_to_openai_sdk(it: Interaction) -> None:
    raw = _anthropic_raw(it)
    reference = am.response_to_canonical(anthropic_accumulate(raw))
    decoder = am.AnthropicEventDecoder()
    events = [event for _, data in raw for event in decoder.feed(data)]
    accumulator = StreamAccumulator()
    for event in events:
        accumulator.feed(event)
    assert response_essence(accumulator.response()) == response_essence(reference)

    encoder = oc.OpenAIChunkEncoder(created=1)
    chunks = [chunk for event in events for chunk in encoder.feed(event)]
    check_openai_chunk_invariants(chunks)
    streamed = oc.response_to_canonical({**openai_accumulate(chunks), "object": "chat.completion"})
    non_stream = oc.response_to_canonical(oc.response_from_canonical(reference))
    assert _same_stop(response_essence(streamed)) == _same_stop(response_essence(non_stream))

    again = am.AnthropicEventEncoder()
    replayed = [out for event in events for out in again.feed(event)]
    check_anthropic_event_invariants(replayed)
    assert response_essence(am.response_to_canonical(anthropic_accumulate(replayed))) == (
        response_essence(reference)
    )


# Upstream streams the official SDK itself cannot accumulate, so there is no reference.
SDK_UNREADABLE = {
    # OpenRouter sends annotations in several deltas without "index": the SDK raises.
    "test_openrouter__test_openrouter_web_search_annotations_stream#0",
}


def _openai_reference(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    snapshot = openai_accumulate(chunks)
    usages = [c["usage"] for c in chunks if c.get("usage")]
    # The SDK snapshot keeps usage only from some chunk shapes; the last totals are the truth.
    snapshot["usage"] = usages[-1] if usages else None
    _add_mistral_thinking(snapshot, chunks)
    return {**snapshot, "object": "chat.completion"}


def _add_mistral_thinking(snapshot: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
    """The SDK drops Mistral's list-valued ``thinking`` deltas; restate them as the
    non-stream answer has them (a thinking part, then the text part)."""
    thinking = "".join(
        inner.get("text") or ""
        for chunk in chunks
        for choice in chunk.get("choices") or ()
        if isinstance((choice.get("delta") or {}).get("content"), list)
        for part in choice["delta"]["content"]
        if part.get("type") == "thinking"
        for inner in part.get("thinking") or ()
    )
    if not thinking:
        return
    message = snapshot["choices"][0]["message"]
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    message["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": thinking}]},
        {"type": "text", "text": text},
    ]


@pytest.mark.parametrize("it", _streams(OPENAI), ids=_ids)
def test_openai_stream_to_anthropic_sdk(it: Interaction) -> None:
    chunks = json_events(it.response_text or "")
    if any("error" in c for c in chunks):
        decoder = oc.OpenAIChunkDecoder()
        events = [e for c in chunks for e in decoder.feed(c)]
        encoder = am.AnthropicEventEncoder()
        names = [name for e in events for name, _ in encoder.feed(e)]
        assert names[-1] == "error", "a mid-stream error must end in an Anthropic error event"
        return
    if it.id in SDK_UNREADABLE:
        with pytest.raises(RuntimeError):
            openai_accumulate(chunks)
        return
    reference = oc.response_to_canonical(_openai_reference(chunks))
    decoder = oc.OpenAIChunkDecoder()
    events = [e for c in chunks for e in decoder.feed(c)] + decoder.finish()
    accumulator = StreamAccumulator()
    for event in events:
        accumulator.feed(event)
    assert response_essence(accumulator.response()) == response_essence(reference)

    encoder = am.AnthropicEventEncoder()
    out = [pair for event in events for pair in encoder.feed(event)]
    check_anthropic_event_invariants(out)
    streamed = am.response_to_canonical(anthropic_accumulate(out))
    non_stream = am.response_to_canonical(am.response_from_canonical(reference))
    assert _same_stop(response_essence(streamed)) == _same_stop(response_essence(non_stream))


def test_recordings_are_covered() -> None:
    """The suite really ran over the recordings (guards against a silently empty corpus)."""
    assert len(_requests(OPENAI)) > 400 and len(_requests(ANTHROPIC)) > 250
    assert len(_streams(OPENAI)) >= 40 and len(_streams(ANTHROPIC)) >= 13
