"""Anthropic Messages: ``POST {base_url}/messages`` with ``x-api-key``.

``anthropic-version`` is required by the API; the client's value (and its ``anthropic-beta``
list) is forwarded, with the SDK's default when absent.
https://docs.claude.com/en/api/versioning
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import orjson

from orcarouter.canonical import Usage
from orcarouter.providers.base import ObservedStream, error_message, error_object
from orcarouter.settings import Provider
from orcarouter.translate.common import optional_int
from orcarouter.translate.usage import usage_from_anthropic
from orcarouter.wire.sse import SSEEvent, json_data_line, parse_event

DEFAULT_VERSION: Final = "2023-06-01"
_FORWARDED_HEADERS: Final = ("anthropic-version", "anthropic-beta")
_COUNTERS: Final = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
}


def merge_anthropic_usage(previous: Usage | None, raw: Any) -> Usage | None:
    """Apply a streamed ``usage`` object on top of what ``message_start`` reported.

    ``output_tokens`` is cumulative, so a later value replaces an earlier one; input and cache
    counters may be repeated, or first given (Bedrock-style upstreams), in ``message_delta``:
    each counter present replaces the earlier one and absent ones are kept
    (https://docs.claude.com/en/docs/build-with-claude/streaming#event-types).
    """
    if not isinstance(raw, dict):
        return previous
    if previous is None:
        return usage_from_anthropic(raw)
    changes: dict[str, Any] = {}
    for wire_name, field_name in _COUNTERS.items():
        value = optional_int(raw.get(wire_name))
        if value is not None:
            changes[field_name] = value
    details = raw.get("output_tokens_details")
    thinking = optional_int(details.get("thinking_tokens")) if isinstance(details, dict) else None
    if thinking is not None:
        changes["reasoning_tokens"] = thinking
    server = raw.get("server_tool_use")
    if isinstance(server, dict):
        changes["server_tool_uses"] = {
            k: v for k, v in server.items() if optional_int(v) is not None
        }
    return replace(previous, **changes)


DELTA_OVERHEAD_BYTES: Final = (
    70  # {"type":"content_block_delta","index":0,"delta":{…}} without text
)
_DELTA_EVENT: Final = b"event: content_block_delta\ndata: {"


class AnthropicStreamObserver(ObservedStream):
    """Reads usage from ``message_start``/``message_delta`` and the end from ``message_stop``."""

    __slots__ = ()

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for the event's bytes: a content delta (nearly every event) in its usual
        shape, one ``data:`` line, is counted from its data's length without the SSE parsing."""
        data = json_data_line(raw, _DELTA_EVENT)
        if data is not None:
            self.produced += max(1, (len(data) - DELTA_OVERHEAD_BYTES) // 4)
            return raw
        return self.observe(parse_event(raw))

    def observe(self, event: SSEEvent) -> bytes:
        """Every Anthropic event is forwarded; only the ones carrying usage are parsed."""
        name = event.event
        if name in ("message_start", "message_delta", "error"):
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return event.raw
            if not isinstance(data, dict):
                return event.raw
            if name == "message_start":
                message = data.get("message")
                if isinstance(message, dict):
                    if isinstance(message.get("model"), str):
                        self.upstream_model = message["model"]
                    self.usage = merge_anthropic_usage(None, message.get("usage"))
            elif name == "message_delta":
                self.usage = merge_anthropic_usage(self.usage, data.get("usage"))
            else:
                error = data.get("error")
                kind = error.get("type") if isinstance(error, dict) else None
                self.error_type = str(kind or "api_error")
        elif name == "message_stop":
            self.finished = True
        elif name == "content_block_delta":
            # About 4 bytes a token, after the event's own JSON (~70 bytes).
            self.produced += max(1, (len(event.data) - DELTA_OVERHEAD_BYTES) // 4)
        return event.raw


class AnthropicProtocol:
    """The ``anthropic`` protocol."""

    name = "anthropic"
    accepts_image_urls = True  # {"type": "image", "source": {"type": "url"}}
    multiple_choices = False  # one message per request
    streams_multiple_choices = False

    def url(self, provider: Provider, stream: bool, upstream_model: str) -> str:
        """Messages under the provider's base URL."""
        return provider.base_url + "/messages"

    def headers(self, provider: Provider, client_headers: Mapping[str, str]) -> dict[str, str]:
        """``x-api-key``, the version and beta headers, and the operator's extra headers."""
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": DEFAULT_VERSION,
        }
        for name in _FORWARDED_HEADERS:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        headers.update(provider.headers)
        if provider.api_key:
            headers["x-api-key"] = provider.api_key
        return headers

    def prepare_body(self, payload: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        """Set the upstream model id; Anthropic streams carry usage on their own."""
        payload["model"] = upstream_model
        return orjson.dumps(payload)

    def read_response(self, body: Any) -> tuple[Usage | None, str | None]:
        """``usage`` and ``model`` of a message."""
        if not isinstance(body, dict):
            return None, None
        model = body.get("model")
        parsed = merge_anthropic_usage(None, body.get("usage"))
        return parsed, model if isinstance(model, str) else None

    def stream_observer(self, payload: Mapping[str, Any]) -> AnthropicStreamObserver:
        """A fresh observer."""
        return AnthropicStreamObserver()

    def error_type(self, body: Any) -> str | None:
        """``error.type`` of ``{"type": "error", "error": {...}}``."""
        error = error_object(body)
        if error is None:
            return None
        return str(error.get("type") or "api_error")

    def error_message(self, body: Any) -> str | None:
        """``error.message`` of the envelope."""
        return error_message(body)
