"""The two client dialects: how each endpoint renders errors, before and after commit."""

from __future__ import annotations

from dataclasses import dataclass

from orcarouter.errors import GatewayError
from orcarouter.wire.sse import encode_event


@dataclass(frozen=True, slots=True)
class Dialect:
    """One client-facing API: its endpoint name, protocol and error envelopes."""

    endpoint: str
    protocol: str
    path: str
    anthropic: bool

    def error_body(self, error: GatewayError) -> bytes:
        """The error envelope of this dialect."""
        return error.anthropic_body() if self.anthropic else error.openai_body()

    def status_for_upstream(self, status: int) -> int:
        """The status a client of this dialect gets for an upstream error of another protocol.

        Anthropic's 529 ``overloaded_error`` means "try again shortly"; OpenAI clients know that
        as 503 (wire-formats.md §4.10).
        """
        if status == 529 and not self.anthropic:
            return 503
        return status

    def stream_error(self, error: GatewayError) -> bytes:
        """One terminal error event: Anthropic ``event: error``; OpenAI ``data: {"error"}``.

        The OpenAI SDK raises on any data object with an ``error`` key
        (openai-python ``_streaming.py``); the Anthropic SDK dispatches on the event name.
        """
        if self.anthropic:
            return encode_event(error.anthropic_body(), "error")
        return encode_event(error.openai_body())


OPENAI_CHAT = Dialect("openai.chat", "openai", "/v1/chat/completions", anthropic=False)
ANTHROPIC_MESSAGES = Dialect("anthropic.messages", "anthropic", "/v1/messages", anthropic=True)
