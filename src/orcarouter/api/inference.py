"""The inference endpoints: authenticate, decode once, resolve, forward, relay, meter.

Same-protocol requests are forwarded as the client sent them: only the model id, the gateway's
own extension fields and (for OpenAI streams) the usage option change, so unknown and new
fields survive. Every authenticated request leaves one usage record, failed and cancelled ones
included; the record is handed to the batch writer, never written on the request path.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from orcarouter.accounts.access import check_access, model_access_error, router_access
from orcarouter.accounts.credentials import CredentialCache
from orcarouter.accounts.keys import KeyCache, Principal
from orcarouter.accounts.rate_limits import (
    InMemoryRateLimiter,
    Lease,
    RateLimiter,
    Refusal,
    counts_tokens,
    quota_headers,
)
from orcarouter.api.asgi import (
    DISCONNECT_EXTENSION,
    WRITE_EXTENSION,
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
from orcarouter.api.fanout import FanOut, needs_fan_out, wanted_choices
from orcarouter.api.relay import (
    AttemptFailed,
    Exchange,
    failed_attempt,
    is_retryable_status,
    read_failure,
    relay_body,
    relay_error,
    relay_stream,
)
from orcarouter.canonical import Request, Usage
from orcarouter.errors import (
    FallbackExhausted,
    GatewayError,
    InsufficientQuota,
    InvalidJSON,
    InvalidRequest,
    ProtocolMismatch,
    RateLimited,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from orcarouter.metering.pricing import Pricer, usd
from orcarouter.metering.stats import Outcome, classify
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.wallet import BudgetBook, Budgets, InsufficientFunds, Reservation
from orcarouter.metering.writer import UsageWriter
from orcarouter.providers.base import ProviderProtocol
from orcarouter.providers.exchange import (
    ExchangePlan,
    Passthrough,
    Translated,
    read_client_request,
    untranslatable,
)
from orcarouter.providers.openai_compat import client_wants_usage
from orcarouter.providers.profiles import ProfileBook
from orcarouter.routing.candidates import Candidate
from orcarouter.routing.decision import RouteDecision
from orcarouter.routing.health import HealthBook, RetryBudget
from orcarouter.routing.needs import RequestNeeds, needs_of
from orcarouter.routing.resolve import ModelResolver, Target
from orcarouter.routing.select import RouteSelector, first_live
from orcarouter.store.ids import ordered_id, utcnow
from orcarouter.translate.codecs import WireCodec
from orcarouter.translate.common import TranslationError
from orcarouter.translate.remote_images import (
    RemoteImageLimitExceeded,
    inline_remote_images,
    needs_inlining,
)
from orcarouter.translate.signatures import FOREIGN_SIGNATURE_PREFIX
from orcarouter.transport.client import UpstreamClient, UpstreamRequest
from orcarouter.transport.egress import EgressFetcher

access_log = logging.getLogger("orcarouter.access")

# The fallback chain is the gateway's when ``route`` is exactly "fallback"; otherwise ``models``
# and ``route`` belong to the upstream (OpenRouter has its own): orcarouter.md §0.3.


def new_request_id() -> str:
    """A unique request id, ordered by time; it is also the usage record's idempotency key."""
    return ordered_id("req_")


