"""The inference endpoints: authenticate, decode once, resolve, forward, relay, meter.

Same-protocol requests are forwarded as the client sent them: only the model id, the gateway's
own extension fields and (for OpenAI streams) the usage option change, so unknown and new
fields survive. Every authenticated request leaves one usage record, failed and cancelled ones
included; the record is handed to the batch writer, never written on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from orcarouter.accounts.access import check_access, model_access_error, model_allowed
from orcarouter.accounts.keys import KeyCache, Principal
from orcarouter.api.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    respond,
)
from orcarouter.api.auth import authenticate, client_ip
from orcarouter.api.dialects import Dialect
from orcarouter.api.relay import Exchange, relay_body, relay_error, relay_stream
from orcarouter.errors import (
    GatewayError,
    InvalidJSON,
    InvalidRequest,
    ProtocolMismatch,
)
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.writer import UsageWriter
from orcarouter.providers.base import ProviderProtocol
from orcarouter.providers.exchange import ExchangePlan, Passthrough, Translated
from orcarouter.providers.profiles import ProfileBook
from orcarouter.routing.resolve import ModelResolver, Target
from orcarouter.routing.select import RouteSelector
from orcarouter.store.repositories import utcnow
from orcarouter.translate.codecs import WireCodec
from orcarouter.transport.client import UpstreamClient, UpstreamRequest

access_log = logging.getLogger("orcarouter.access")

# The fallback chain is the gateway's when ``route`` is exactly "fallback"; otherwise ``models``
# and ``route`` belong to the upstream (OpenRouter has its own): orcarouter.md §0.3.
FALLBACK_FIELDS = ("models", "route")


def new_request_id() -> str:
    """A unique request id; it is also the usage record's idempotency key."""
    return "req_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """What the inference endpoints need, built once by the app."""

    keys: KeyCache
    resolver: ModelResolver
    routes: RouteSelector
    protocols: Mapping[str, ProviderProtocol]
    codecs: Mapping[str, WireCodec]
    profiles: ProfileBook
    client: UpstreamClient
    writer: UsageWriter
    max_body_bytes: int
    access_log: bool


def decode_payload(body: bytes) -> tuple[dict[str, Any], bool]:
    """Decode the body once; invalid JSON, invalid UTF-8 and lone surrogates are refused.

    Returns the payload without the gateway's own fields, and the ``drop_params`` flag.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    extra = payload.pop("extra_body", None)
    if isinstance(extra, dict):  # a literal extra_body, as some clients send it
        for key, value in extra.items():
            payload.setdefault(key, value)
    if payload.get("route") == "fallback":
        for name in FALLBACK_FIELDS:
            payload.pop(name, None)
    drop_params = payload.pop("drop_params", None) is True
    return payload, drop_params


