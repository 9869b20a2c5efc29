"""The canonical model: usage arithmetic, immutability, and the stream accumulator."""

from __future__ import annotations

import dataclasses

import pytest

from orcarouter.canonical import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Citation,
    CitationDelta,
    FunctionTool,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    Request,
    ResponseFormat,
    Sampling,
    SignatureDelta,
    StopReason,
    StreamAccumulator,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolChoice,
    ToolUse,
    Usage,
    UsageReport,
)


def test_usage_input_excludes_cache_so_totals_add_up() -> None:
    usage = Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4)
    assert usage.prompt_tokens == 8 and usage.total_tokens == 10
    assert Usage().total_tokens == 0


def test_blocks_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Text(text="a").text = "b"  # type: ignore[misc]


def test_accumulator_builds_the_response_from_events() -> None:
    accumulator = StreamAccumulator()
    citation = Citation(kind="url_citation", url="https://a")
    events: list[StreamEvent] = [
        MessageStart(id="m1", model="x", usage=Usage(input_tokens=5)),
        BlockStart(index=0, block=Thinking(thinking="")),
        BlockDelta(index=0, delta=ThinkingDelta(thinking="hm")),
        BlockDelta(index=0, delta=SignatureDelta(signature="sig")),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        BlockDelta(index=1, delta=TextDelta(text="hi")),
        BlockDelta(index=1, delta=CitationDelta(citation=citation)),
        BlockStop(index=1),
        BlockStart(index=2, block=ToolUse(id="t", name="f", input={})),
        BlockDelta(index=2, delta=InputJsonDelta(partial_json='{"a":')),
        BlockDelta(index=2, delta=InputJsonDelta(partial_json="1}")),
        MessageDelta(stop_reason=StopReason.TOOL_USE),
        UsageReport(usage=Usage(input_tokens=5, output_tokens=9)),
        MessageStop(),
    ]
    for event in events:
        accumulator.feed(event)
    response = accumulator.response()
    assert response.id == "m1" and response.usage == Usage(input_tokens=5, output_tokens=9)
    choice = response.choices[0]
    assert choice.stop_reason is StopReason.TOOL_USE
    assert choice.content == (
        Thinking(thinking="hm", signature="sig"),
        Text(text="hi", citations=(citation,)),
        ToolUse(id="t", name="f", input={"a": 1}, arguments='{"a":1}'),
    )


def test_accumulator_keeps_truncated_tool_json_as_text() -> None:
    accumulator = StreamAccumulator()
    accumulator.feed(MessageStart())
    accumulator.feed(BlockStart(index=0, block=ToolUse(id="t", name="f", input={})))
    accumulator.feed(BlockDelta(index=0, delta=InputJsonDelta(partial_json='{"a": "trunc')))
    accumulator.feed(MessageDelta(stop_reason=StopReason.MAX_TOKENS))
    block = accumulator.response().choices[0].content[0]
    assert isinstance(block, ToolUse) and block.input == {} and block.arguments == '{"a": "trunc'


def test_request_to_copies_every_field_but_model_and_stream() -> None:
    # One value per field, none the default: a field added to Request without a sample here
    # fails the first assert; one that ``Request.to`` does not carry fails the second.
    samples: dict[str, object] = {
        "model": "openai/gpt-4o-mini",
        "messages": (Message(role="user", content=(Text(text="hi"),)),),
        "tools": (FunctionTool(name="f"),),
        "tool_choice": ToolChoice(mode="required"),
        "parallel_tool_calls": False,
        "sampling": Sampling(temperature=0.5),
        "reasoning": Reasoning(effort="high"),
        "response_format": ResponseFormat(type="json_object"),
        "max_output_tokens": 64,
        "max_tokens_field": "max_tokens",
        "stream": False,
        "stream_usage": True,
        "user": "u-1",
        "source": "openai",
        "extra": {"openai": {"store": True}},
    }
    assert set(samples) == {f.name for f in dataclasses.fields(Request)}
    request = Request(**samples)  # type: ignore[arg-type]
    for model, stream in (("anthropic/claude-sonnet-4.6", True), ("m", None)):
        assert request.to(model, stream) == dataclasses.replace(request, model=model, stream=stream)
