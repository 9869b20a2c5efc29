"""OpenAI Chat Completions and every OpenAI-compatible server (Groq, DeepSeek, vLLM, Ollama…).

Streams are asked for usage (``stream_options.include_usage``); the usage-only chunk that
produces is removed again when the client did not ask for it.
https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from orcarouter.canonical import Usage
from orcarouter.providers.base import ObservedStream, error_message, error_object
from orcarouter.settings import Provider
from orcarouter.translate.usage import usage_from_openai
from orcarouter.wire.sse import SSEEvent, json_data_line, parse_event


def client_wants_usage(payload: Mapping[str, Any]) -> bool:
    """Whether the client itself asked for the usage chunk."""
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


_DELTA = '"choices":[{'  # a chunk with at least one choice, as the vendors write it
_USAGE: Final = '"usage"'
_NO_USAGE: Final = '"usage":null'
_ERROR: Final = '"error"'


class OpenAIStreamObserver(ObservedStream):
    """Reads usage, the served model and the end marker from a chat-completion stream."""

    __slots__ = ("_strip_usage_chunk",)

    def __init__(self, strip_usage_chunk: bool) -> None:
        super().__init__()
        self._strip_usage_chunk = strip_usage_chunk

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for the event's bytes: an event of one ``data:`` line is read without
        the SSE parsing, and a plain content delta goes on at once."""
        data = json_data_line(raw)
        if data is None:
            return self.observe(parse_event(raw))
        if self._plain_delta(data):
            self.produced += 1
            return raw
        return self._read(data, raw)

    def observe(self, event: SSEEvent) -> bytes:
        """Read one event; the usage-only chunk is held back if the client did not ask for it."""
        data = event.data
        if not data:
            return event.raw
        if data == "[DONE]":
            self.finished = True
            return event.raw
        if self._plain_delta(data):
            self.produced += 1
            return event.raw
        return self._read(data, event.raw)

    def _plain_delta(self, data: str) -> bool:
        """Most chunks are one content delta (with ``"usage":null`` when usage was asked for):
        nothing to read but that it is one. Vendors never escape a key, so a chunk carrying
        usage or an error holds the quoted name and is read in full."""
        if self.upstream_model is None or _DELTA not in data or _ERROR in data:
            return False
        usage_named = data.count(_USAGE)
        return usage_named == 0 or (usage_named == 1 and _NO_USAGE in data)

    def _read(self, data: str, raw: bytes) -> bytes:
        """A chunk read in full: the served model, usage, an error."""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(chunk, dict):
            return raw
        if "error" in chunk:
            error = chunk["error"]
            self.error_type = (
                str(error.get("type") or "upstream_error")
                if isinstance(error, dict)
                else "upstream_error"
            )
            return raw
        if self.upstream_model is None and isinstance(chunk.get("model"), str):
            self.upstream_model = chunk["model"]
        if chunk.get("choices"):
            self.produced += 1  # compatible servers send about one token per chunk
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage_from_openai(usage)
            if self._strip_usage_chunk and not chunk.get("choices"):
                return b""
        return raw


class OpenAIProtocol:
    """The ``openai`` protocol: ``POST {base_url}/chat/completions`` with a bearer key."""

    name = "openai"
    accepts_image_urls = True
    multiple_choices = True
    streams_multiple_choices = True

    def url(self, provider: Provider, stream: bool, upstream_model: str) -> str:
        """Chat completions under the provider's base URL."""
        return provider.base_url + "/chat/completions"

    def headers(self, provider: Provider, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Bearer auth plus the operator's extra headers."""
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(provider.headers)
        if provider.api_key:
            headers["authorization"] = f"Bearer {provider.api_key}"
        return headers

    def prepare_body(self, payload: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        """Set the upstream model id and always ask streams for usage."""
        payload["model"] = upstream_model
        if stream and not client_wants_usage(payload):
            options = payload.get("stream_options")
            merged = dict(options) if isinstance(options, dict) else {}
            merged["include_usage"] = True
            payload["stream_options"] = merged
        return orjson.dumps(payload)

    def read_response(self, body: Any) -> tuple[Usage | None, str | None]:
        """``usage`` and ``model`` of a chat completion."""
        if not isinstance(body, dict):
            return None, None
        model = body.get("model")
        usage = body.get("usage")
        parsed = usage_from_openai(usage) if isinstance(usage, dict) else None
        return parsed, model if isinstance(model, str) else None

    def stream_observer(self, payload: Mapping[str, Any]) -> OpenAIStreamObserver:
        """Strip the usage chunk unless the client asked for it."""
        return OpenAIStreamObserver(strip_usage_chunk=not client_wants_usage(payload))

    def error_type(self, body: Any) -> str | None:
        """``error.type`` (or ``error.code``) of ``{"error": {...}}``."""
        error = error_object(body)
        if error is None:
            return None
        kind = error.get("type") or error.get("code")
        return str(kind) if kind else "upstream_error"

    def error_message(self, body: Any) -> str | None:
        """``error.message`` of ``{"error": {...}}``."""
        return error_message(body)