def check_payload(payload: Mapping[str, Any]) -> tuple[str, bool]:
    """The few checks the gateway itself needs: model, messages and stream."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    if not isinstance(payload.get("messages"), list):
        raise InvalidRequest("'messages' is required and must be an array", param="messages")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return model, stream


class InferenceEndpoint:
    """One inference route (``/v1/chat/completions`` or ``/v1/messages``) as an ASGI app."""

    def __init__(self, dialect: Dialect, context: GatewayContext) -> None:
        self.dialect = dialect
        self._ctx = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request end to end."""
        exchange = Exchange(new_request_id(), time.perf_counter(), self.dialect)
        exchange.headers.append((b"x-orca-request-id", exchange.request_id.encode()))
        headers = header_map(scope)
        try:
            principal = await authenticate(self._ctx.keys, headers)
            denied = check_access(principal, client_ip(scope), None)
            if denied is not None:
                raise denied
        except GatewayError as error:
            await self._answer_error(send, exchange, error)
            self._log(exchange, error.status, None)
            return
        record = UsageRecord(
            request_id=exchange.request_id,
            created_at=utcnow(),
            workspace_id=principal.workspace_id,
            key_id=principal.key_id,
            endpoint=self.dialect.endpoint,
            stream=False,
        )
        try:
            await self._serve(scope, receive, send, headers, exchange, record, principal)
        finally:
            record.latency_ms = exchange.elapsed_ms()
            self._ctx.writer.submit(record)
            self._log(exchange, record.status_code, record.model_requested)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        exchange: Exchange,
        record: UsageRecord,
        principal: Principal,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher: asyncio.Future[None] | None = None
        try:
            body = await read_body(receive, headers, self._ctx.max_body_bytes)
            payload, drop_params = decode_payload(body)
            record.model_requested, record.stream = check_payload(payload)
            target = self._resolve(principal, record, payload, len(body), exchange)
            record.model_served, record.provider_id = target.model_id, target.provider.id
            exchange.headers.append((b"x-orca-resolved-model", target.model_id.encode()))
            protocol = self._protocol_for(target)
            plan = self._plan(target, protocol, payload, record.stream, drop_params)
            if plan.dropped:
                exchange.headers.append((b"x-orca-dropped-params", ",".join(plan.dropped).encode()))
            watcher = asyncio.ensure_future(_watch_disconnect(receive, task, exchange))
            await self._forward(target, protocol, plan, headers, exchange, record, send)
        except GatewayError as error:
            record.status_code, record.outcome = error.status, "error"
            record.error_type = record.error_type or error.code
            await self._answer_error(send, exchange, error)
        except ClientDisconnected:
            record.status_code, record.outcome = 499, "client_cancelled"
        except asyncio.CancelledError:
            if not exchange.client_gone:
                raise
            task.uncancel()
            record.status_code, record.outcome = 499, "client_cancelled"
        finally:
            if watcher is not None:
                watcher.cancel()

    def _resolve(
        self,
        principal: Principal,
        record: UsageRecord,
        payload: Mapping[str, Any],
        body_bytes: int,
        exchange: Exchange,
    ) -> Target:
        """The target to try: a router's first candidate, or the model asked for."""
        model = record.model_requested or ""
        if RouteSelector.is_router(model):
            # A key that lists the router itself may use whatever the router picks.
            whole_router = model_allowed(principal, model)
            decision = self._ctx.routes.route(
                principal.workspace_id,
                model,
                payload,
                body_bytes,
                lambda m: whole_router or model_allowed(principal, m),
            )
            record.route_reason = decision.reason_json()
            exchange.headers.append((b"x-orca-router", decision.router.encode()))
            exchange.headers.append((b"x-orca-route-reason", decision.header().encode()))
            return decision.chosen.target
        target = self._ctx.resolver.resolve(model)
        denied = model_access_error(principal, model, target.model_id)
        if denied is not None:
            raise denied
        return target

    async def _forward(
        self,
        target: Target,
        protocol: ProviderProtocol,
        plan: ExchangePlan,
        headers: Mapping[str, str],
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
    ) -> None:
        provider = target.provider
        request = UpstreamRequest(
            url=protocol.url(provider, record.stream, target.upstream_model),
            headers=protocol.headers(provider, headers),
            body=plan.body,
            timeouts=provider.timeouts,
        )
        response = await self._ctx.client.send(request)
        try:
            if response.status >= 400:
                secrets_ = [provider.api_key] if provider.api_key else []
                await relay_error(response, protocol, exchange, record, send, secrets_)
            elif record.stream and response.is_event_stream:
                await relay_stream(response, plan.stream_observer(), exchange, record, send)
            else:
                await relay_body(response, plan, exchange, record, send)
        except BaseException:
            response.close()
            raise
        response.release()

    def _protocol_for(self, target: Target) -> ProviderProtocol:
        protocol = self._ctx.protocols.get(target.provider.protocol)
        if protocol is None:
            raise ProtocolMismatch(
                f"model '{target.model_id}' is served over the {target.provider.protocol} "
                "protocol, which this version of the gateway cannot reach yet",
                param="model",
            )
        return protocol

    def _plan(
        self,
        target: Target,
        protocol: ProviderProtocol,
        payload: dict[str, Any],
        stream: bool,
        drop_params: bool,
    ) -> ExchangePlan:
        """Pass through when the client speaks the upstream's protocol, else translate."""
        model = target.upstream_model
        if protocol.name == self.dialect.protocol:
            return Passthrough(protocol, payload, model, stream)
        options = self._ctx.profiles.options(target.provider.id, model, drop_params=drop_params)
        return Translated(
            self._ctx.codecs[self.dialect.protocol],
            self._ctx.codecs[protocol.name],
            payload,
            model=model,
            stream=stream,
            options=options,
        )

    async def _answer_error(self, send: Send, exchange: Exchange, error: GatewayError) -> None:
        if exchange.committed:
            if not exchange.finished:
                exchange.finished = True
                await send(
                    {
                        "type": "http.response.body",
                        "body": self.dialect.stream_error(error),
                        "more_body": False,
                    }
                )
            return
        exchange.committed = exchange.finished = True
        headers: Sequence[tuple[bytes, bytes]] = exchange.headers
        await respond(send, error.status, self.dialect.error_body(error), headers)

    def _log(self, exchange: Exchange, status: int, model: str | None) -> None:
        if self._ctx.access_log:
            access_log.info(
                "%s %s %d model=%s %dms",
                exchange.request_id,
                self.dialect.path,
                status,
                model or "-",
                exchange.elapsed_ms(),
            )


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any], exchange: Exchange) -> None:
    """Cancel the request's task when the client goes away before the response is finished."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not exchange.finished:
                exchange.client_gone = True
                task.cancel()
            return
