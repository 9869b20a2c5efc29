"""Fixed request bodies and fixed upstream answers for the benchmark.

Everything here is deterministic: the fake upstream (nginx) serves these bytes unchanged, and the
load generators send these request bodies, so two runs measure exactly the same traffic.
"""

from __future__ import annotations

import random
import string
from typing import Any

import orjson

STREAM_DELTAS = 50  # content deltas per streamed answer

_SYSTEM = (
    "You are a careful assistant for an operations team. Answer concisely, cite the relevant "
    "configuration keys by name, and say so plainly when the information given is not enough."
)
_USER_1 = (
    "Our gateway sits in front of three providers. Yesterday the p99 latency doubled between "
    "14:00 and 15:00 UTC while traffic stayed flat. The provider dashboards show nothing unusual "
    "and the error rate stayed under 0.1%. What should we look at first?"
)
_ASSISTANT_1 = (
    "Start with what changed on your side in that window: deployments, configuration reloads, "
    "connection pool sizes and DNS. A flat error rate with a doubled p99 usually points at "
    "queueing (a saturated pool or worker) rather than at the providers themselves."
)
_USER_2 = (
    "There was a config reload at 13:58 that lowered the upstream keep-alive timeout from 30 s "
    "to 5 s. Could that alone explain it? Please keep the answer short."
)

_ANSWER = (
    "Yes, very likely. A 5 s keep-alive closes idle upstream connections between bursts, so "
    "many requests pay a fresh TCP and TLS handshake again. Restore 30 s, watch the pool's "
    "connection reuse ratio and the p99 should return to its previous level within minutes. If "
    "the same reload also changed the pool limit, check that setting as well."
)
_ANSWER_WORDS = _ANSWER.split(" ")

_PADDING_ALPHABET = string.ascii_letters + string.digits

OPENAI_MODEL_UPSTREAM = "gpt-bench"
ANTHROPIC_MODEL_UPSTREAM = "claude-bench"


def openai_request(model: str, *, stream: bool) -> bytes:
    """A ~1 KB chat-completions request with a system prompt and a short conversation."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": _USER_1},
            {"role": "assistant", "content": _ASSISTANT_1},
            {"role": "user", "content": _USER_2},
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "user": "bench-user-0001",
    }
    if stream:
        body["stream"] = True
        # Asking for usage ourselves makes the gateway forward every upstream event unchanged,
        # so the bytes through the gateway equal the bytes served directly.
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def anthropic_request(model: str, *, stream: bool) -> bytes:
    """A ~1 KB messages request with a system prompt and a short conversation."""
    body: dict[str, Any] = {
        "model": model,
        "system": _SYSTEM,
        "messages": [
            {"role": "user", "content": _USER_1},
            {"role": "assistant", "content": _ASSISTANT_1},
            {"role": "user", "content": _USER_2},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "metadata": {"user_id": "bench-user-0001"},
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _answer_text() -> str:
    return _ANSWER


def _deltas() -> list[str]:
    """The answer split into exactly ``STREAM_DELTAS`` pieces, about a word each."""
    pieces = [w if i == 0 else " " + w for i, w in enumerate(_ANSWER_WORDS)]
    assert len(pieces) >= STREAM_DELTAS
    head = pieces[: STREAM_DELTAS - 1]
    return [*head, "".join(pieces[STREAM_DELTAS - 1 :])]


def openai_response() -> bytes:
    """A chat.completion object as OpenAI returns it."""
    body = {
        "id": "chatcmpl-BenchAbCdEfGhIjKlMnOpQrStUvWx",
        "object": "chat.completion",
        "created": 1732300000,
        "model": "gpt-bench-2024-11-20",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": _answer_text(),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 231,
            "completion_tokens": 58,
            "total_tokens": 289,
            "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench0001",
    }
    return orjson.dumps(body)


def anthropic_response() -> bytes:
    """A message object as Anthropic returns it."""
    body = {
        "id": "msg_01BenchAbCdEfGhIjKlMnOpQr",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench-20241022",
        "content": [{"type": "text", "text": _answer_text()}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 231,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 128,
            "output_tokens": 58,
            "service_tier": "standard",
        },
    }
    return orjson.dumps(body)


def _sse(data: bytes, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


def _padding(rng: random.Random, content: str) -> str:
    """OpenAI's ``obfuscation`` value: random letters and digits that bring a chunk's content
    to about 16 characters (in the recordings, " capital" comes with 8, "The" with 13), so that
    the chunk's length does not give its text away."""
    return "".join(rng.choices(_PADDING_ALPHABET, k=max(1, 16 - len(content))))