@dataclass(frozen=True, slots=True)
class Route:
    """The targets one request may be served by, in order, and how they were chosen."""

    targets: tuple[Target, ...]
    decision: RouteDecision | None = None
    skipped: tuple[str, ...] = ()  # fallback entries the key may not use or nobody serves

    def reason(self, failures: Sequence[tuple[str, str]]) -> str | None:
        """The route reason for the usage record: the decision, then any failed attempts."""
        body: dict[str, object] = self.decision.reason() if self.decision is not None else {}
        if failures:
            body["attempts"] = [{"model": m, "error": e} for m, e in failures]
        if self.skipped:
            body["skipped_fallbacks"] = list(self.skipped)
        return orjson.dumps(body).decode() if body else None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one target: how to reach it, and what may happen on failure."""

    target: Target
    protocol: ProviderProtocol
    plan: ExchangePlan
    catch: bool  # a retryable failure raises AttemptFailed: another target may serve
    fan_out: int = 1  # upstream requests whose single choices make the answer's n choices


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
    health: HealthBook
    budget: RetryBudget
    egress: EgressFetcher | None
    max_images: int
    max_body_bytes: int
    access_log: bool
    limiter: RateLimiter = field(default_factory=InMemoryRateLimiter)
    budgets: BudgetBook = field(default_factory=Budgets)
    open_records: bool = True  # store each request before its upstream call (crash safety)
    pricer: Pricer | None = None
    credentials: CredentialCache | None = None  # workspaces' own provider keys (BYOK)


FOREIGN_SIGNATURE_MARK: Final = b'"' + FOREIGN_SIGNATURE_PREFIX.encode()
MAX_FALLBACK_MODELS: Final = 5
# A router's ranking is walked no further than a chain.
MAX_ATTEMPTS: Final = 1 + MAX_FALLBACK_MODELS


@dataclass(slots=True)
class ClientRequest:
    """The decoded payload without the gateway's own fields, and what those fields asked."""

    payload: dict[str, Any]
    body_bytes: int
    drop_params: bool = False
    fallbacks: tuple[str, ...] = ()
    # A thinking signature another vendor issued, wrapped for this client's wire: the request
    # goes through translation even to its own protocol, which drops it (translate/signatures).
    foreign_signatures: bool = False
    # The parsed request with remote images inline, once a target needed it.
    inlined: list[Request] = field(default_factory=list, compare=False)
    _needs: RequestNeeds | None = field(default=None, compare=False)

    @property
    def needs(self) -> RequestNeeds:
        """What the request needs (routing, the prompt estimate), read once when first asked."""
        if self._needs is None:
            self._needs = needs_of(self.payload, self.body_bytes)
        return self._needs


def decode_payload(body: bytes) -> ClientRequest:
    """Decode the body once; invalid JSON, invalid UTF-8 and lone surrogates are refused.

    The gateway's own fields leave the payload here: ``drop_params``, and the fallback chain
    (``models`` with ``route: "fallback"``), nested in a literal ``extra_body`` or top-level as
    the OpenAI SDK sends ``extra_body``.
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
    fallbacks: tuple[str, ...] = ()
    if payload.get("route") == "fallback":
        models = payload.pop("models", None)
        payload.pop("route", None)
        fallbacks = _fallback_models(models)
    drop_params = payload.pop("drop_params", None) is True
    # `find`, not `in`: bytes' `in` first tries the needle as an int and makes an exception
    foreign = body.find(FOREIGN_SIGNATURE_MARK) != -1
    return ClientRequest(payload, len(body), drop_params, fallbacks, foreign_signatures=foreign)


def _fallback_models(models: Any) -> tuple[str, ...]:
    if models is None:
        return ()
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise InvalidRequest("'models' must be an array of model ids", param="models")
    if len(models) > MAX_FALLBACK_MODELS:
        raise InvalidRequest(
            f"'models' lists {len(models)} models; at most {MAX_FALLBACK_MODELS} are allowed",
            param="models",
        )
    return tuple(models)


def check_payload(payload: Mapping[str, Any]) -> tuple[str, bool]:
    """The few checks the gateway itself needs: model, messages and stream."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' is required and must be an array", param="messages")
    if not all(isinstance(message, dict) for message in messages):
        raise InvalidRequest("'messages' must be an array of objects", param="messages")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return model, stream


def decide_route(
    routes: RouteSelector, principal: Principal, model: str, needs: RequestNeeds
) -> RouteDecision:
    """A router's decision for this request, within what the key may use."""
    return routes.route(principal.workspace_id, model, needs, router_access(principal, model))


def cancelled_usage(record: UsageRecord, needs: RequestNeeds) -> Usage | None:
    """What a request the client walked away from consumed upstream: the usage the upstream
    reported so far, its output raised to the tokens that passed (estimated from the deltas
    seen), and the prompt estimated when the upstream had not reported it yet."""
    if record.model_served is None:
        return record.usage  # nothing reached an upstream
    usage, produced = record.usage, record.produced
    if usage is None:
        return Usage(input_tokens=needs.prompt_tokens, output_tokens=produced)
    if produced > usage.output_tokens:
        return replace(usage, output_tokens=produced)
    return usage


