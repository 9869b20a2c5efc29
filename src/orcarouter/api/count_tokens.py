"""``POST /v1/messages/count_tokens``: Anthropic's counter, or an estimate for other models.

Anthropic models get Anthropic's own count (forwarded). For models served over the OpenAI
protocol the request is rendered as that model would receive it and counted with its tiktoken
encoding; the answer says it is an estimate (``X-Orca-Token-Count: estimate`` and
``"estimated": true``).
"""

from __future__ import annotations

import time

import orjson

from orcarouter.accounts.access import check_access, model_access_error
from orcarouter.api.asgi import Receive, Scope, Send, header_map, read_body, respond
from orcarouter.api.auth import authenticate, client_ip
from orcarouter.api.dialects import ANTHROPIC_MESSAGES
from orcarouter.api.inference import (
    GatewayContext,
    check_payload,
    decide_route,
    decode_payload,
    new_request_id,
)
from orcarouter.api.relay import Exchange, relay_body, relay_error
from orcarouter.errors import GatewayError, InvalidRequest, ProtocolMismatch
from orcarouter.metering.usage import UsageRecord
from orcarouter.providers.exchange import Passthrough, read_client_request
from orcarouter.providers.token_estimate import encoding_for, estimate_openai_prompt
from orcarouter.routing.resolve import Target
from orcarouter.routing.select import RouteSelector
from orcarouter.store.ids import utcnow
from orcarouter.translate.codecs import TargetOptions
from orcarouter.translate.common import TranslationError
from orcarouter.transport.client import UpstreamRequest


class CountTokensEndpoint:
    """Counts a Messages request's input tokens without generating anything."""

    path = "/v1/messages/count_tokens"

    def __init__(self, context: GatewayContext) -> None:
        self._ctx = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, resolve, then forward or estimate."""
        exchange = Exchange(new_request_id(), time.perf_counter(), ANTHROPIC_MESSAGES)
        exchange.headers.append((b"x-orca-request-id", exchange.request_id.encode()))
        headers = header_map(scope)
        try:
            principal = await authenticate(self._ctx.keys, headers)
            denied = check_access(principal, client_ip(scope), None)
            if denied is not None:
                raise denied
            body = await read_body(receive, headers, self._ctx.max_body_bytes)
            request = decode_payload(body)
            payload = request.payload
            model, _ = check_payload(payload)
            if RouteSelector.is_router(model):
                # Count for the model the router would pick for this very request.
                decision = decide_route(self._ctx.routes, principal, model, request.needs)
                target = decision.chosen.target
                exchange.headers.append((b"x-orca-router", decision.router.encode()))
            else:
                target = self._ctx.resolver.resolve(model)
                denied = model_access_error(principal, model, target.model_id)
                if denied is not None:
                    raise denied
            exchange.headers.append((b"x-orca-resolved-model", target.model_id.encode()))
            if target.provider.protocol == "anthropic":
                provider = target.provider
                if self._ctx.credentials is not None:  # the workspace's own key (BYOK)
                    provider = self._ctx.credentials.provider_for(principal.workspace_id, provider)
                await self._forward(
                    Target(provider, target.upstream_model), payload, headers, exchange, send
                )
            elif target.provider.protocol == "openai":
                await self._estimate(target, payload, exchange, send)
            else:
                raise ProtocolMismatch(
                    f"token counting for '{target.model_id}' is not available", param="model"
                )
        except GatewayError as error:
            if not exchange.committed:
                await respond(send, error.status, error.anthropic_body(), exchange.headers)

    async def _forward(
        self,
        target: Target,
        payload: dict[str, object],
        headers: dict[str, str],
        exchange: Exchange,
        send: Send,
    ) -> None:
        protocol = self._ctx.protocols["anthropic"]
        plan = Passthrough(protocol, payload, target.upstream_model, stream=False)
        provider = target.provider
        request = UpstreamRequest(
            url=provider.base_url + "/messages/count_tokens",
            headers=protocol.headers(provider, headers),
            body=plan.body,
            timeouts=provider.timeouts_for(target.upstream_model),
        )
        # Counting is free: the record is a scratch one, never written to the ledger.
        scratch = UsageRecord(exchange.request_id, utcnow(), None, None, "count_tokens", False)
        response = await self._ctx.client.send(request)
        try:
            if response.status >= 400:
                secrets = [provider.api_key] if provider.api_key else []
                await relay_error(response, protocol, exchange, scratch, send, secrets)
            else:
                await relay_body(response, plan, exchange, scratch, send)
        finally:
            response.release()  # pooled again when read whole, else closed

    async def _estimate(
        self, target: Target, payload: dict[str, object], exchange: Exchange, send: Send
    ) -> None:
        codecs = self._ctx.codecs
        try:
            request = read_client_request(codecs["anthropic"], payload)
            rendered = codecs["openai"].request_from_canonical(
                request, TargetOptions(drop_params=True)
            )
        except TranslationError as exc:
            raise InvalidRequest(exc.message, param=exc.param) from None
        encoding = encoding_for(target.upstream_model)
        tokens = estimate_openai_prompt(rendered.body, encoding)
        exchange.headers.append((b"x-orca-token-count", f"estimate; encoding={encoding}".encode()))
        body = orjson.dumps({"input_tokens": tokens, "estimated": True})
        exchange.committed = True
        await respond(send, 200, body, exchange.headers)
