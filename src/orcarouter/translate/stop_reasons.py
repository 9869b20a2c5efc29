"""Stop-reason tables between each wire and canonical ``StopReason`` (wire-formats.md §4.4)."""

from __future__ import annotations

from typing import Final

from orcarouter.canonical import StopReason

_FROM_OPENAI: Final[dict[str, StopReason]] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}

_TO_OPENAI: Final[dict[StopReason, str]] = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.TOOL_USE: "tool_calls",
    # LiteLLM _FINISH_REASON_MAP maps pause_turn and context overflow to "length".
    StopReason.PAUSE_TURN: "length",
    StopReason.CONTEXT_WINDOW_EXCEEDED: "length",
    StopReason.REFUSAL: "content_filter",
    StopReason.CONTENT_FILTER: "content_filter",
    StopReason.ERROR: "stop",
}

_FROM_ANTHROPIC: Final[dict[str, StopReason]] = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "max_tokens": StopReason.MAX_TOKENS,
    "tool_use": StopReason.TOOL_USE,
    "pause_turn": StopReason.PAUSE_TURN,
    "refusal": StopReason.REFUSAL,
    "model_context_window_exceeded": StopReason.CONTEXT_WINDOW_EXCEEDED,
}

_TO_ANTHROPIC: Final[dict[StopReason, str]] = {
    StopReason.END_TURN: "end_turn",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.TOOL_USE: "tool_use",
    StopReason.PAUSE_TURN: "pause_turn",
    StopReason.REFUSAL: "refusal",
    StopReason.CONTENT_FILTER: "refusal",
    StopReason.CONTEXT_WINDOW_EXCEEDED: "model_context_window_exceeded",
    StopReason.ERROR: "end_turn",
}

_GEMINI_FILTERED: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def stop_from_openai(finish_reason: str | None, *, saw_tool_calls: bool) -> StopReason | None:
    """OpenAI ``finish_reason``; ``stop`` after tool calls means ``tool_use``.

    Ollama and some compatible servers end a tool-call turn with "stop":
    https://github.com/BerriAI/litellm/issues/35663
    """
    if finish_reason is None:
        return None
    reason = _FROM_OPENAI.get(finish_reason, StopReason.END_TURN)
    if reason is StopReason.END_TURN and saw_tool_calls:
        return StopReason.TOOL_USE
    return reason


def stop_to_openai(reason: StopReason | None) -> str | None:
    """Canonical stop reason as OpenAI ``finish_reason``."""
    return None if reason is None else _TO_OPENAI[reason]


def stop_from_anthropic(stop_reason: str | None) -> StopReason | None:
    """Anthropic ``stop_reason`` (unknown values are treated as ``end_turn``)."""
    if stop_reason is None:
        return None
    return _FROM_ANTHROPIC.get(stop_reason, StopReason.END_TURN)


def stop_to_anthropic(reason: StopReason | None) -> str | None:
    """Canonical stop reason as Anthropic ``stop_reason``."""
    return None if reason is None else _TO_ANTHROPIC[reason]


def stop_from_gemini(finish_reason: str | None, *, saw_function_call: bool) -> StopReason | None:
    """Gemini ``finishReason``; ``STOP`` after a functionCall means ``tool_use``.

    Gemini answers STOP for function-call turns: https://github.com/BerriAI/litellm/issues/21041
    (in streams the STOP may come in a trailing chunk after the call, LiteLLM PR #21577).
    ``FINISH_REASON_UNSPECIFIED``, ``MALFORMED_FUNCTION_CALL`` and the other tool-call
    failures end the turn like ``STOP`` (LiteLLM ``_FINISH_REASON_MAP``, §4.4).
    """
    if finish_reason is None:
        return None
    if finish_reason == "MAX_TOKENS":
        return StopReason.MAX_TOKENS
    if finish_reason in _GEMINI_FILTERED or finish_reason == "OTHER":
        return StopReason.CONTENT_FILTER
    return StopReason.TOOL_USE if saw_function_call else StopReason.END_TURN


def stop_from_gemini_prompt(block_reason: object) -> StopReason:
    """``promptFeedback.blockReason`` (the prompt was refused, no candidates): content filter.

    https://ai.google.dev/api/generate-content#BlockReason
    """
    return StopReason.CONTENT_FILTER


def stop_to_gemini(reason: StopReason | None) -> str | None:
    """Canonical stop reason as Gemini ``finishReason``."""
    if reason is None:
        return None
    if reason in (StopReason.MAX_TOKENS, StopReason.CONTEXT_WINDOW_EXCEEDED):
        return "MAX_TOKENS"
    if reason in (StopReason.REFUSAL, StopReason.CONTENT_FILTER):
        return "SAFETY"
    return "STOP"
