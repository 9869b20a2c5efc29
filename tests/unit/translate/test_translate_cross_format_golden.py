"""Golden tests named after the bugs the cross-format replay suite found
(``tests/replay/test_cross_format_recordings.py``), one small test each."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orcarouter.canonical import (
    BlockDelta,
    BlockStart,
    Document,
    FunctionTool,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolChoice,
    UrlSource,
)
from orcarouter.translate import TranslationError
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import openai_chat as oc

PDF_URL = "https://www.w3.org/WAI/ER/tests/xhtml/testfiles/resources/pdf/dummy.pdf"


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_bug1_mistral_structured_answer_content_becomes_thinking_and_text() -> None:
    body: dict[str, Any] = {
        "id": "r1",
        "object": "chat.completion",
        "created": 1,
        "model": "mistral-small-latest",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "tool_calls": None,
                    "content": [
                        {
                            "type": "thinking",
                            "closed": True,
                            "thinking": [{"type": "text", "text": "2+2 is 4."}],
                        },
                        {"type": "text", "text": "4"},
                    ],
                },
            }
        ],
    }
    original = copy.deepcopy(body)
    canonical = oc.response_to_canonical(body)
    content = canonical.choices[0].content
    assert [type(b) for b in content] == [Thinking, Text]
    assert isinstance(content[0], Thinking) and content[0].thinking == "2+2 is 4."
    assert isinstance(content[1], Text) and content[1].text == "4"
    blocks = am.response_from_canonical(canonical)["content"]
    assert [(b["type"], b.get("thinking", b.get("text"))) for b in blocks] == [
        ("thinking", "2+2 is 4."),
        ("text", "4"),
    ]
    assert oc.response_from_canonical(canonical) == original  # same wire: identity


def test_bug1_mistral_structured_stream_deltas_become_thinking_and_text() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}

    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "Okay"}]}]
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": thinking}),
        chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": ", so"}]}]}),
        chunk({"content": "To cross"}),
        chunk({"content": [{"type": "text", "text": " look."}]}),
        chunk({"content": ""}, "stop"),
    ]
    decoder = oc.OpenAIChunkDecoder()
    events = [e for c in chunks for e in decoder.feed(c)] + decoder.finish()
    starts = [type(e.block) for e in events if isinstance(e, BlockStart)]
    assert starts == [Thinking, Text]
    deltas = [e.delta for e in events if isinstance(e, BlockDelta)]
    assert "".join(d.thinking for d in deltas if isinstance(d, ThinkingDelta)) == "Okay, so"
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "To cross look."


def test_bug3_file_data_http_url_is_a_url_document_not_base64() -> None:
    part = {"type": "file", "file": {"file_data": PDF_URL, "filename": "filename.pdf"}}
    body: dict[str, Any] = {"model": "m", "messages": [_user([part])]}
    canonical = oc.request_to_canonical(body)
    document = canonical.messages[0].content[0]
    assert isinstance(document, Document) and document.source == UrlSource(url=PDF_URL)
    anthropic = am.request_from_canonical(canonical, default_max_tokens=100).body
    assert anthropic["messages"][0]["content"][0]["source"] == {"type": "url", "url": PDF_URL}
    assert oc.request_from_canonical(canonical).body == body  # same wire: identity
    back = oc.request_from_canonical(am.request_to_canonical(anthropic)).body
    assert back["messages"][0]["content"][0]["file"]["file_data"] == PDF_URL


def test_bug4_adaptive_thinking_is_kept_when_tool_choice_is_forced() -> None:
    body = {
        "model": "claude-opus-4-6",
        "reasoning_effort": "high",
        "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [_user("x")],
    }
    canonical = oc.request_to_canonical(body)
    adaptive = am.request_from_canonical(canonical, default_max_tokens=1000, adaptive_thinking=True)
    assert adaptive.body["thinking"]["type"] == "adaptive"
    assert adaptive.body["output_config"]["effort"] == "high"
    assert adaptive.body["tool_choice"] == {"type": "any"}
    assert "reasoning_effort" not in adaptive.dropped
    budget = am.request_from_canonical(canonical, default_max_tokens=10000)
    assert "thinking" not in budget.body and budget.body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("choice", "canonical_choice", "anthropic_choice"),
    [
        ("any", ToolChoice(mode="required"), {"type": "any"}),
        (
            {"function": {"name": "f"}},
            ToolChoice(mode="tool", name="f"),
            {"type": "tool", "name": "f"},
        ),
    ],
)
def test_bug5_mistral_tool_dialect_is_read(
    choice: Any, canonical_choice: ToolChoice, anthropic_choice: dict[str, Any]
) -> None:
    body: dict[str, Any] = {
        "model": "mistral-small-latest",
        "tools": [{"function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": choice,
        "messages": [_user("x")],
    }
    original = copy.deepcopy(body)
    canonical = oc.request_to_canonical(body)
    assert [type(t) for t in canonical.tools] == [FunctionTool]
    assert canonical.tool_choice is not None
    assert (canonical.tool_choice.mode, canonical.tool_choice.name) == (
        canonical_choice.mode,
        canonical_choice.name,
    )
    anthropic = am.request_from_canonical(canonical, default_max_tokens=100)
    assert [t["name"] for t in anthropic.body["tools"]] == ["f"]
    assert anthropic.body["tool_choice"] == anthropic_choice
    assert "tool_choice" not in anthropic.dropped
    assert oc.request_from_canonical(canonical).body == original  # client's spelling kept


@pytest.mark.parametrize("adaptive", [True, False])
def test_unknown_effort_is_refused_for_adaptive_and_budget_targets(adaptive: bool) -> None:
    body = {"model": "m", "reasoning_effort": "default", "messages": [_user("x")]}
    canonical = oc.request_to_canonical(body)
    with pytest.raises(TranslationError) as caught:
        am.request_from_canonical(canonical, default_max_tokens=100, adaptive_thinking=adaptive)
    assert caught.value.param == "reasoning_effort"
