"""Wiring: builds every part from the settings and serves them as one ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.accounts.credentials import CredentialCache, keyring_from
from orcarouter.accounts.keys import KeyCache
from orcarouter.accounts.rate_limits import InMemoryRateLimiter, RateLimiter
from orcarouter.accounts.shared_rate_limits import SharedRateLimiter
from orcarouter.api.asgi import Receive, Scope, Send, respond
from orcarouter.api.billing_routes import BillingRoutes
from orcarouter.api.catalog_routes import CatalogRoutes
from orcarouter.api.count_tokens import CountTokensEndpoint
from orcarouter.api.dialects import ANTHROPIC_MESSAGES, OPENAI_CHAT
from orcarouter.api.generation import GenerationEndpoint
from orcarouter.api.health import HealthEndpoints
from orcarouter.api.inference import (
    MAX_ATTEMPTS,
    GatewayContext,
    InferenceEndpoint,
    new_request_id,
)
from orcarouter.api.management import build_management_app
from orcarouter.api.metrics_route import MetricsEndpoint
from orcarouter.catalog import Catalog
from orcarouter.errors import GatewayError, MethodNotAllowed, RouteNotFound
from orcarouter.metering.database_budgets import DatabaseBudgets
from orcarouter.metering.pricing import Pricer
from orcarouter.metering.shared_budgets import SharedBudgets
from orcarouter.metering.stats import ModelStats
from orcarouter.metering.usage import UsageRecord
from orcarouter.metering.wallet import Budgets
from orcarouter.metering.writer import UsageWriter
from orcarouter.observability.logging import configure_logging
from orcarouter.observability.metrics import Metrics
from orcarouter.providers.probe import HealthProber
from orcarouter.providers.profiles import ProfileBook
from orcarouter.providers.registry import protocols
from orcarouter.routing.health import HealthBook, RetryBudget
from orcarouter.routing.resolve import ModelResolver
from orcarouter.routing.select import RouteSelector, chat_candidates
from orcarouter.routing.table import RouterTable
from orcarouter.settings import Settings, load_settings
from orcarouter.state.invalidation import Invalidation
from orcarouter.state.redis import SharedStore
from orcarouter.state.shared_health import HealthSync
from orcarouter.store.analytics import UsageAnalytics
from orcarouter.store.credentials import CredentialRepository
from orcarouter.store.database import Transactions, create_engine_for
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, UsageRepository
from orcarouter.store.routers import RouterRepository
from orcarouter.store.wallets import WalletRepository
from orcarouter.translate.codecs import codecs
from orcarouter.transport.client import UpstreamClient
from orcarouter.transport.egress import EgressFetcher, EgressPolicy

log = logging.getLogger(__name__)

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def served_models(settings: Settings, catalog: Catalog) -> dict[str, frozenset[str]]:
    """The bare model ids each provider serves: its configured list, else its catalog entries."""
    served: dict[str, frozenset[str]] = {}
    for provider in settings.providers:
        if provider.models is not None:
            served[provider.id] = provider.models
        else:
            served[provider.id] = frozenset(m.model_id for m in catalog.models_of(provider.id))
    return served


def load_catalog(settings: Settings, shipped: Catalog) -> Catalog:
    """The shipped catalog plus the operator's model entries and custom providers' models."""
    catalog = shipped.with_overrides(settings.model_overrides)
    for provider in settings.providers:
        if provider.models is not None:
            catalog = catalog.with_provider_models(provider.id, provider.models)
    return catalog


def _is_management(path: str) -> bool:
    """``/api/…`` paths other than the public catalog go to the management API."""
    return path.startswith("/api/") and not path.startswith("/api/public/")


@dataclass(slots=True)
class Runtime:
    """The parts that live inside the event loop, created at startup."""

    client: UpstreamClient
    writer: UsageWriter
    egress: EgressFetcher
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Gateway:
    """The ASGI application: routes by path, owns startup and shutdown."""

    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, *, worker: bool = False
    ) -> None:
        """``worker``: one of several processes serving this configuration together
        (``serve --workers N``), so state that must be exact is shared."""
        self.settings = settings
        self.catalog = load_catalog(settings, catalog or Catalog.load_shipped())
        self.engine: AsyncEngine = create_engine_for(settings.database_url)
        # The usage writer's transactions, on one thread of their own on SQLite.
        self.writes = Transactions(self.engine)
        self.keys = KeyRepository(self.engine, self.writes)
        self.usage = UsageRepository(self.engine, self.writes)
        self.key_cache = KeyCache(self.keys)
        self.metrics = Metrics()
        self.wallets = WalletRepository(self.engine, self.writes)
        # Shared by replicas through Redis when configured; otherwise per process (budgets
        # then stay exact through the database balance, read back every second).
        self.shared = _shared_store(settings, self.metrics)
        self.rate_limiter: RateLimiter
        self.budgets: Budgets | SharedBudgets | DatabaseBudgets
        if self.shared is not None:
            self.rate_limiter = SharedRateLimiter(
                self.shared,
                self.metrics,
                fallback_share=settings.redis.fallback_limit_share,
                lease_ttl=_longest_request(settings) + 60.0,
            )
            self.budgets = SharedBudgets(self.shared, self.metrics)
        else:
            self.rate_limiter = InMemoryRateLimiter()
            # Holds must be seen by every process spending from the same wallets: without
            # Redis that is the database, whenever more than one process may share it.
            shared_database = worker or self.engine.dialect.name != "sqlite"
            self.budgets = (
                DatabaseBudgets(self.engine, self.metrics) if shared_database else Budgets()
            )
        self.pricer = Pricer(
            self.catalog,
            {p.id: p.protocol for p in settings.providers},
            settings.pricing.markup_percent,
        )
        self.generation = GenerationEndpoint(self.key_cache, self.usage, self.keys)
        self.routers = RouterTable(RouterRepository(self.engine, self.writes))
        self.credentials = CredentialCache(
            CredentialRepository(self.engine, self.writes), keyring_from(settings)
        )
        served = served_models(settings, self.catalog)
        universe = chat_candidates(settings.providers, served, self.catalog)
        self.health_book = HealthBook(settings.health, targets=len(universe))
        if self.shared is not None:
            HealthSync(self.health_book, self.shared)
        self.retry_budget = RetryBudget(settings.health.retry_ratio, settings.health.retry_floor)
        self.management = build_management_app(
            self.engine,
            self.key_cache,
            settings,
            routers=self.routers,
            health=self.health_book,
            retry_budget=self.retry_budget,
            wallets=self.wallets,
            budgets=self.budgets,
        )
        if self.shared is not None:
            invalidation = Invalidation(
                self.shared,
                (
                    self.key_cache.refresh,
                    self.routers.refresh,
                    self.credentials.refresh,
                    self._refresh_budgets,
                ),
            )
            self.management = invalidation.wrap(self.management)
        self.resolver = ModelResolver(settings.providers, served, self.catalog.aliases)
        # A replica whose database or Redis is down still serves (known keys from memory, usage
        # journaled): it reports itself degraded, not unready, so that a shared outage does not
        # take every replica out of the load balancer at once.
        self.health = HealthEndpoints(
            {},
            degrading={
                "database": self._database_ready,
                "redis": self.shared.ping if self.shared is not None else None,
            },
            pending=lambda: self.runtime.writer.pending if self.runtime else 0,
        )
        self.stats = ModelStats()
        self.routes = RouteSelector(
            self.routers,
            universe,
            self.resolver,
            self.catalog,
            latency=self.stats,
            health=self.health_book,
        )
        self.catalog_api = CatalogRoutes(
            self.catalog,
            served,
            self.stats,
            keys=self.key_cache,
            routers=self.routers,
            health=self.health_book,
        )
        self.billing = BillingRoutes(self.key_cache, UsageAnalytics(self.engine))
        self.runtime: Runtime | None = None
        self._routes: dict[tuple[str, str], ASGIApp] = {
            ("GET", "/healthz"): self.health.healthz,
            ("GET", "/readyz"): self.health.readyz,
            **self.catalog_api.routes,
            **self.billing.routes,
            ("GET", GenerationEndpoint.path): self.generation,
            ("GET", MetricsEndpoint.path): MetricsEndpoint(
                self.metrics, self.key_cache, public=settings.metrics_public
            ),
        }
        # Routes whose last parameter may hold slashes (/v1/models/{provider/model}), matched by
        # prefix after the exact-path lookup misses.
        self._prefixed: tuple[tuple[str, str, ASGIApp], ...] = self.catalog_api.prefixed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI event."""
        kind = scope["type"]
        if kind == "http":
            route = self._routes.get((scope["method"], scope["path"]))
            if route is None:
                route = self._prefixed_route(scope["method"], scope["path"])
            if route is None and _is_management(scope["path"]):
                route = self.management
            if route is None:
                await self._not_found(scope, send)
                return
            await route(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        """Connect, load keys, start the background writer and the key refresher."""
        await self._connect_shared()
        client = UpstreamClient()
        egress_config = self.settings.egress
        egress = EgressFetcher(
            EgressPolicy(
                allow_private=egress_config.allow_private,
                internal_hosts=frozenset(egress_config.internal_hosts),
                max_bytes=egress_config.max_image_bytes,
                timeout=egress_config.timeout,
                max_redirects=egress_config.max_redirects,
            )
        )
        writer = UsageWriter(
            self.usage,
            self.keys,
            interval=self.settings.usage.write_interval,
            observers=(self.stats.observe,),
            price=self.pricer.record_cost,
            wallets=self.wallets,
            charged=self._charged,
        )
        writer.use_journal(
            self.settings.data_dir / "journal",
            fsync=self.settings.usage.journal_fsync,
            open_rows=self.settings.usage.open_mode,
        )
        writer.release_holds = isinstance(self.budgets, DatabaseBudgets)
        # Budgets first: the charges recovered below then release the holds a stopped
        # process left for them.
        await self._refresh_budgets()
        await writer.recover()  # what stopped processes left in the journal
        self.generation.writer = writer
        self.runtime = Runtime(client, writer, egress)
        await self.key_cache.refresh()
        await self.routers.refresh()
        await self.credentials.refresh()
        await self._sweep_open_records()
        context = GatewayContext(
            keys=self.key_cache,
            resolver=self.resolver,
            routes=self.routes,
            protocols=protocols(),
            codecs=codecs(),
            profiles=ProfileBook(self.catalog),
            client=client,
            writer=writer,
            health=self.health_book,
            budget=self.retry_budget,
            egress=egress,
            max_images=egress_config.max_images_per_request,
            max_body_bytes=self.settings.max_body_bytes,
            access_log=self.settings.access_log,
            limiter=self.rate_limiter,
            budgets=self.budgets,
            pricer=self.pricer,
            credentials=self.credentials,
            open_records=self.settings.usage.open_before_upstream,
        )
        for dialect in (OPENAI_CHAT, ANTHROPIC_MESSAGES):
            self._routes[("POST", dialect.path)] = InferenceEndpoint(dialect, context)
        self._routes[("POST", CountTokensEndpoint.path)] = CountTokensEndpoint(context)
        self.runtime.tasks = [
            asyncio.create_task(writer.run(), name="usage-writer"),
            asyncio.create_task(self.key_cache.run(), name="key-cache"),
            asyncio.create_task(self.routers.run(), name="router-table"),
            asyncio.create_task(self.credentials.run(), name="credential-cache"),
            asyncio.create_task(self._budgets_refresher(), name="budgets"),
            asyncio.create_task(self._sweeper(), name="open-records-sweep"),
        ]
        self.metrics.usage_spooled.set_function(lambda: writer.pending)
        if self.shared is not None:
            self.runtime.tasks.append(asyncio.create_task(self.shared.listen(), name="events"))
        if isinstance(self.budgets, SharedBudgets | DatabaseBudgets):
            self.runtime.tasks.append(asyncio.create_task(self.budgets.run(), name="holds"))
        interval = self.settings.health.probe_interval
        if interval is not None:
            prober = HealthProber(
                self.health_book,
                self.resolver.resolve,
                context.protocols,
                context.codecs,
                client,
                interval,
            )
            self.runtime.tasks.append(asyncio.create_task(prober.run(), name="health-probes"))
        settle_heap()

    async def shutdown(self) -> None:
        """Stop background work, drain the usage queue, close connections."""
        runtime = self.runtime
        if runtime is not None:
            for task in runtime.tasks:
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runtime.writer.close()
            if isinstance(self.budgets, SharedBudgets | DatabaseBudgets):
                await self.budgets.close()
            if isinstance(self.rate_limiter, SharedRateLimiter):
                await self.rate_limiter.aclose()
            await runtime.client.close()
            await runtime.egress.close()
        if self.shared is not None:
            await self.shared.close()
        await self.writes.close()
        await self.engine.dispose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _connect_shared(self) -> None:
        """Check Redis before serving: refuse to start without it unless told otherwise."""
        if self.shared is None:
            return
        if await self.shared.ping():
            self.metrics.up("redis", True)
            return
        where = _redis_location(self.settings.redis.url or "")
        if self.settings.redis.required_at_startup:
            raise RuntimeError(
                f"Redis at {where} does not answer; start it, or set "
                "ORCAROUTER_REDIS_OPTIONAL=1 to serve with per-process fallbacks until it does"
            )
        log.error("Redis at %s does not answer; serving degraded until it does", where)

    def _prefixed_route(self, method: str, path: str) -> ASGIApp | None:
        for route_method, prefix, route in self._prefixed:
            if method == route_method and path.startswith(prefix):
                return route
        return None

    def _sweep_age(self) -> float:
        configured = self.settings.usage.sweep_after
        if configured is not None:
            return configured
        longest = max((p.timeouts.total for p in self.settings.providers), default=900.0)
        return longest + 60.0

    async def _sweep_open_records(self) -> None:
        """Settle requests a stopped process left open (older than any live request can be)."""
        cutoff = utcnow() - timedelta(seconds=self._sweep_age())
        try:
            swept = await self.usage.sweep_open(cutoff)
        except Exception:
            log.warning("could not sweep open usage records", exc_info=True)
            return
        if swept:
            log.warning("settled %d requests left open by a stopped process", swept)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(self._sweep_age() / 2, 60.0))
            await self._sweep_open_records()

    def _charged(self, record: UsageRecord) -> None:
        """The writer committed a request's charge: the budgets see it in the balance now."""
        cost = record.cost_micros or 0
        self.budgets.written(
            record.workspace_id, record.key_id, cost, record.held, request_id=record.request_id
        )

    async def _refresh_budgets(self) -> None:
        """Read balances and key caps back (top-ups, other processes' charges)."""
        await self.budgets.refresh(self.wallets)

    async def _budgets_refresher(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.budgets.expire()
            await self._refresh_budgets()

    async def _database_ready(self) -> bool:
        try:
            async with asyncio.timeout(2.0), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # one line: a load balancer may poll this every second
            log.warning("readiness: database unreachable: %s", str(exc).split("\n", 1)[0])
            return False
        return True

    async def _not_found(self, scope: Scope, send: Send) -> None:
        path = scope.get("path", "")
        methods = [m for (m, p) in self._routes if p == path]
        methods += [m for (m, prefix, _) in self._prefixed if path.startswith(prefix)]
        error: GatewayError
        if methods:
            error = MethodNotAllowed(
                f"{scope['method']} is not allowed on {path}; use {methods[0]}"
            )
        else:
            error = RouteNotFound(f"no route {path}")
        anthropic = path.startswith("/v1/messages")
        body = error.anthropic_body() if anthropic else error.openai_body()
        await respond(send, error.status, body, [(b"x-orca-request-id", new_request_id().encode())])


def _shared_store(settings: Settings, metrics: Metrics) -> SharedStore | None:
    config = settings.redis
    if config.url is None:
        return None
    return SharedStore(
        config.url, prefix=config.key_prefix, retry_interval=config.retry_interval, metrics=metrics
    )


def _longest_request(settings: Settings) -> float:
    """The longest a request may take: every attempt of a full route at the longest total
    timeout (a concurrency slot of a replica that died is given back after that)."""
    totals = [p.timeouts.total for p in settings.providers]
    totals += [t.total for p in settings.providers for t in p.model_timeouts.values()]
    return MAX_ATTEMPTS * max(totals, default=900.0)


def _redis_location(url: str) -> str:
    """Host and port of a Redis URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or parts.path}:{parts.port or 6379}"


YOUNG_COLLECTION = 7_000  # net new container objects between young collections (CPython: 700)


def settle_heap() -> None:
    """Move what start-up built (modules, the catalog, caches: about 170k objects) out of the
    cyclic garbage collector's reach. A full collection walks every tracked object: over that
    heap it took about 60 ms here, and it came as a 75 ms p99 spike once enough survivors had
    piled up (about 60k requests into a benchmark run). Frozen objects are never collected;
    they are the ones that live as long as the process anyway.

    Then the young generation is collected after ``YOUNG_COLLECTION`` net new objects instead
    of 700. Requests leave no cycles behind (``api.server.Exchange.run``), so what a young
    collection walks is the requests in flight: at saturation 580 to 700 collections in 8 s
    (0.20 to 0.31 s, about 3 % of the core) walked the same live objects over and over; with
    this threshold, none. Cyclic garbage (an error's traceback, say) is still collected, a
    little later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])


def create_app() -> Gateway:
    """One worker's app for ``orcarouter serve --workers N`` (a uvicorn factory): settings from
    the environment the parent passed on (``ORCAROUTER_CONFIG`` included); the parent has
    already migrated the database and created the admin key."""
    settings = load_settings(None)
    configure_logging(settings.secrets())
    return Gateway(settings, worker=True)
