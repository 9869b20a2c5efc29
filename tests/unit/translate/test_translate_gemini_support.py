"""Helpers shared by the Gemini translation tests (this module holds no tests).

Gemini has no official stream accumulator in the dependencies (the google-genai SDK is not
installed), so ``gemini_accumulate`` does what its streaming reader documents: concatenate the
parts of every chunk and keep the last value of everything else (wire-formats.md §3.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from orcarouter.canonical import Block, Response, StreamAccumulator, StreamEvent
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from tests.unit.translate.translate_support import response_essence

SIG = "CiQB0e2Kb-gemini-signature=="


def gemini_accumulate(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One ``GenerateContentResponse`` from stream chunks (parts appended, the rest last-wins)."""
    body: dict[str, Any] = {}
    candidate: dict[str, Any] = {}
    parts: list[Any] = []
    for chunk in chunks:
        body.update({k: v for k, v in chunk.items() if k != "candidates"})
        for item in chunk.get("candidates") or ():
            for key, value in item.items():
                if key == "content":
                    parts.extend(value.get("parts") or ())
                elif value or key not in candidate:
                    candidate[key] = value
    if candidate or parts:
        body["candidates"] = [{**candidate, "content": {"parts": parts, "role": "model"}}]
    return body


def merge_thinking(items: list[Any]) -> list[Any]:
    """Join adjacent reasoning items when the first is unsigned (wires split thoughts apart)."""
    out: list[Any] = []
    for item in items:
        previous = out[-1] if out else None
        if item[0] == "thinking" and previous and previous[0] == "thinking" and not previous[2]:
            out[-1] = ("thinking", previous[1] + item[1], item[2])
        else:
            out.append(item)
    return out


def gemini_essence(response: Response, keep: Any = None) -> dict[str, Any]:
    """``response_essence`` of the first choice, ``keep`` filtering blocks, thoughts joined."""
    choice = response.choices[0]
    content = tuple(b for b in choice.content if keep is None or keep(b))
    kept = replace(response, choices=(replace(choice, content=content),))
    essence = response_essence(kept)
    return {**essence, "content": merge_thinking(essence["content"])}


def decode(chunks: Iterable[dict[str, Any]]) -> list[StreamEvent]:
    """Canonical events for Gemini chunks, ``finish()`` included."""
    decoder = gm.GeminiChunkDecoder()
    return [e for c in chunks for e in decoder.feed(c)] + decoder.finish()


def accumulate(events: Iterable[StreamEvent]) -> Response:
    """The canonical response a stream of events folds into."""
    accumulator = StreamAccumulator()
    for event in events:
        accumulator.feed(event)
    return accumulator.response()


def encode(events: Iterable[StreamEvent]) -> list[dict[str, Any]]:
    """Gemini chunks for canonical events."""
    encoder = gm.GeminiChunkEncoder()
    return [chunk for event in events for chunk in encoder.feed(event)]


def not_opaque(block: Block) -> bool:
    """Blocks other than Gemini-only parts (code execution, server tool calls, video)."""
    return type(block).__name__ != "OpaqueBlock"


def chunk(*parts: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    """One streamed ``GenerateContentResponse`` fragment."""
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-x",
        "responseId": "r1",
    }
    if usage:
        out["usageMetadata"] = {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 22,
        }
    return out


def call(name: str, **args: Any) -> dict[str, Any]:
    """A ``functionCall`` part."""
    return {"functionCall": {"name": name, "args": args}}


def openai_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gemini chunks decoded and re-encoded as OpenAI chunks."""
    encoder = oc.OpenAIChunkEncoder(created=1)
    return [c for event in decode(chunks) for c in encoder.feed(event)]


def openai_body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An OpenAI Chat request body."""
    return {"model": "gemini-x", "messages": messages, **extra}


def to_gemini(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An OpenAI request rendered for a Gemini upstream."""
    return gm.request_from_canonical(oc.request_to_canonical(body), **kwargs).body
