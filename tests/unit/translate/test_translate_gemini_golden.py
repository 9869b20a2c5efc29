"""Golden tests for the Gemini translator, named after the bug threads of wire-formats.md §5
(one small test each) and the Gemini rows of §4.3 to §4.8."""

from __future__ import annotations

import json

from orcarouter.canonical import (
    Base64Source,
    BlockStart,
    Image,
    Message,
    RedactedThinking,
    Request,
    StreamError,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.gemini.fields import DUMMY_SIGNATURE
from tests.unit.translate.test_translate_gemini_support import (
    SIG,
    call,
    chunk,
    decode,
    openai_body,
    openai_chunks,
    to_gemini,
)
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    check_openai_chunk_invariants,
    json_events,
    openai_accumulate,
)

GEMINI_3 = gm.GeminiTarget(thinking="level", signatures_required=True)


# ---- streams: finish reasons and tool indexes ------------------------------------------------


def test_litellm_21041_trailing_stop_chunk_after_function_call_is_tool_calls() -> None:
    """Also https://github.com/BerriAI/litellm/issues/22900, /issues/12240, PR #21577."""
    chunks = [chunk({**call("get_weather", city="Paris"), "thoughtSignature": SIG}, usage=True)]
    chunks.append(chunk({"text": ""}, finish="STOP", usage=True))
    out = openai_chunks(chunks)
    check_openai_chunk_invariants(out)
    finishes = [c["choices"][0]["finish_reason"] for c in out if c["choices"]]
    assert finishes[-1] == "tool_calls"
    message = openai_accumulate(out)["choices"][0]["message"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}


def test_litellm_pr_31634_no_finish_reason_on_intermediate_chunks() -> None:
    chunks = [chunk({"text": "Hel"}), chunk({"text": "lo"}), chunk({"text": "!"}, finish="STOP")]
    finishes = [c["choices"][0]["finish_reason"] for c in openai_chunks(chunks) if c["choices"]]
    assert finishes == [None, None, None, None, "stop"]


def test_litellm_pr_16194_parallel_calls_in_separate_chunks_get_indexes_0_and_1() -> None:
    chunks = [chunk(call("a", x=1)), chunk(call("b", y=2)), chunk({"text": ""}, finish="STOP")]
    out = openai_chunks(chunks)
    check_openai_chunk_invariants(out)
    calls = openai_accumulate(out)["choices"][0]["message"]["tool_calls"]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "a"), (1, "b")]
    assert calls[0]["id"] != calls[1]["id"]


def test_gemini_streamed_call_ids_match_the_non_stream_ids() -> None:
    """Gemini often sends no call id; generated ids are stable (per responseId and position)."""
    chunks = [chunk(call("a")), chunk(call("b"), finish="STOP")]
    streamed = [
        e.block.id
        for e in decode(chunks)
        if isinstance(e, BlockStart) and isinstance(e.block, ToolUse)
    ]
    whole = gm.response_to_canonical(
        {
            **chunks[1],
            "candidates": [
                {
                    "content": {"parts": [call("a"), call("b")], "role": "model"},
                    "finishReason": "STOP",
                }
            ],
        }
    )
    assert streamed == [b.id for b in whole.choices[0].content if isinstance(b, ToolUse)]


def test_litellm_17473_gemini_sse_split_across_network_reads() -> None:
    raw = "".join(
        f"data: {json.dumps(c)}\r\n\r\n" for c in [chunk({"text": "é"}), chunk({"text": "x"})]
    )
    assert json_events(raw, chunk_size=3) == json_events(raw)


def test_gemini_error_after_the_stream_started_ends_in_each_dialect() -> None:
    """§3.4: errors after the first byte arrive as an ``error`` object."""
    error = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    decoder = gm.GeminiChunkDecoder()
    events = decoder.feed(chunk({"text": "a"})) + decoder.feed(error)
    assert isinstance(events[-1], StreamError) and events[-1].type == "overloaded_error"
    anthropic = am.AnthropicEventEncoder()
    assert [n for e in events for n, _ in anthropic.feed(e)][-1] == "error"
    openai_encoder = oc.OpenAIChunkEncoder(created=1)
    openai = [c for e in events for c in openai_encoder.feed(e)]
    assert openai[-1] == {
        "error": {"message": "overloaded", "type": "overloaded_error", "code": None}
    }
    assert gm.GeminiChunkEncoder().feed(events[-1]) == [
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    ]