class InferenceEndpoint:
    """One inference route (``/v1/chat/completions`` or ``/v1/messages``) as an ASGI app."""

    def __init__(self, dialect: Dialect, context: GatewayContext) -> None:
        self.dialect = dialect
        self._ctx = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request end to end."""
        exchange = Exchange(new_request_id(), time.perf_counter(), self.dialect)
        exchange.headers.append((b"x-orca-request-id", exchange.request_id.encode()))
        exchange.write_body = scope.get("extensions", _NO_EXTENSIONS).get(WRITE_EXTENSION)
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
        unwatch: Callable[[], object] | None = None
        lease: Lease | None = None
        reservation: Reservation | None = None
        request: ClientRequest | None = None
        budget = self._ctx.budget
        budget.enter()
        try:
            body = await read_body(receive, headers, self._ctx.max_body_bytes)
            request = decode_payload(body)
            record.model_requested, record.stream = check_payload(request.payload)
            route = self._route(principal, record, request, exchange)
            if principal.limit_scopes:
                lease = await self._admit(principal, request, exchange, record)
            reservation = await self._reserve(principal, route, request, record)
            if self._ctx.open_records:
                await self._ctx.writer.open(record)
            unwatch = _watch_client(scope, receive, task, exchange)
            await self._serve_route(route, request, headers, exchange, record, send)
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
            if request is not None:
                record.usage = cancelled_usage(record, request.needs)
        finally:
            if reservation is not None:  # every path: the hold goes, the actual cost counts
                self._settle(reservation, record)
            if lease is not None:  # every path: errors, disconnects, streams that end or break
                usage = record.usage
                self._ctx.limiter.finish(lease, usage.total_tokens if usage else None)
            budget.leave(exchange.retry_ticket)
            if unwatch is not None:
                unwatch()
            if record.model_served is not None:
                outcome = classify(record)
                served = record.model_served
                if outcome is Outcome.THROTTLED and record.provider_id is not None:
                    served = self._throttle_key(record.workspace_id, record.provider_id, served)
                self._ctx.health.observe(served, outcome, exchange.retry_after)

    async def _admit(
        self,
        principal: Principal,
        request: ClientRequest,
        exchange: Exchange,
        record: UsageRecord,
    ) -> Lease:
        """Admit the request under the key's and its workspace's rate limits, else 429 with
        ``Retry-After``; the tokens are the estimated prompt, corrected when the request ends."""
        scopes = principal.limit_scopes
        tokens = request.needs.prompt_tokens if counts_tokens(scopes) else 0
        admission = await self._ctx.limiter.admit(scopes, tokens)
        exchange.headers.extend(quota_headers(admission.requests_quota, admission.tokens_quota))
        if isinstance(admission, Refusal):
            exchange.headers.append((b"retry-after", str(admission.retry_after).encode()))
            record.error_type = "rate_limited"
            raise RateLimited(admission.message)
        return admission

    async def _reserve(
        self,
        principal: Principal,
        route: Route,
        request: ClientRequest,
        record: UsageRecord,
    ) -> Reservation | None:
        """Hold the request's worst case against the wallet and the key's cap, else 402."""
        budgets, pricer = self._ctx.budgets, self._ctx.pricer
        if pricer is None or not budgets.metered(principal.workspace_id, principal.key_id):
            return None
        payload = request.payload
        prompt = request.needs.prompt_tokens
        limit = payload.get("max_tokens", payload.get("max_completion_tokens"))
        max_output = limit if isinstance(limit, int) and limit > 0 else None
        choices = wanted_choices(payload) if not self.dialect.anthropic else 1
        worst = choices * max(
            (
                pricer.worst_case(t.provider.id, t.model_id, prompt, max_output)
                for t in route.targets
            ),
            default=0,
        )
        try:
            # The hold outlives the request: every attempt of the route may take its total.
            ttl = 60.0 + sum(t.provider.timeouts_for(t.upstream_model).total for t in route.targets)
            return await budgets.hold(
                record.request_id, principal.workspace_id, principal.key_id, worst, ttl
            )
        except InsufficientFunds as exc:
            record.error_type = InsufficientQuota.code
            raise InsufficientQuota(
                f"{exc.reason}: this request may cost up to ${usd(exc.needed)} and "
                f"${usd(max(exc.available, 0))} is available"
            ) from None

    def _settle(self, reservation: Reservation, record: UsageRecord) -> None:
        """Release the hold; the actual cost is what the writer will charge."""
        assert self._ctx.pricer is not None  # a reservation implies a pricer
        cost = self._ctx.pricer.record_cost(record)
        record.cost_micros = cost
        self._ctx.budgets.settle(reservation, cost or 0)
        record.held = (reservation.workspace_id is not None, reservation.key_id is not None)

    def _route(
        self,
        principal: Principal,
        record: UsageRecord,
        request: ClientRequest,
        exchange: Exchange,
    ) -> Route:
        """The targets to try in order: the model or router asked for, then the fallback chain.

        Targets that are ejected or cooling down are left out unless that would leave none;
        entries of the chain that the key may not use or the gateway does not know are skipped.
        """
        model = record.model_requested or ""
        decision: RouteDecision | None = None
        chain: list[Iterable[Target]] = []  # walked lazily: a router may rank hundreds
        if RouteSelector.is_router(model):
            decision = decide_route(self._ctx.routes, principal, model, request.needs)
            exchange.headers.append((b"x-orca-router", decision.router.encode()))
            exchange.headers.append((b"x-orca-route-reason", decision.header().encode()))
            chain.append(_targets(decision.candidates))
        else:
            target = self._ctx.resolver.resolve(model)
            denied = model_access_error(principal, model, target.model_id)
            if denied is not None:
                raise denied
            chain.append((target,))
        skipped: list[str] = []
        for entry in request.fallbacks:
            try:
                if RouteSelector.is_router(entry):
                    found = decide_route(self._ctx.routes, principal, entry, request.needs)
                    chain.append(_targets(found.candidates))
                    continue
                target = self._ctx.resolver.resolve(entry)
            except GatewayError:
                skipped.append(entry)
                continue
            if model_access_error(principal, entry, target.model_id) is not None:
                skipped.append(entry)
            else:
                chain.append((target,))
        workspace = record.workspace_id
        targets = first_live(
            itertools.chain.from_iterable(chain),
            self._ctx.health,
            MAX_ATTEMPTS,
            lambda t: self._throttle_key(workspace, t.provider.id, t.model_id),
        )
        return Route(targets, decision, tuple(skipped))

    async def _serve_route(
        self,
        route: Route,
        request: ClientRequest,
        headers: Mapping[str, str],
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
    ) -> None:
        """Try the targets in order until one answers; fail over only before the first byte."""
        failures: list[tuple[str, str]] = []
        attempts: list[AttemptFailed | None] = []  # None: not tried
        client_error: GatewayError | None = None
        catch = len(route.targets) > 1
        choices = wanted_choices(request.payload) if not self.dialect.anthropic else 1
        base = len(exchange.headers)
        try:
            for level, target in enumerate(route.targets):
                if level and not exchange.retry_ticket:
                    if not self._ctx.budget.try_acquire():
                        failures.append((target.model_id, "not tried: retry budget exhausted"))
                        attempts.append(None)
                        break
                    exchange.retry_ticket = True
                del exchange.headers[base:]
                record.model_served, record.provider_id = target.model_id, target.provider.id
                record.status_code, record.outcome, record.error_type = 0, "ok", None
                exchange.headers.append((b"x-orca-resolved-model", target.model_id.encode()))
                exchange.headers.append((b"x-orca-fallback-level", str(level).encode()))
                try:
                    protocol = self._protocol_for(target)
                    fan_out = needs_fan_out(protocol, choices, record.stream)
                    plan = await self._plan(target, protocol, request, record.stream, fan_out)
                except GatewayError as error:
                    if not catch:
                        raise
                    client_error = client_error or error
                    failures.append((target.model_id, f"not tried: {error.message}"))
                    attempts.append(None)
                    continue
                if plan.dropped:
                    dropped = ",".join(plan.dropped).encode()
                    exchange.headers.append((b"x-orca-dropped-params", dropped))
                try:
                    attempt = Attempt(target, protocol, plan, catch, choices if fan_out else 1)
                    await self._forward(attempt, headers, exchange, record, send)
                except AttemptFailed as failed:
                    self._attempt_failed(target, failed, record, failures)
                    attempts.append(failed)
                    continue
                except (UpstreamUnreachable, UpstreamTimeout, UpstreamProtocolError) as error:
                    if not catch or exchange.committed:
                        raise
                    broken = AttemptFailed(error)
                    self._attempt_failed(target, broken, record, failures)
                    attempts.append(broken)
                    continue
                return
            record.model_served = record.provider_id = None
            tried = [f for f in attempts if f is not None]
            if not tried and client_error is not None:
                raise client_error
            if len(tried) == 1:  # the budget stopped the fallback: the one answer stands
                only = tried[0]
                if only.retry_after:
                    exchange.headers.append((b"retry-after", only.retry_after.encode("latin-1")))
                raise only.error
            summary = "; ".join(f"{model}: {reason}" for model, reason in failures)
            raise FallbackExhausted(
                f"all {len(route.targets)} candidates failed before answering: {summary}"
            )
        finally:
            record.route_reason = route.reason(failures)

    def _throttle_key(self, workspace_id: str | None, provider_id: str, model_id: str) -> str:
        """Where a 429 cools down: the target as the workspace reaches it with its own key
        (BYOK: another workspace's quota is not this one's), else the target for everyone."""
        credentials = self._ctx.credentials
        if credentials is None or workspace_id is None:
            return model_id
        return (
            f"{model_id}@{workspace_id}"
            if credentials.holds(workspace_id, provider_id)
            else model_id
        )

    def _attempt_failed(
        self,
        target: Target,
        failed: AttemptFailed,
        record: UsageRecord,
        failures: list[tuple[str, str]],
    ) -> None:
        """Note a failed attempt: health, live statistics and the reason; then move on."""
        error = failed.error
        failures.append((target.model_id, f"{error.status} {error.code}: {error.message}"[:300]))
        if failed.throttled:
            throttled = self._throttle_key(record.workspace_id, target.provider.id, target.model_id)
            self._ctx.health.throttled(throttled, failed.retry_after)
        else:
            self._ctx.health.failure(target.model_id, error.code)
        attempt = replace(
            record,
            status_code=429 if failed.throttled else max(error.status, 500),
            outcome="error",
            error_type=error.code,
            usage=None,
        )
        self._ctx.writer.notify(attempt)

    async def _forward(
        self,
        attempt: Attempt,
        headers: Mapping[str, str],
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
    ) -> None:
        """One attempt. With ``catch``, a retryable failure before the first byte raises
        ``AttemptFailed`` instead of reaching the client; ``fan_out`` > 1 sends that many
        requests and merges them into one answer's choices."""
        target, protocol, plan = attempt.target, attempt.protocol, attempt.plan
        catch, fan_out = attempt.catch, attempt.fan_out
        provider = target.provider
        if self._ctx.credentials is not None:  # the workspace's own key, when it stored one
            provider = self._ctx.credentials.provider_for(record.workspace_id, provider)
        request = UpstreamRequest(
            url=protocol.url(provider, record.stream, target.upstream_model),
            headers=protocol.headers(provider, headers),
            body=plan.body,
            timeouts=provider.timeouts_for(target.upstream_model),
        )
        secrets_ = [provider.api_key] if provider.api_key else []
        if fan_out > 1:
            assert isinstance(plan, Translated)  # only other protocols lack n
            fan = FanOut(self._ctx.client, protocol, plan, request, fan_out, secrets_)
            await fan.serve(
                exchange,
                record,
                send,
                stream=record.stream,
                include_usage=client_wants_usage(plan.client_payload),
                catch=catch,
            )
            return
        response = await self._ctx.client.send(request)
        try:
            if response.status >= 400:
                if catch and is_retryable_status(response.status):
                    failure = await read_failure(response, protocol, secrets_)
                    response.release()
                    raise failed_attempt(failure, self.dialect)
                await relay_error(response, protocol, exchange, record, send, secrets_)
            elif record.stream and response.is_event_stream:
                observer = plan.stream_observer()
                await relay_stream(
                    response,
                    observer,
                    exchange,
                    record,
                    send,
                    first_event=True,
                    peek=catch,
                )
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

    async def _plan(
        self,
        target: Target,
        protocol: ProviderProtocol,
        request: ClientRequest,
        stream: bool,
        single: bool = False,
    ) -> ExchangePlan:
        """Pass through when the client speaks the upstream's protocol, else translate;
        ``single``: one choice per upstream request (``n`` is fanned out)."""
        model = target.upstream_model
        if protocol.name == self.dialect.protocol and not request.foreign_signatures:
            return Passthrough(protocol, request.payload, model, stream)
        options = self._ctx.profiles.options(
            target.provider.id, model, drop_params=request.drop_params
        )
        canonical = None
        if not protocol.accepts_image_urls:
            canonical = await self._inlined(request, model, protocol.name)
        payload = request.payload
        if single:
            payload = {k: v for k, v in payload.items() if k != "n"}
            if canonical is not None:
                canonical = replace(canonical, sampling=replace(canonical.sampling, n=None))
        return Translated(
            self._ctx.codecs[self.dialect.protocol],
            self._ctx.codecs[protocol.name],
            payload,
            model=model,
            stream=stream,
            options=options,
            canonical=canonical,
        )

    async def _inlined(self, request: ClientRequest, model: str, protocol: str) -> Request:
        """The client request parsed, its remote images fetched through the egress guard
        (once per request, however many targets need them)."""
        if request.inlined:
            return request.inlined[0]
        try:
            parsed = read_client_request(self._ctx.codecs[self.dialect.protocol], request.payload)
        except TranslationError as exc:
            raise untranslatable(exc, model, protocol) from None
        if needs_inlining(parsed):
            if self._ctx.egress is None:
                raise InvalidRequest(
                    f"{model} needs images sent inline (as data: URLs); "
                    "this gateway does not fetch image URLs",
                    param="messages",
                )
            try:
                parsed = await inline_remote_images(
                    parsed, self._ctx.egress.fetch_image, max_images=self._ctx.max_images
                )
            except RemoteImageLimitExceeded as too_many:
                raise InvalidRequest(str(too_many), param="messages") from None
        request.inlined.append(parsed)
        return parsed

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


def _watch_client(
    scope: Scope, receive: Receive, task: asyncio.Task[Any], exchange: Exchange
) -> Callable[[], object]:
    """Cancel the request's task when the client goes away before the response is finished:
    through the server's disconnect callback when it offers one (no task per request), else
    with a task waiting on ``receive``. Returns what stops watching."""
    register = scope.get("extensions", _NO_EXTENSIONS).get(DISCONNECT_EXTENSION)
    if register is None:
        return asyncio.ensure_future(_watch_disconnect(receive, task, exchange)).cancel

    def gone() -> None:
        if not exchange.finished:
            exchange.client_gone = True
            task.cancel()

    register(gone)
    return lambda: register(None)


_NO_EXTENSIONS: Final[Mapping[str, Any]] = {}


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any], exchange: Exchange) -> None:
    """Cancel the request's task when the client goes away before the response is finished."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not exchange.finished:
                exchange.client_gone = True
                task.cancel()
            return


def _targets(candidates: Iterable[Candidate]) -> Iterator[Target]:
    """The candidates' targets one at a time: a router may rank hundreds, and few are tried.

    A function rather than a generator expression, which mypyc would build as a whole list.
    """
    for candidate in candidates:
        yield candidate.target
