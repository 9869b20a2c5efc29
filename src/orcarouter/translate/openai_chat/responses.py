"""OpenAI ``chat.completion`` response body ⇄ canonical ``Response``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import (
    Block,
    Choice,
    Citation,
    Refusal,
    Response,
    Text,
    Thinking,
    ToolUse,
)
from orcarouter.translate.common import JsonDict, extras_for, residual, split_known, with_extras
from orcarouter.translate.openai_chat.messages import reasoning_blocks
from orcarouter.translate.openai_chat.ordering import detail_entries, restore_order
from orcarouter.translate.openai_chat.parts import (
    DEFAULT_REASONING_FIELDS,
    REASONING_DETAILS,
    REASONING_TEXT_KEYS,
    answer_part_blocks,
    is_reasoning_like,
    tool_call_from_block,
    tool_call_to_block,
)
from orcarouter.translate.stop_reasons import stop_from_openai, stop_to_openai
from orcarouter.translate.usage import usage_from_openai, usage_to_openai

_TOP_KEYS: Final = frozenset({"id", "object", "created", "model", "choices", "usage"})


def response_to_canonical(body: Mapping[str, Any]) -> Response:
    """Parse an OpenAI ``chat.completion`` body."""
    choices = tuple(
        _choice_to_canonical(c) for c in body.get("choices") or () if isinstance(c, Mapping)
    )
    usage = body.get("usage")
    leftover = split_known(body, _TOP_KEYS)
    if body.get("object") != "chat.completion":
        leftover["object"] = body.get("object")
    return Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        choices=choices,
        usage=usage_from_openai(usage) if isinstance(usage, Mapping) else None,
        created=body.get("created") if isinstance(body.get("created"), int) else None,
        source="openai",
        extra=extras_for("openai", leftover),
    )


def _choice_to_canonical(data: Mapping[str, Any]) -> Choice:
    raw_message = data.get("message")
    message: Mapping[str, Any] = raw_message if isinstance(raw_message, Mapping) else {}
    reasoning, fields = reasoning_blocks(message)
    blocks: list[Block] = list(reasoning)
    content = message.get("content")
    if isinstance(content, str):
        citations = tuple(_annotation_to_citation(a) for a in message.get("annotations") or ())
        blocks.append(Text(text=content, citations=citations))
    elif isinstance(content, list):
        # Mistral's structured answer; the choice's extras keep its original shape.
        blocks.extend(answer_part_blocks(content))
    if isinstance(message.get("refusal"), str):
        blocks.append(Refusal(text=message["refusal"]))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        blocks.extend(tool_call_to_block(c) for c in calls if isinstance(c, Mapping))
    blocks = restore_order(blocks, message.get(REASONING_DETAILS))
    finish = data.get("finish_reason")
    choice = Choice(
        index=data.get("index", 0) if isinstance(data.get("index"), int) else 0,
        content=tuple(blocks),
        stop_reason=stop_from_openai(
            finish if isinstance(finish, str) else None,
            saw_tool_calls=isinstance(calls, list) and bool(calls),
        ),
        reasoning_fields=fields,
    )
    return replace(choice, extra=extras_for("openai", residual(data, _choice(choice))))


def _annotation_to_citation(data: Mapping[str, Any]) -> Citation:
    kind = str(data.get("type", ""))
    spec = data.get(kind) if isinstance(data.get(kind), Mapping) else {}
    assert isinstance(spec, Mapping)
    citation = Citation(
        kind=kind,
        url=spec.get("url"),
        title=spec.get("title"),
        start=spec.get("start_index"),
        end=spec.get("end_index"),
    )
    rendered = citation_to_annotation(citation, 0, 0) or {}
    return replace(citation, extra=extras_for("openai", residual(data, rendered)))


def response_from_canonical(response: Response, *, created: int | None = None) -> JsonDict:
    """Render a canonical response as an OpenAI ``chat.completion`` body.

    ``created`` is used when the response has none (Anthropic and Gemini send none);
    the current time otherwise.
    """
    body: JsonDict = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created or created or int(time.time()),
        "model": response.model,
        "choices": [_choice(c) for c in response.choices],
    }
    if response.usage is not None:
        body["usage"] = usage_to_openai(response.usage)
    return with_extras(body, response.extra, "openai")


def _choice(choice: Choice) -> JsonDict:
    return with_extras(
        {
            "index": choice.index,
            "message": assistant_message(choice.content, choice.reasoning_fields),
            "finish_reason": stop_to_openai(choice.stop_reason),
        },
        choice.extra,
        "openai",
    )


def assistant_message(blocks: Sequence[Block], reasoning_fields: tuple[str, ...]) -> JsonDict:
    """The ``message`` object of a response choice."""
    texts = [b for b in blocks if isinstance(b, Text)]
    message: JsonDict = {"role": "assistant", "content": None}
    if texts:
        message["content"] = "".join(t.text for t in texts)
        annotations = _annotations(texts)
        if annotations:
            message["annotations"] = annotations
    refusals = [b for b in blocks if isinstance(b, Refusal)]
    if refusals:
        message["refusal"] = "".join(r.text for r in refusals)
    calls = [tool_call_from_block(b) for b in blocks if isinstance(b, ToolUse)]
    if calls:
        message["tool_calls"] = calls
    reasoning = [b for b in blocks if is_reasoning_like(b)]
    if reasoning:
        fields = reasoning_fields or DEFAULT_REASONING_FIELDS
        text = "".join(b.thinking for b in reasoning if isinstance(b, Thinking))
        for key in REASONING_TEXT_KEYS:
            if key in fields:
                message[key] = text
        if REASONING_DETAILS in fields:
            message[REASONING_DETAILS] = detail_entries(blocks)
    return message


def _annotations(texts: Sequence[Text]) -> list[JsonDict]:
    out: list[JsonDict] = []
    offset = 0
    for text in texts:
        for citation in text.citations:
            rendered = citation_to_annotation(citation, offset, offset + len(text.text))
            if rendered is not None:
                out.append(rendered)
        offset += len(text.text)
    return out


def citation_to_annotation(citation: Citation, block_start: int, block_end: int) -> JsonDict | None:
    """A citation as an OpenAI annotation; offsets are made absolute in the joined content."""
    if citation.url is None:
        if "openai" not in citation.extra:
            return None
        return with_extras({"type": citation.kind}, citation.extra, "openai")
    start = block_start + citation.start if citation.start is not None else block_start
    end = block_start + citation.end if citation.end is not None else block_end
    spec: JsonDict = {"end_index": end, "start_index": start, "url": citation.url}
    if citation.title is not None:
        spec["title"] = citation.title
    return with_extras({"type": "url_citation", "url_citation": spec}, citation.extra, "openai")