# ---- thought signatures ----------------------------------------------------------------------


def test_portkey_1442_gemini_3_signature_round_trips_through_an_openai_client() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "parts": [{**call("get_country"), "thoughtSignature": SIG}],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ],
        "responseId": "r9",
        "modelVersion": "gemini-3-pro",
    }
    message = oc.response_from_canonical(gm.response_to_canonical(response), created=1)
    assistant = message["choices"][0]["message"]
    tool_id = assistant["tool_calls"][0]["id"]
    body = openai_body(
        [
            {"role": "user", "content": "Which country?"},
            assistant,
            {"role": "tool", "tool_call_id": tool_id, "content": "Mexico"},
        ]
    )
    contents = to_gemini(body, target=GEMINI_3)["contents"]
    assert contents[1]["parts"] == [
        {
            "functionCall": {"name": "get_country", "args": {}, "id": tool_id},
            "thoughtSignature": SIG,
        }
    ]


def test_llm_gateway_1517_signature_is_part_level_camel_case_not_nested() -> None:
    """Also https://github.com/theopenco/llmgateway/issues/1267, cloudflare/ai#502."""
    request = Request(
        model="gemini-3",
        messages=(
            Message(role="user", content=(Text(text="hi"),)),
            Message(
                role="assistant",
                content=(
                    RedactedThinking(data=SIG, format=gm.GEMINI_THINKING_FORMAT),
                    ToolUse(id="c1", name="f", input={}),
                ),
            ),
        ),
    )
    part = gm.request_from_canonical(request).body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == SIG
    assert set(part["functionCall"]) == {"name", "args", "id"}
    assert "thought_signature" not in json.dumps(part)


