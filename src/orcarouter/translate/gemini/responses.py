"""Gemini ``GenerateContentResponse`` ⇄ canonical ``Response``.

``finishReason`` is ``STOP`` for function-call turns too
(https://github.com/BerriAI/litellm/issues/21041); a prompt blocked before generation has no
candidates, only ``promptFeedback.blockReason``
(https://ai.google.dev/api/generate-content#PromptFeedback).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from orcarouter.canonical import Block, Choice, Response, ToolUse
from orcarouter.translate.common import JsonDict, Policy, extras_for, residual, with_extras
from orcarouter.translate.gemini.fields import get, mapping
from orcarouter.translate.gemini.grounding import (
    attach_citations,
    grounding_metadata,
    text_offsets,
)
from orcarouter.translate.gemini.parts import CallIds, PartWriter, part_to_blocks
from orcarouter.translate.stop_reasons import (
    stop_from_gemini,
    stop_from_gemini_prompt,
    stop_to_gemini,
)
from orcarouter.translate.usage import usage_from_gemini, usage_to_gemini


def call_ids_for(response_id: Any) -> CallIds:
    """Ids for the response's function calls that carry none: ``call_{responseId}_{n}``.

    Deterministic per response, so a stream and its non-stream equivalent agree, and unique
    across turns (Anthropic rejects repeated tool_use ids).
    """
    if isinstance(response_id, str) and response_id:
        return CallIds(prefix=f"call_{response_id}_")
    return CallIds(prefix=f"call_{uuid.uuid4().hex[:16]}_")


def response_to_canonical(body: Mapping[str, Any]) -> Response:
    """Parse a Gemini ``generateContent`` response body."""
    response_id = get(body, "responseId")
    ids = call_ids_for(response_id)
    raw = body.get("candidates")
    candidates = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []
    choices = [_choice(c, ids) for c in candidates]
    block_reason = get(mapping(get(body, "promptFeedback")), "blockReason")
    if not choices and block_reason is not None:
        choices.append(Choice(stop_reason=stop_from_gemini_prompt(block_reason)))
    usage = get(body, "usageMetadata")
    model = get(body, "modelVersion")
    response = Response(
        id=response_id if isinstance(response_id, str) else "",
        model=model if isinstance(model, str) else "",
        choices=tuple(choices),
        usage=usage_from_gemini(usage) if isinstance(usage, Mapping) else None,
        source="gemini",
    )
    rendered = response_from_canonical(response)
    return replace(response, extra=extras_for("gemini", residual(body, rendered)))


def _choice(candidate: Mapping[str, Any], ids: CallIds) -> Choice:
    parts = mapping(candidate.get("content")).get("parts")
    blocks: list[Block] = [
        b for p in parts or () if isinstance(p, Mapping) for b in part_to_blocks(p, ids)
    ]
    grounding = get(candidate, "groundingMetadata")
    if isinstance(grounding, Mapping):
        blocks = attach_citations(blocks, grounding)
    finish = get(candidate, "finishReason")
    index = candidate.get("index")
    choice = Choice(
        index=index if isinstance(index, int) else 0,
        content=tuple(blocks),
        stop_reason=stop_from_gemini(
            finish if isinstance(finish, str) else None,
            saw_function_call=any(isinstance(b, ToolUse) for b in blocks),
        ),
    )
    return replace(choice, extra=extras_for("gemini", residual(candidate, _candidate(choice))))


def response_from_canonical(response: Response) -> JsonDict:
    """Render a canonical response as a Gemini ``GenerateContentResponse`` body."""
    body: JsonDict = {"candidates": [_candidate(c) for c in response.choices]}
    if response.usage is not None:
        body["usageMetadata"] = usage_to_gemini(response.usage)
    body["modelVersion"] = response.model
    body["responseId"] = response.id
    return with_extras(body, response.extra, "gemini")


def _candidate(choice: Choice) -> JsonDict:
    writer = PartWriter(policy=Policy(drop_params=True), for_client=True)
    out: JsonDict = {"content": {"parts": writer.parts(choice.content), "role": "model"}}
    reason = stop_to_gemini(choice.stop_reason)
    if reason is not None:
        out["finishReason"] = reason
    grounding = grounding_metadata(text_offsets(choice.content))
    if grounding is not None:
        out["groundingMetadata"] = grounding
    out["index"] = choice.index
    return with_extras(out, choice.extra, "gemini")