def openai_stream() -> tuple[bytes, int]:
    """A chat.completion.chunk stream: role, 50 deltas, finish, usage chunk, ``[DONE]``; every
    chunk ends with the ``obfuscation`` key OpenAI adds (the same seeded padding in every run)."""
    rng = random.Random(STREAM_DELTAS)
    base: dict[str, Any] = {
        "id": "chatcmpl-BenchAbCdEfGhIjKlMnOpQrStUvWx",
        "object": "chat.completion.chunk",
        "created": 1732300000,
        "model": "gpt-bench-2024-11-20",
        "service_tier": "default",
        "system_fingerprint": "fp_bench0001",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        padding = _padding(rng, delta.get("content") or "")
        return _sse(
            orjson.dumps({**base, "choices": [choice], "usage": None, "obfuscation": padding})
        )

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in _deltas()]
    events.append(chunk({}, "stop"))
    usage = {
        "prompt_tokens": 231,
        "completion_tokens": 58,
        "total_tokens": 289,
        "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    last = {**base, "choices": [], "usage": usage, "obfuscation": _padding(rng, "")}
    events.append(_sse(orjson.dumps(last)))
    events.append(_sse(b"[DONE]"))
    return b"".join(events), len(events)


def anthropic_stream() -> tuple[bytes, int]:
    """message_start, content_block_start, ping, 50 deltas, block stop, message_delta, stop."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_01BenchAbCdEfGhIjKlMnOpQr",
            "type": "message",
            "role": "assistant",
            "model": "claude-bench-20241022",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 231,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 128,
                "output_tokens": 1,
            },
        },
    }
    events = [
        _sse(orjson.dumps(start), "message_start"),
        _sse(
            orjson.dumps(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
            "content_block_start",
        ),
        _sse(b'{"type": "ping"}', "ping"),
    ]
    for piece in _deltas():
        text = {"type": "text_delta", "text": piece}
        delta = {"type": "content_block_delta", "index": 0, "delta": text}
        events.append(_sse(orjson.dumps(delta), "content_block_delta"))
    events.append(
        _sse(orjson.dumps({"type": "content_block_stop", "index": 0}), "content_block_stop")
    )
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 58},
    }
    events.append(_sse(orjson.dumps(message_delta), "message_delta"))
    events.append(_sse(b'{"type":"message_stop"}', "message_stop"))
    return b"".join(events), len(events)


def stream_tail(protocol: str) -> bytes:
    """The last bytes of every complete stream the gateway sends a client of ``protocol``."""
    return b"data: [DONE]\n\n" if protocol == "openai" else b'"message_stop"}\n\n'


def translated_stream_ok(protocol: str, raw: bytes) -> bool:
    """Whether ``raw`` is a complete stream in ``protocol`` that carries the whole answer text
    and the usage (what a translated stream must hold; its bytes are the gateway's own)."""
    texts: list[str] = []
    usage = False
    datas = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    if protocol == "openai":
        if not datas or datas[-1] != b"[DONE]":
            return False
        for data in datas[:-1]:
            chunk = orjson.loads(data)
            for choice in chunk.get("choices") or []:
                texts.append(choice.get("delta", {}).get("content") or "")
            usage = usage or bool(chunk.get("usage"))
    else:
        for data in datas:
            event = orjson.loads(data)
            if event.get("type") == "content_block_delta":
                texts.append(event["delta"].get("text", ""))
            usage = usage or (event.get("type") == "message_delta" and "usage" in event)
    return usage and "".join(texts) == _ANSWER and raw.endswith(stream_tail(protocol))
