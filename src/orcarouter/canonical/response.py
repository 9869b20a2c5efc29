"""The provider-neutral response: choices, stop reasons and usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orcarouter.canonical.content import Block, Extras, no_extras


class StopReason(StrEnum):
    """Why generation ended, as one vocabulary for every wire (see translate/stop_reasons.py)."""

    END_TURN = "end_turn"
    STOP_SEQUENCE = "stop_sequence"
    MAX_TOKENS = "max_tokens"
    TOOL_USE = "tool_use"
    PAUSE_TURN = "pause_turn"
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts with ONE semantic, whatever wire they came from.

    * ``input_tokens`` EXCLUDES cached tokens: total prompt size is
      ``input_tokens + cache_read_tokens + cache_write_tokens`` (Anthropic's convention).
    * ``output_tokens`` INCLUDES reasoning tokens (both OpenAI's and Anthropic's convention);
      ``reasoning_tokens`` is the part of it spent on reasoning.
    * ``None`` means the wire did not report that counter (distinct from a reported 0).
    * ``server_tool_uses`` counts vendor-run tool calls, e.g. ``{"web_search_requests": 2}``.

    So ``total_tokens == prompt_tokens + output_tokens`` always holds.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    server_tool_uses: Mapping[str, int] | None = None
    extra: Extras = field(default_factory=no_extras)

    @property
    def prompt_tokens(self) -> int:
        """Every input token: fresh plus cache reads plus cache writes (OpenAI's prompt_tokens)."""
        return self.input_tokens + (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)

    @property
    def total_tokens(self) -> int:
        """Prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One generated message (OpenAI may return several; other wires one)."""

    index: int = 0
    content: tuple[Block, ...] = ()
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    reasoning_fields: tuple[str, ...] = ()
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A complete (non-streamed, or accumulated) generation result."""

    id: str
    model: str
    choices: tuple[Choice, ...]
    usage: Usage | None = None
    created: int | None = None
    source: str | None = None
    extra: Extras = field(default_factory=no_extras)
