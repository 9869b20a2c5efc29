"""``response_format: json_object`` (schema-less JSON mode) for Anthropic and Gemini targets.

Anthropic has no JSON mode, and its structured outputs reject the permissive schema that would
stand in for one (``additionalProperties`` must be ``false``:
https://platform.claude.com/docs/en/build-with-claude/structured-outputs#json-schema-limitations),
so the gateway asks for one JSON object in the system prompt. Gemini has JSON mode:
``responseMimeType: application/json`` without a schema.
"""

from __future__ import annotations

from typing import Any

import pytest

from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.anthropic_messages.requests import JSON_OBJECT_INSTRUCTION

JSON_OBJECT = {"type": "json_object"}
INSTRUCTION_BLOCK = {"type": "text", "text": JSON_OBJECT_INSTRUCTION}


def _openai(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": messages, **extra}


def _to_anthropic(body: dict[str, Any], *, drop_params: bool = False) -> Any:
    return am.request_from_canonical(
        oc.request_to_canonical(body), default_max_tokens=1024, drop_params=drop_params
    )


def test_json_object_without_system_becomes_the_system_instruction() -> None:
    body = _openai([{"role": "user", "content": "List three colours in JSON."}])
    result = _to_anthropic({**body, "response_format": JSON_OBJECT})
    assert result.body["system"] == JSON_OBJECT_INSTRUCTION
    assert "output_config" not in result.body  # no schema Anthropic would accept
    assert result.body["messages"] == [{"role": "user", "content": "List three colours in JSON."}]
    assert "response_format" in result.adjusted and "response_format" not in result.dropped


def test_json_object_instruction_follows_the_clients_system_text() -> None:
    body = _openai(
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
        response_format=JSON_OBJECT,
    )
    assert _to_anthropic(body).body["system"] == [
        {"type": "text", "text": "You are terse."},
        INSTRUCTION_BLOCK,
    ]


def test_json_object_instruction_keeps_cached_system_blocks_in_front() -> None:
    system = {
        "role": "system",
        "content": [
            {"type": "text", "text": "Long policy.", "cache_control": {"type": "ephemeral"}}
        ],
    }
    body = _openai([system, {"role": "user", "content": "Hi"}], response_format=JSON_OBJECT)
    assert _to_anthropic(body).body["system"] == [
        {"type": "text", "text": "Long policy.", "cache_control": {"type": "ephemeral"}},
        INSTRUCTION_BLOCK,
    ]


@pytest.mark.parametrize("drop_params", [False, True])
def test_json_object_is_never_refused_or_dropped(drop_params: bool) -> None:
    body = _openai([{"role": "user", "content": "JSON please"}], response_format=JSON_OBJECT)
    result = _to_anthropic(body, drop_params=drop_params)
    assert result.body["system"] == JSON_OBJECT_INSTRUCTION
    assert result.dropped == []


def test_json_schema_still_uses_structured_outputs() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = _openai([{"role": "user", "content": "Hi"}], response_format=response_format)
    result = _to_anthropic(body)
    assert result.body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in result.body


def test_gemini_json_mode_reaches_anthropic_as_the_instruction() -> None:
    request = gm.request_to_canonical(
        {
            "contents": [{"role": "user", "parts": [{"text": "JSON please"}]}],
            "generationConfig": {"responseMimeType": "application/json"},
        },
        model="claude-x",
    )
    body = am.request_from_canonical(request, default_max_tokens=1024).body
    assert body["system"] == JSON_OBJECT_INSTRUCTION


@pytest.mark.parametrize("target", [gm.GeminiTarget(), gm.GeminiTarget(json_schema=True)])
def test_json_object_is_gemini_json_mode_without_a_schema(target: gm.GeminiTarget) -> None:
    body = _openai([{"role": "user", "content": "JSON please"}], response_format=JSON_OBJECT)
    sent = gm.request_from_canonical(oc.request_to_canonical(body), target=target).body
    assert sent["generationConfig"] == {"responseMimeType": "application/json"}
    assert "systemInstruction" not in sent
