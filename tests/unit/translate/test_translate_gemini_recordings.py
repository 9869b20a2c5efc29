"""Every recorded Gemini exchange through the Gemini translator.

Same wire: parse then render is the identity. Other wire: Gemini → OpenAI/Anthropic → Gemini
loses no text, tool call, argument, reasoning (with signatures, where the wire carries them),
stop reason or usage number. Streams: recorded SSE through the Gemini stream decoder into the
OpenAI and Anthropic stream encoders, accumulated by the OFFICIAL SDKs, equals the non-stream
translation of the accumulated recording. Exclusions are listed with their reason.
"""

from __future__ import annotations

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
    Text,
    Thinking,
    UrlSource,
)
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.anthropic_messages.requests import JSON_OBJECT_INSTRUCTION
from tests.support.recordings import Interaction, load_family
from tests.unit.translate.test_translate_gemini_support import (
    accumulate,
    decode,
    encode,
    gemini_accumulate,
    gemini_essence,
    not_opaque,
)
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    json_events,
    merge_text,
    openai_accumulate,
    request_essence,
)

GEMINI = load_family("gemini")


def _ids(it: Interaction) -> str:
    return it.id


def _requests() -> list[Interaction]:
    return [i for i in GEMINI if isinstance(i.request_body, dict) and "contents" in i.request_body]


def _responses() -> list[Interaction]:
    return [
        i for i in GEMINI if isinstance(i.response_json, dict) and "candidates" in i.response_json
    ]


def _streams() -> list[Interaction]:
    return [i for i in GEMINI if i.is_stream and i.status == 200]


def _json(it: Interaction) -> dict[str, Any]:
    assert isinstance(it.response_json, dict)
    return it.response_json


def _body(it: Interaction) -> dict[str, Any]:
    assert isinstance(it.request_body, dict)
    return it.request_body


def _portable_to_openai(block: Block) -> bool:
    """What an OpenAI request can hold: not Gemini-only parts (code execution, server tool
    calls, video, audio by URL), not files uploaded to Gemini's Files API, not documents by URL.
    """
    if isinstance(block, OpaqueBlock):
        return False
    if isinstance(block, Image | Document) and isinstance(block.source, FileIdSource):
        return False
    return not (isinstance(block, Document) and isinstance(block.source, UrlSource))


def _portable_to_anthropic(block: Block) -> bool:
    """What an Anthropic request can hold: no audio, no Gemini-only parts, no files uploaded to
    Gemini's Files API (another vendor's file ids are not portable), and no reasoning Anthropic
    did not sign (it rejects foreign thinking, wire-formats.md §4.6 B.8). The system
    instruction that stands in for JSON mode (``responseMimeType: application/json`` without a
    schema) is the output format, not conversation."""
    if isinstance(block, Audio | OpaqueBlock | Thinking | RedactedThinking):
        return False
    if isinstance(block, Text) and block.text == JSON_OBJECT_INSTRUCTION:
        return False
    return not (isinstance(block, Image | Document) and isinstance(block.source, FileIdSource))


def _normalised(essence: dict[str, Any]) -> dict[str, Any]:
    """Turns as Gemini must get them from another wire (wire-formats.md §5): the "." user turn
    of a system-only request (LiteLLM #9733, #13769) and the " " after media-only user parts
    (LiteLLM #5515) removed; turns left empty (empty text is dropped) removed, and the turns
    around them merged."""
    turns: list[tuple[str, list[Any]]] = []
    for role, items in essence["messages"]:
        if role == "user" and items == [("text", ".")]:
            continue
        if role == "user" and items and items[-1] == ("text", " "):
            items = items[:-1]
        if not items:
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, merge_text([*turns[-1][1], *items]))
        else:
            turns.append((role, items))
    return {**essence, "messages": turns}


# Gemini 3 takes images and documents inside functionResponse.parts, so tool results keep them.
GEMINI_3 = gm.GeminiTarget(thinking="level", function_response_media=True)


# ---- same wire: identity ---------------------------------------------------------------------


@pytest.mark.parametrize("it", _requests(), ids=_ids)
def test_gemini_request_identity(it: Interaction) -> None:
    canonical = gm.request_to_canonical(_body(it))
    assert gm.request_from_canonical(canonical).body == it.request_body


@pytest.mark.parametrize("it", _responses(), ids=_ids)
def test_gemini_response_identity(it: Interaction) -> None:
    canonical = gm.response_to_canonical(_json(it))
    assert gm.response_from_canonical(canonical) == it.response_json


# ---- other wire and back: nothing essential lost ---------------------------------------------


