"""Thinking signatures go back only to the vendor that issued them (translate/signatures.py).

A signature is valid only at its issuer: Anthropic answers 400 to a thinking block it did not
sign, Gemini validates its own ``thoughtSignature``. Each wire must keep, through a client's
round trip, who issued a signature: OpenAI ``reasoning_details`` in ``format``, Anthropic and
Gemini by wrapping another vendor's signature (``orcarouter:{format}:{signature}``).
"""

from __future__ import annotations

import json
from typing import Any

from orcarouter.canonical import (
    ANTHROPIC_THINKING_FORMAT,
    GEMINI_THINKING_FORMAT,
    Message,
    RedactedThinking,
    Request,
    Text,
    Thinking,
)
from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini as gm
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.signatures import (
    FOREIGN_SIGNATURE_PREFIX,
    client_signature,
    unwrap_signature,
    wrap_signature,
)
from tests.unit.translate.test_translate_gemini_support import call, chunk, decode
from tests.unit.translate.translate_support import (
    anthropic_accumulate,
    check_anthropic_event_invariants,
    openai_accumulate,
)

CLAUDE_SIG = "EqQBCkYIBxgCKkB+claude/signature=="
CLAUDE_REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
GEMINI_SIG = "CiQB0e2Kb+gemini/thought-signature=="
GEMINI_CALL_SIG = "CiQB0e2Kb+gemini/call-signature=="
GEMINI_3 = gm.GeminiTarget(thinking="level", signatures_required=True)
WRAPPED_GEMINI = f"orcarouter:{GEMINI_THINKING_FORMAT}:"


