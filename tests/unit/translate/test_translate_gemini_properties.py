"""Property tests for the Gemini translator: Gemini → canonical → Gemini is the identity on
generated requests and responses, and a streamed response, however it is chunked, equals the
non-stream one in every wire (OpenAI and Anthropic checked through their official SDKs)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from tests.unit.translate.test_translate_gemini_support import (
    accumulate,
    decode,
    encode,
    gemini_essence,
)
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    openai_accumulate,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(min_size=1, max_size=30)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
signature = st.from_regex(r"[A-Za-z0-9+/]{8,16}=?", fullmatch=True)
base64 = st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(ident, json_values, max_size=3)


def _maybe(draw: Any, part: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**part, key: value} if draw(st.booleans()) else part


# ---- requests --------------------------------------------------------------------------------


@st.composite
def user_part(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "inline", "file"]))
    if kind == "text":
        return {"text": draw(text)}
    if kind == "inline":
        mime = draw(st.sampled_from(["image/png", "application/pdf", "audio/wav"]))
        return {"inlineData": {"mimeType": mime, "data": draw(base64)}}
    return {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpg"}}


@st.composite
def model_turn(draw: Any, turn: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    parts: list[dict[str, Any]] = []
    if draw(st.booleans()):
        parts.append(
            _maybe(draw, {"text": draw(text), "thought": True}, "thoughtSignature", draw(signature))
        )
    if draw(st.booleans()):
        parts.append(_maybe(draw, {"text": draw(text)}, "thoughtSignature", draw(signature)))
    responses: list[dict[str, Any]] = []
    for index in range(draw(st.integers(0, 2))):
        spec: dict[str, Any] = {"name": draw(ident), "args": draw(arguments)}
        answer: dict[str, Any] = {"name": spec["name"]}
        if draw(st.booleans()):
            spec["id"] = answer["id"] = f"id_{turn}_{index}"
        part = _maybe(draw, {"functionCall": spec}, "thoughtSignature", draw(signature))
        parts.append(part)
        output = draw(st.one_of(text.map(lambda t: {"output": t}), arguments))
        responses.append({"functionResponse": {**answer, "response": output}})
    if not parts:
        parts.append({"text": draw(text)})
    return {"role": "model", "parts": parts}, responses


@st.composite
def gemini_request(draw: Any) -> dict[str, Any]:
    contents: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 4))):
        parts = [*pending, *draw(st.lists(user_part(), min_size=0 if pending else 1, max_size=2))]
        contents.append({"role": "user", "parts": parts})
        model, pending = draw(model_turn(turn))
        contents.append(model)
    body: dict[str, Any] = {"contents": contents}
    if draw(st.booleans()):
        body["systemInstruction"] = _maybe(draw, {"parts": [{"text": draw(text)}]}, "role", "user")
    if draw(st.booleans()):
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
        declaration = {"name": draw(ident), "description": draw(text)}
        if draw(st.booleans()):
            declaration["parametersJsonSchema"] = {**schema, "additionalProperties": False}
        else:
            declaration["parameters"] = {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
        body["tools"] = [{"functionDeclarations": [declaration]}, {"googleSearch": {}}]
        mode = draw(st.sampled_from(["AUTO", "ANY", "NONE", "VALIDATED"]))
        body["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    config = draw(generation_config())
    if config or draw(st.booleans()):
        body["generationConfig"] = config
    if draw(st.booleans()):
        body["safetySettings"] = [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}]
    return body


@st.composite
def generation_config(draw: Any) -> dict[str, Any]:
    optional = {
        "temperature": st.floats(0, 2, allow_nan=False),
        "topP": st.floats(0, 1, allow_nan=False),
        "topK": st.integers(1, 100),
        "maxOutputTokens": st.integers(1, 10_000),
        "stopSequences": st.lists(text, min_size=1, max_size=5),
        "seed": st.integers(0, 1000),
        "candidateCount": st.integers(1, 3),
        "thinkingConfig": st.one_of(
            st.builds(lambda b: {"thinkingBudget": b}, st.integers(-1, 24_576)),
            st.builds(
                lambda level, include: {"thinkingLevel": level, "includeThoughts": include},
                st.sampled_from(["LOW", "HIGH"]),
                st.booleans(),
            ),
        ),
        "responseMimeType": st.sampled_from(["application/json", "text/plain"]),
    }
    config = {k: draw(v) for k, v in optional.items() if draw(st.booleans())}
    if config.get("responseMimeType") == "application/json" and draw(st.booleans()):
        config["responseJsonSchema"] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    return config


@SETTINGS
@given(gemini_request())
def test_gemini_request_round_trip_is_identity(body: dict[str, Any]) -> None:
    assert gm.request_from_canonical(gm.request_to_canonical(body)).body == body


# ---- responses and streams -------------------------------------------------------------------


@st.composite
def gemini_response(draw: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        parts.append(
            _maybe(draw, {"text": draw(text), "thought": True}, "thoughtSignature", draw(signature))
        )
    for _ in range(draw(st.integers(0, 2))):
        parts.append(_maybe(draw, {"text": draw(text)}, "thoughtSignature", draw(signature)))
    calls = draw(st.integers(0, 3))
    for index in range(calls):
        spec = _maybe(draw, {"name": draw(ident), "args": draw(arguments)}, "id", f"fc{index}")
        sign = index == 0 and draw(st.booleans())
        parts.append(
            {"functionCall": spec, **({"thoughtSignature": draw(signature)} if sign else {})}
        )
    if not parts:
        parts.append({"text": draw(text)})
    thoughts = draw(st.integers(0, 99))
    usage = {
        "promptTokenCount": draw(st.integers(1, 999)),
        "candidatesTokenCount": draw(st.integers(1, 999)),
        "thoughtsTokenCount": thoughts,
    }
    usage["totalTokenCount"] = sum(usage.values())
    candidate = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": draw(st.sampled_from(["STOP", "MAX_TOKENS"])),
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "gemini-x",
        "responseId": draw(st.from_regex(r"[A-Za-z0-9_-]{4,12}", fullmatch=True)),
    }


def _split(value: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(value) + 1) for c in cuts} | {0, len(value)})
    return [value[a:b] for a, b in pairwise(points) if value[a:b]]


def gemini_chunks(body: dict[str, Any], cuts: list[int], trailing: bool) -> list[dict[str, Any]]:
    """A valid Gemini stream for ``body``: text split at ``cuts``, one part per chunk.

    A text part's signature rides on its first piece, a thought's on its last (where Gemini
    puts them); with ``trailing`` the finish comes in a separate empty chunk (Gemini 3).
    """
    candidate = body["candidates"][0]
    pieces: list[dict[str, Any]] = []
    for part in candidate["content"]["parts"]:
        if "text" not in part:
            pieces.append(part)
            continue
        fragments = _split(part["text"], cuts)
        extra = {k: v for k, v in part.items() if k not in ("text", "thoughtSignature")}
        split = [{"text": f, **extra} for f in fragments]
        if "thoughtSignature" in part:
            target = split[-1] if part.get("thought") else split[0]
            target["thoughtSignature"] = part["thoughtSignature"]
        pieces.extend(split)
    head = {k: v for k, v in body.items() if k != "candidates"}

    def chunk(parts: list[dict[str, Any]], finish: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            out["finishReason"] = candidate["finishReason"]
        return {"candidates": [out], **head}

    chunks = [chunk([p], False) for p in pieces]
    if trailing:
        return [*chunks, chunk([{"text": ""}], True)]
    last = chunks[-1]["candidates"][0]
    last["finishReason"] = candidate["finishReason"]
    return chunks


@SETTINGS
@given(gemini_response())
def test_gemini_response_round_trip_is_identity(body: dict[str, Any]) -> None:
    assert gm.response_from_canonical(gm.response_to_canonical(body)) == body


@SETTINGS
@given(gemini_response(), st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_gemini_stream_equals_non_stream_in_every_wire(
    body: dict[str, Any], cuts: list[int], trailing: bool
) -> None:
    reference = gm.response_to_canonical(body)
    events = decode(gemini_chunks(body, cuts, trailing))
    assert gemini_essence(accumulate(events)) == gemini_essence(reference)

    encoder = oc.OpenAIChunkEncoder(created=1)
    chunks = [c for e in events for c in encoder.feed(e)]
    check_openai_chunk_invariants(chunks)
    streamed = oc.response_to_canonical({**openai_accumulate(chunks), "object": "chat.completion"})
    expected = oc.response_to_canonical(oc.response_from_canonical(reference, created=1))
    assert gemini_essence(streamed) == gemini_essence(expected)

    anthropic = am.AnthropicEventEncoder()
    pairs = [p for e in events for p in anthropic.feed(e)]
    check_anthropic_event_invariants(pairs)
    streamed = am.response_to_canonical(anthropic_accumulate(pairs))
    expected = am.response_to_canonical(am.response_from_canonical(reference))
    assert gemini_essence(streamed) == gemini_essence(expected)

    again = decode(encode(events))
    assert gemini_essence(accumulate(again)) == gemini_essence(reference)