@pytest.mark.parametrize("it", _requests(), ids=_ids)
def test_gemini_request_via_openai(it: Interaction) -> None:
    canonical = gm.request_to_canonical(_body(it))
    there = oc.request_from_canonical(canonical, drop_params=True)
    again = gm.request_from_canonical(
        oc.request_to_canonical(there.body), target=GEMINI_3, drop_params=True
    )
    back = gm.request_to_canonical(again.body)
    keep = _portable_to_openai
    assert _normalised(request_essence(back, keep)) == _normalised(request_essence(canonical, keep))


@pytest.mark.parametrize("it", _requests(), ids=_ids)
def test_gemini_request_via_anthropic(it: Interaction) -> None:
    canonical = gm.request_to_canonical(_body(it))
    there = am.request_from_canonical(canonical, default_max_tokens=4096, drop_params=True)
    again = gm.request_from_canonical(
        am.request_to_canonical(there.body), target=GEMINI_3, drop_params=True
    )
    back = gm.request_to_canonical(again.body)
    keep = _portable_to_anthropic
    expected = _normalised(request_essence(canonical, keep))
    assert _normalised(request_essence(back, keep)) == expected


@pytest.mark.parametrize("it", _responses(), ids=_ids)
def test_gemini_response_via_openai(it: Interaction) -> None:
    canonical = gm.response_to_canonical(_json(it))
    there = oc.response_from_canonical(canonical, created=1)
    back = gm.response_to_canonical(gm.response_from_canonical(oc.response_to_canonical(there)))
    assert gemini_essence(back) == gemini_essence(canonical)


@pytest.mark.parametrize("it", _responses(), ids=_ids)
def test_gemini_response_via_anthropic(it: Interaction) -> None:
    canonical = gm.response_to_canonical(_json(it))
    there = am.response_from_canonical(canonical)
    back = gm.response_to_canonical(gm.response_from_canonical(am.response_to_canonical(there)))
    # Anthropic has no form for Gemini-only parts (code execution, server tool calls).
    assert gemini_essence(back, not_opaque) == gemini_essence(canonical, not_opaque)


# ---- streams through the official SDK accumulators -------------------------------------------


def _reference(it: Interaction) -> tuple[list[dict[str, Any]], Any]:
    chunks = json_events(it.response_text or "")
    return chunks, gm.response_to_canonical(gemini_accumulate(chunks))


@pytest.mark.parametrize("it", _streams(), ids=_ids)
def test_gemini_stream_decodes_like_the_accumulated_response(it: Interaction) -> None:
    chunks, reference = _reference(it)
    assert gemini_essence(accumulate(decode(chunks))) == gemini_essence(reference)


@pytest.mark.parametrize("it", _streams(), ids=_ids)
def test_gemini_stream_to_openai_sdk(it: Interaction) -> None:
    chunks, reference = _reference(it)
    encoder = oc.OpenAIChunkEncoder(created=1)
    out = [chunk for event in decode(chunks) for chunk in encoder.feed(event)]
    check_openai_chunk_invariants(out)
    streamed = oc.response_to_canonical({**openai_accumulate(out), "object": "chat.completion"})
    non_stream = oc.response_to_canonical(oc.response_from_canonical(reference, created=1))
    assert gemini_essence(streamed) == gemini_essence(non_stream)


@pytest.mark.parametrize("it", _streams(), ids=_ids)
def test_gemini_stream_to_anthropic_sdk(it: Interaction) -> None:
    chunks, reference = _reference(it)
    encoder = am.AnthropicEventEncoder()
    out = [pair for event in decode(chunks) for pair in encoder.feed(event)]
    check_anthropic_event_invariants(out)
    streamed = am.response_to_canonical(anthropic_accumulate(out))
    non_stream = am.response_to_canonical(am.response_from_canonical(reference))
    assert gemini_essence(streamed) == gemini_essence(non_stream)


@pytest.mark.parametrize("it", _streams(), ids=_ids)
def test_gemini_stream_re_encoded_for_gemini_clients(it: Interaction) -> None:
    chunks, reference = _reference(it)
    again = encode(decode(chunks))
    assert gemini_essence(accumulate(decode(again))) == gemini_essence(reference)
    replayed = gm.response_to_canonical(gemini_accumulate(again))
    assert gemini_essence(replayed) == gemini_essence(reference)


def test_gemini_recordings_are_covered() -> None:
    """The suite really ran over the recordings (guards against a silently empty corpus)."""
    assert len(_requests()) >= 290 and len(_responses()) >= 270 and len(_streams()) >= 15