def _gemini_response() -> dict[str, Any]:
    """A Gemini answer: a signed thought, then a function call carrying its own signature."""
    parts = [
        {"text": "Need the weather.", "thought": True, "thoughtSignature": GEMINI_SIG},
        {**call("get_weather", city="Paris"), "thoughtSignature": GEMINI_CALL_SIG},
    ]
    return {
        "candidates": [
            {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "responseId": "r1",
        "modelVersion": "gemini-3-pro-preview",
    }


def _claude_response() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Need the weather.", "signature": CLAUDE_SIG},
            {"type": "redacted_thinking", "data": CLAUDE_REDACTED},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"c": "P"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def _anthropic_turns(assistant: dict[str, Any], tool_id: str) -> dict[str, Any]:
    """An Anthropic client's next request, replaying ``assistant`` and answering its call."""
    result = {"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}
    return {
        "model": "m",
        "max_tokens": 2048,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": assistant["content"]},
            {"role": "user", "content": [result]},
        ],
    }


def _openai_turns(assistant: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI client's next request, replaying ``assistant`` and answering its call."""
    tool_id = assistant["tool_calls"][0]["id"]
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            assistant,
            {"role": "tool", "tool_call_id": tool_id, "content": "sunny"},
        ],
    }


def _openai_history(details: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI client request whose assistant turn carries ``reasoning_details``."""
    assistant = {
        "role": "assistant",
        "content": None,
        "reasoning_details": details,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    return _openai_turns(assistant)


def _to_anthropic(request: Request) -> Any:
    return am.request_from_canonical(request, default_max_tokens=4096)


# ---- the wrapping itself ---------------------------------------------------------------------


def test_wrapping_tags_the_issuer_and_unwrapping_restores_it() -> None:
    wrapped = wrap_signature(GEMINI_SIG, GEMINI_THINKING_FORMAT)
    assert wrapped == f"{FOREIGN_SIGNATURE_PREFIX}{GEMINI_THINKING_FORMAT}:{GEMINI_SIG}"
    assert unwrap_signature(wrapped, ANTHROPIC_THINKING_FORMAT) == (
        GEMINI_SIG,
        GEMINI_THINKING_FORMAT,
    )
    # A bare value is the wire's own vendor's; an unknown issuer stays unknown.
    assert unwrap_signature(CLAUDE_SIG, ANTHROPIC_THINKING_FORMAT) == (
        CLAUDE_SIG,
        ANTHROPIC_THINKING_FORMAT,
    )
    assert unwrap_signature(wrap_signature("x", None), ANTHROPIC_THINKING_FORMAT) == ("x", None)


def test_client_signature_wraps_only_what_another_vendor_issued() -> None:
    assert client_signature(CLAUDE_SIG, ANTHROPIC_THINKING_FORMAT, ANTHROPIC_THINKING_FORMAT) == (
        CLAUDE_SIG
    )
    assert client_signature(GEMINI_SIG, GEMINI_THINKING_FORMAT, ANTHROPIC_THINKING_FORMAT) == (
        WRAPPED_GEMINI + GEMINI_SIG
    )
    assert client_signature("s", None, ANTHROPIC_THINKING_FORMAT) == "orcarouter::s"
    assert client_signature("", GEMINI_THINKING_FORMAT, ANTHROPIC_THINKING_FORMAT) == ""


# ---- (a) Gemini signatures shown to Anthropic clients never reach Anthropic --------------------


def test_gemini_signatures_reach_anthropic_clients_wrapped() -> None:
    message = am.response_from_canonical(gm.response_to_canonical(_gemini_response()))
    assert message["content"][:2] == [
        {
            "type": "thinking",
            "thinking": "Need the weather.",
            "signature": WRAPPED_GEMINI + GEMINI_SIG,
        },
        {"type": "redacted_thinking", "data": WRAPPED_GEMINI + GEMINI_CALL_SIG},
    ]


def test_gemini_signatures_streamed_to_anthropic_clients_are_wrapped() -> None:
    chunks = [
        chunk({"text": "Need the weather.", "thought": True, "thoughtSignature": GEMINI_SIG}),
        chunk({**call("get_weather", city="Paris"), "thoughtSignature": GEMINI_CALL_SIG}),
        chunk({"text": ""}, finish="STOP", usage=True),
    ]
    encoder = am.AnthropicEventEncoder()
    events = [pair for event in decode(chunks) for pair in encoder.feed(event)]
    check_anthropic_event_invariants(events)
    content = anthropic_accumulate(events)["content"]
    assert content[0]["signature"] == WRAPPED_GEMINI + GEMINI_SIG
    assert content[1] == {"type": "redacted_thinking", "data": WRAPPED_GEMINI + GEMINI_CALL_SIG}


def test_gemini_thinking_replayed_by_an_anthropic_client_is_not_sent_to_anthropic() -> None:
    shown = am.response_from_canonical(gm.response_to_canonical(_gemini_response()))
    tool_id = shown["content"][2]["id"]
    replayed = am.request_to_canonical(_anthropic_turns(shown, tool_id))
    assert replayed.messages[1].content[0] == Thinking(
        thinking="Need the weather.", signature=GEMINI_SIG, format=GEMINI_THINKING_FORMAT
    )
    result = _to_anthropic(replayed)
    assistant = result.body["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["tool_use"]
    assert "orcarouter:" not in json.dumps(result.body)
    assert GEMINI_SIG not in json.dumps(result.body)
    assert "messages[1].content.thinking" in result.dropped


def test_anthropic_signatures_never_reach_gemini() -> None:
    canonical = am.response_to_canonical(_claude_response())
    shown = am.response_from_canonical(canonical)  # what the Anthropic client holds
    replayed = am.request_to_canonical(_anthropic_turns(shown, "toolu_1"))
    for target in (gm.GeminiTarget(), GEMINI_3):
        body = gm.request_from_canonical(replayed, target=target, drop_params=True).body
        text = json.dumps(body)
        assert CLAUDE_SIG not in text and CLAUDE_REDACTED not in text
        assert "orcarouter:" not in text


# ---- (b) OpenAI reasoning_details: back to the issuer, dropped elsewhere -----------------------


def test_reasoning_details_signed_by_anthropic_go_to_anthropic_only() -> None:
    details = [
        {
            "type": "reasoning.text",
            "text": "t",
            "signature": CLAUDE_SIG,
            "format": ANTHROPIC_THINKING_FORMAT,
            "index": 0,
        },
        {
            "type": "reasoning.encrypted",
            "data": CLAUDE_REDACTED,
            "format": ANTHROPIC_THINKING_FORMAT,
            "index": 1,
        },
    ]
    request = oc.request_to_canonical(_openai_history(details))
    assistant = _to_anthropic(request).body["messages"][1]["content"]
    assert assistant[:2] == [
        {"type": "thinking", "thinking": "t", "signature": CLAUDE_SIG},
        {"type": "redacted_thinking", "data": CLAUDE_REDACTED},
    ]
    gemini = json.dumps(gm.request_from_canonical(request, target=GEMINI_3).body)
    assert CLAUDE_SIG not in gemini and CLAUDE_REDACTED not in gemini


def test_reasoning_details_signed_by_gemini_go_to_gemini_only() -> None:
    details = [
        {
            "type": "reasoning.text",
            "text": "t",
            "signature": GEMINI_SIG,
            "format": GEMINI_THINKING_FORMAT,
            "index": 0,
        },
        {
            "type": "reasoning.encrypted",
            "data": GEMINI_CALL_SIG,
            "format": GEMINI_THINKING_FORMAT,
            "index": 1,
        },
    ]
    request = oc.request_to_canonical(_openai_history(details))
    parts = gm.request_from_canonical(request, target=GEMINI_3).body["contents"][1]["parts"]
    assert parts == [
        {"text": "t", "thought": True, "thoughtSignature": GEMINI_SIG},
        {
            "functionCall": {"name": "f", "args": {}, "id": "call_1"},
            "thoughtSignature": GEMINI_CALL_SIG,
        },
    ]
    result = _to_anthropic(request)
    text = json.dumps(result.body)
    assert GEMINI_SIG not in text and GEMINI_CALL_SIG not in text
    assert [b["type"] for b in result.body["messages"][1]["content"]] == ["tool_use"]


def test_a_signature_of_unknown_issuer_goes_to_no_vendor() -> None:
    """No ``format``: nobody can tell who signed it, so Anthropic must not get it either."""
    details = [{"type": "reasoning.text", "text": "t", "signature": "c2lnbmF0dXJl", "index": 0}]
    request = oc.request_to_canonical(_openai_history(details))
    result = _to_anthropic(request)
    assert [b["type"] for b in result.body["messages"][1]["content"]] == ["tool_use"]
    assert "messages[1].content.thinking" in result.dropped
    assert "c2lnbmF0dXJl" not in json.dumps(gm.request_from_canonical(request).body)


def test_streamed_reasoning_details_name_their_issuer_once() -> None:
    """SDKs concatenate the repeated strings of one entry (openai ``accumulate_delta``), so
    ``format`` rides on one fragment only; the accumulated entry still names Gemini."""
    chunks = [
        chunk({"text": "Need ", "thought": True}),
        chunk({"text": "the weather.", "thought": True, "thoughtSignature": GEMINI_SIG}),
        chunk({"text": "Calling."}, finish="STOP", usage=True),
    ]
    encoder = oc.OpenAIChunkEncoder(created=1)
    message = openai_accumulate(c for e in decode(chunks) for c in encoder.feed(e))["choices"][0][
        "message"
    ]
    details = message["reasoning_details"]
    assert details[0]["format"] == GEMINI_THINKING_FORMAT
    assert details[0]["text"] == "Need the weather." and details[0]["signature"] == GEMINI_SIG
    request = oc.request_to_canonical(
        {"model": "m", "messages": [{"role": "user", "content": "q"}, message]}
    )
    parts = gm.request_from_canonical(request).body["contents"][1]["parts"]
    assert parts[0] == {
        "text": "Need the weather.",
        "thought": True,
        "thoughtSignature": GEMINI_SIG,
    }


def test_a_signature_only_reasoning_entry_still_names_its_issuer() -> None:
    """A thought with no text: its format travels with the signature fragment."""
    encoder = oc.OpenAIChunkEncoder(created=1)
    chunks = [
        chunk({"text": "", "thought": True, "thoughtSignature": GEMINI_SIG}),
        chunk({"text": "Hi."}, finish="STOP", usage=True),
    ]
    sent = [c for e in decode(chunks) for c in encoder.feed(e)]
    entries = [
        d
        for c in sent
        for choice in c.get("choices") or ()
        for d in choice["delta"].get("reasoning_details") or ()
    ]
    assert entries == [
        {
            "type": "reasoning.text",
            "signature": GEMINI_SIG,
            "index": 0,
            "format": GEMINI_THINKING_FORMAT,
        }
    ]


# ---- (c) the issuer gets its signature back byte-exact -------------------------------------


def test_gemini_signatures_round_trip_byte_exact_through_an_anthropic_client() -> None:
    shown = am.response_from_canonical(gm.response_to_canonical(_gemini_response()))
    tool_id = shown["content"][2]["id"]
    replayed = am.request_to_canonical(_anthropic_turns(shown, tool_id))
    body = gm.request_from_canonical(replayed, target=GEMINI_3).body
    assert body["contents"][1]["parts"] == [
        {"text": "Need the weather.", "thought": True, "thoughtSignature": GEMINI_SIG},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": tool_id},
            "thoughtSignature": GEMINI_CALL_SIG,
        },
    ]


def test_gemini_signatures_round_trip_byte_exact_through_an_openai_client() -> None:
    shown = oc.response_from_canonical(gm.response_to_canonical(_gemini_response()), created=1)
    assistant = shown["choices"][0]["message"]
    replayed = oc.request_to_canonical(_openai_turns(assistant))
    parts = gm.request_from_canonical(replayed, target=GEMINI_3).body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == GEMINI_SIG
    assert parts[1]["thoughtSignature"] == GEMINI_CALL_SIG


def test_anthropic_signatures_round_trip_byte_exact_through_an_openai_client() -> None:
    shown = oc.response_from_canonical(am.response_to_canonical(_claude_response()), created=1)
    assistant = shown["choices"][0]["message"]
    replayed = oc.request_to_canonical(_openai_turns(assistant))
    content = _to_anthropic(replayed).body["messages"][1]["content"]
    assert content == _claude_response()["content"]


def test_anthropic_signatures_round_trip_byte_exact_through_a_gemini_client() -> None:
    shown = gm.response_from_canonical(am.response_to_canonical(_claude_response()))
    model_turn = shown["candidates"][0]["content"]
    call_id = model_turn["parts"][-1]["functionCall"]["id"]
    replayed = gm.request_to_canonical(
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                model_turn,
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "id": call_id,
                                "name": "get_weather",
                                "response": {"output": "sunny"},
                            }
                        }
                    ],
                },
            ]
        }
    )
    content = _to_anthropic(replayed).body["messages"][1]["content"]
    assert content == _claude_response()["content"]


def test_anthropic_signatures_shown_to_anthropic_clients_are_not_wrapped() -> None:
    """A translated Anthropic answer (e.g. relayed through canonical) keeps Anthropic's bytes."""
    message = am.response_from_canonical(am.response_to_canonical(_claude_response()))
    assert message["content"] == _claude_response()["content"]
    relayed = Thinking(thinking="t", signature=CLAUDE_SIG, format=ANTHROPIC_THINKING_FORMAT)
    redacted = RedactedThinking(data=CLAUDE_REDACTED, format=ANTHROPIC_THINKING_FORMAT)
    request = Request(
        model="m",
        messages=(
            Message(role="user", content=(Text(text="q"),)),
            Message(role="assistant", content=(relayed, redacted, Text(text="a"))),
        ),
        source="openai",
    )
    assert _to_anthropic(request).body["messages"][1]["content"][:2] == [
        {"type": "thinking", "thinking": "t", "signature": CLAUDE_SIG},
        {"type": "redacted_thinking", "data": CLAUDE_REDACTED},
    ]
