"""``GET /v1/generation?id=``: one request's settled record, with its cost.

Any key of the workspace that made the request may read it; another workspace's request is
a 404, the same as an unknown id (no probing). A record still in the writer's queue (the last
few milliseconds) is answered from memory.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from orcarouter.accounts.keys import KeyCache
from orcarouter.api.asgi import Receive, Scope, Send, header_map, respond, respond_error
from orcarouter.api.auth import authenticate
from orcarouter.errors import GatewayError, InvalidRequest, ModelNotFound
from orcarouter.metering.pricing import usd
from orcarouter.metering.writer import UsageWriter
from orcarouter.store.repositories import KeyRepository, UsageRepository

_JSON = [(b"content-type", b"application/json")]


class GenerationNotFound(ModelNotFound):
    """No request with that id in the caller's workspace."""

    code = "generation_not_found"


class GenerationEndpoint:
    """Looks a request up by its ``X-Orca-Request-Id``."""

    path = "/v1/generation"

    def __init__(
        self,
        keys: KeyCache,
        usage: UsageRepository,
        key_rows: KeyRepository,
        writer: UsageWriter | None = None,
    ) -> None:
        self._keys = keys
        self._usage = usage
        self._key_rows = key_rows
        self.writer = writer  # set at startup, once the writer exists

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, find the record, answer in the OpenAI envelope."""
        try:
            principal = await authenticate(self._keys, header_map(scope))
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            request_id = (query.get("id") or [""])[-1].strip()
            if not request_id:
                raise InvalidRequest("'id' is required: a request's X-Orca-Request-Id", param="id")
            row = await self._find(request_id)
            if row is None or row["workspace_id"] != principal.workspace_id:
                raise GenerationNotFound(f"no request '{request_id}' in this workspace")
            names = {k.id: k.name for k in await self._key_rows.list(principal.workspace_id)}
        except GatewayError as error:
            await respond_error(send, error, False, _JSON)
            return
        body = {"data": generation(row, names.get(row["key_id"] or ""))}
        await respond(send, 200, orjson.dumps(body), _JSON)

    async def _find(self, request_id: str) -> dict[str, Any] | None:
        pending = self.writer.find(request_id) if self.writer is not None else None
        if pending is not None:
            return pending.as_row()
        return await self._usage.get(request_id)


def generation(row: dict[str, Any], key_name: str | None) -> dict[str, Any]:
    """The public shape of one usage record."""
    cost = row.get("cost_micros")
    route = row.get("route_reason")
    return {
        "id": row["request_id"],
        "created_at": row["created_at"].isoformat().replace("+00:00", "Z"),
        "model": row["model_served"],
        "model_requested": row["model_requested"],
        "provider": row["provider_id"],
        "upstream_model": row["upstream_model"],
        "endpoint": row["endpoint"],
        "streamed": bool(row["stream"]),
        "token_name": key_name,
        "status_code": row["status_code"],
        "outcome": row["outcome"],
        "error_type": row["error_type"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "cache_read_tokens": row["cache_read_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "total_cost": usd(cost) if cost is not None else None,
        "cost_micros": cost,
        "currency": "USD",
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "route": orjson.loads(route) if route else None,
    }