def test_dummy_signature_only_on_the_first_unsigned_function_call_of_a_turn() -> None:
    """§3.5, §6.5: history from another model has no signature; Gemini 3 validates them."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in range(2)
    ]
    body = openai_body(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *({"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls),
        ]
    )
    parts = to_gemini(body, target=GEMINI_3)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [DUMMY_SIGNATURE, None]
    assert "thoughtSignature" not in json.dumps(to_gemini(body)["contents"][1])


def test_signatures_from_another_vendor_reach_gemini_clients_wrapped_and_never_gemini() -> None:
    claude = am.response_to_canonical(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "EqQB"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    part = gm.response_from_canonical(claude)["candidates"][0]["content"]["parts"][0]
    assert part["thoughtSignature"] == "orcarouter:anthropic-claude-v1:EqQB"
    replayed = gm.request_to_canonical(
        {
            "contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {"role": "model", "parts": [part]},
            ]
        }
    )
    thinking = replayed.messages[1].content[0]
    assert isinstance(thinking, Thinking) and thinking.signature == "EqQB"
    assert am.request_from_canonical(replayed, default_max_tokens=10).body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "EqQB"}],
    }
    upstream = gm.request_from_canonical(replayed).body["contents"][1]["parts"][0]
    assert upstream == {"text": "hmm", "thought": True}


# ---- request shaping (§4.3 and the Gemini threads) -------------------------------------------


def test_litellm_14330_additional_properties_sanitised_or_sent_as_json_schema() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "$defs": {"City": {"type": "string", "title": "City", "format": "uri"}},
        "properties": {
            "city": {"$ref": "#/$defs/City"},
            "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["city", "missing"],
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = openai_body([{"role": "user", "content": "x"}], tools=[tool])
    declaration = to_gemini(body)["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "nullable": True}},
        "required": ["city"],
    }
    raw = to_gemini(body, target=gm.GeminiTarget(json_schema=True))
    assert raw["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == schema


def test_litellm_5515_media_only_user_turn_gets_a_text_part() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    contents = to_gemini(openai_body([{"role": "user", "content": [image]}]))["contents"]
    assert contents == [
        {
            "role": "user",
            "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, {"text": " "}],
        }
    ]


def test_litellm_9733_empty_contents_get_a_user_turn() -> None:
    translation = gm.request_from_canonical(Request(model="gemini-x", messages=()))
    assert translation.body["contents"] == [{"role": "user", "parts": [{"text": "."}]}]
    assert "messages" in translation.adjusted


def test_litellm_13769_system_only_request() -> None:
    body = to_gemini(openai_body([{"role": "system", "content": "Be brief."}]))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "."}]}]


def test_litellm_36559_late_system_messages_stay_in_place_marked() -> None:
    """Portkey review: only the first system message reached systemInstruction."""
    body = to_gemini(
        openai_body(
            [
                {"role": "system", "content": "A"},
                {"role": "developer", "content": "B"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "system", "content": "C"},
                {"role": "user", "content": "q2"},
            ]
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "A"}, {"text": "B"}]}
    assert body["contents"][2] == {
        "role": "user",
        "parts": [{"text": "<system>\nC\n</system>"}, {"text": "q2"}],
    }


def test_portkey_review_tool_name_recovered_text_kept_results_grouped() -> None:
    """No ``gateway-tool-filler-name``; assistant text kept beside tool calls; one user turn."""
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for i, n in enumerate(["get_a", "get_b"])
    ]
    body = openai_body(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c0", "content": '{"a":1}'},
            {"role": "tool", "tool_call_id": "c1", "content": "plain"},
        ]
    )
    contents = to_gemini(body)["contents"]
    assert contents[1]["parts"][0] == {"text": "Let me look."}
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"id": "c0", "name": "get_a", "response": {"a": 1}}},
            {"functionResponse": {"id": "c1", "name": "get_b", "response": {"output": "plain"}}},
        ],
    }


def test_gemini_function_responses_are_paired_by_name_when_ids_are_missing() -> None:
    request = gm.request_to_canonical(
        {
            "contents": [
                {"role": "model", "parts": [call("a"), call("b")]},
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "b", "response": {"output": "B"}}},
                        {"functionResponse": {"name": "a", "response": {"error": "A"}}},
                    ],
                },
            ]
        }
    )
    uses = [b.id for b in request.messages[0].content if isinstance(b, ToolUse)]
    results = [b for b in request.messages[1].content if isinstance(b, ToolResult)]
    assert [r.tool_use_id for r in results] == [uses[1], uses[0]]
    assert results[1].is_error is True
    openai = oc.request_from_canonical(request).body["messages"]
    assert [m["tool_call_id"] for m in openai[1:]] == [uses[1], uses[0]]


def test_media_in_tool_results_inside_function_response_only_for_gemini_3() -> None:
    result = ToolResult(
        tool_use_id="c1",
        content=(Text(text="see"), Image(source=Base64Source(media_type="image/png", data="AA=="))),
    )
    request = Request(
        model="g",
        messages=(
            Message(role="assistant", content=(ToolUse(id="c1", name="shot", input={}),)),
            Message(role="user", content=(result,)),
        ),
    )
    inline = {"inlineData": {"mimeType": "image/png", "data": "AA=="}}
    response = {"id": "c1", "name": "shot", "response": {"output": "see"}}
    parts_25 = gm.request_from_canonical(request).body["contents"][1]["parts"]
    assert parts_25 == [{"functionResponse": response}, inline]
    target = gm.GeminiTarget(function_response_media=True)
    parts_3 = gm.request_from_canonical(request, target=target).body["contents"][1]["parts"]
    assert parts_3 == [{"functionResponse": {**response, "parts": [inline]}}]


def test_gemini_stream_through_anthropic_sdk_with_thinking_and_tools() -> None:
    chunks = [
        chunk({"text": "Let me think", "thought": True}),
        chunk({"text": " more", "thought": True, "thoughtSignature": SIG}),
        chunk({"text": "Calling."}),
        chunk(call("a", q="x"), call("b")),
        chunk({"text": ""}, finish="STOP", usage=True),
    ]
    encoder = am.AnthropicEventEncoder()
    events = [pair for event in decode(chunks) for pair in encoder.feed(event)]
    check_anthropic_event_invariants(events)
    message = anthropic_accumulate(events)
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    # Gemini's signature, tagged with its issuer so that it never reaches Anthropic.
    assert message["content"][0]["signature"] == f"orcarouter:google-gemini-v1:{SIG}"
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 12
