"""Google Gemini ``generateContent`` and ``streamGenerateContent?alt=sse``, keyed by header.

The model is part of the URL, not the body; the key goes in ``x-goog-api-key`` (never in the
query, where it would reach access logs). https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from orcarouter.canonical import Usage
from orcarouter.providers.base import ObservedStream, error_message, error_object
from orcarouter.settings import Provider
from orcarouter.translate.usage import usage_from_gemini
from orcarouter.wire.sse import SSEEvent, json_data_line, parse_event


class GeminiStreamObserver(ObservedStream):
    """Reads usage, the served model and the finish reason from a Gemini SSE stream."""

    __slots__ = ()

    def observe_raw(self, raw: bytes) -> bytes:
        """``observe`` for the event's bytes: a chunk of one ``data:`` line (nearly every one)
        is read without the SSE parsing."""
        data = json_data_line(raw)
        return self.observe(parse_event(raw)) if data is None else self._chunk(data, raw)

    def observe(self, event: SSEEvent) -> bytes:
        """Every chunk is forwarded; usage is cumulative, the last one wins."""
        return self._chunk(event.data, event.raw) if event.data else event.raw

    def _chunk(self, data: str, raw: bytes) -> bytes:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if isinstance(chunk, dict):
            self._read(chunk)
        return raw

    def _read(self, chunk: dict[str, Any]) -> None:
        error = chunk.get("error")
        if isinstance(error, dict):
            self.error_type = str(error.get("status") or "UNKNOWN")
            return
        if isinstance(chunk.get("modelVersion"), str):
            self.upstream_model = chunk["modelVersion"]
        if isinstance(chunk.get("usageMetadata"), dict):
            self.usage = usage_from_gemini(chunk["usageMetadata"])
        for candidate in chunk.get("candidates") or []:
            if isinstance(candidate, dict) and candidate.get("finishReason"):
                self.finished = True


class GeminiProtocol:
    """The ``gemini`` protocol."""

    name = "gemini"
    accepts_image_urls = False  # fileData takes Google-hosted URIs; other URLs go inline
    multiple_choices = True  # candidateCount
    streams_multiple_choices = False  # streamGenerateContent streams one candidate

    def url(self, provider: Provider, stream: bool, upstream_model: str) -> str:
        """``/models/{model}:generateContent``, or the SSE stream variant."""
        model = quote(upstream_model, safe="-._~/")
        if stream:
            return f"{provider.base_url}/models/{model}:streamGenerateContent?alt=sse"
        return f"{provider.base_url}/models/{model}:generateContent"

    def headers(self, provider: Provider, client_headers: Mapping[str, str]) -> dict[str, str]:
        """``x-goog-api-key`` and the operator's extra headers."""
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(provider.headers)
        if provider.api_key:
            headers["x-goog-api-key"] = provider.api_key
        return headers

    def prepare_body(self, payload: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        """The model and the stream flag travel in the URL."""
        payload.pop("model", None)
        payload.pop("stream", None)
        return orjson.dumps(payload)

    def read_response(self, body: Any) -> tuple[Usage | None, str | None]:
        """``usageMetadata`` and ``modelVersion``."""
        if not isinstance(body, dict):
            return None, None
        usage = body.get("usageMetadata")
        model = body.get("modelVersion")
        return (
            usage_from_gemini(usage) if isinstance(usage, dict) else None,
            model if isinstance(model, str) else None,
        )

    def stream_observer(self, payload: Mapping[str, Any]) -> GeminiStreamObserver:
        """A fresh observer."""
        return GeminiStreamObserver()

    def error_type(self, body: Any) -> str | None:
        """``error.status`` of ``{"error": {"code", "message", "status"}}``."""
        error = error_object(body)
        return str(error.get("status") or "UNKNOWN") if error is not None else None

    def error_message(self, body: Any) -> str | None:
        """``error.message``."""
        return error_message(body)
