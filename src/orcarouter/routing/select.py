"""``orcarouter/{name}`` to an ordered candidate list, from memory: router, pool, filter, strategy.

The pool of a router is every chat model an enabled provider serves that the router's
allowed-model globs admit (computed once per router version, with its models' prices in effect
and quality scores once a day); the filter drops what cannot serve this request or what the key
may not use; the strategy orders the rest. The router's default model, when it can serve the
request, is appended last as the safety net.

With a whole catalog behind a router (hundreds of models), the request's own work is kept off
the size of the pool where the answer allows: the filter's split for the key's allow-list and
the request's capabilities is kept (``Admissions``) with its costing table, strategies make a
``Ranked`` only for what is read, and health is asked about each candidate only while some
target is down.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from orcarouter.catalog import Catalog, ModelInfo
from orcarouter.errors import ModelNotFound, NoCandidate
from orcarouter.routing.candidates import (
    BY_MODEL_ID,
    Admissions,
    Candidate,
    Exclusion,
    describe_missing,
    unmet_need,
)
from orcarouter.routing.decision import RouteDecision
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import ModelResolver, Target
from orcarouter.routing.routers import RouterSpec, split_router_id
from orcarouter.routing.strategies import (
    STRATEGIES,
    CostTable,
    DayFigures,
    LatencySource,
    Ranked,
    Ranking,
    StrategyInput,
)
from orcarouter.routing.table import RouterTable
from orcarouter.settings import Provider


def chat_candidates(
    providers: Iterable[Provider], served: Mapping[str, Iterable[str]], catalog: Catalog
) -> tuple[Candidate, ...]:
    """Every chat model an enabled provider serves, in configuration then model-id order."""
    found: list[Candidate] = []
    for provider in providers:
        for model_id in sorted(served.get(provider.id, ())):
            info = catalog.get(provider.id, model_id)
            if info is not None and info.kind == "chat":
                found.append(Candidate(Target(provider, model_id), info))
    return tuple(found)


class Liveness(Protocol):
    """Which targets are ejected or cooling down (``routing.health.HealthBook`` fits)."""

    def is_live(self, model_id: str) -> bool: ...
    def all_live(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Pool:
    """A router's admitted candidates, their figures on ``today``, and its filter's splits
    (each with its costing table for the day)."""

    router: RouterSpec
    candidates: tuple[Candidate, ...]
    today: date
    day: DayFigures
    admissions: Admissions[CostTable]


class RouteSelector:
    """Decides where a request to ``orcarouter/{name}`` goes; pure over in-memory state."""

    def __init__(
        self,
        routers: RouterTable,
        universe: Iterable[Candidate],
        resolver: ModelResolver,
        catalog: Catalog,
        *,
        latency: LatencySource | None = None,
        rng: random.Random | None = None,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        health: Liveness | None = None,
    ) -> None:
        self._routers = routers
        self._universe = tuple(universe)
        self._resolver = resolver
        self._catalog = catalog
        self._latency = latency
        self._rng = rng
        self._today = today
        self._health = health
        self._pools: dict[tuple[str, str], _Pool] = {}

    @staticmethod
    def is_router(model: str) -> bool:
        """Whether ``model`` names a router (``orcarouter/…``)."""
        return split_router_id(model) is not None

    def route(
        self,
        workspace_id: str,
        model: str,
        needs: RequestNeeds,
        access: re.Pattern[str] | None = None,
    ) -> RouteDecision:
        """The ordered candidates for this request, among the models ``access`` (the key's
        compiled allow-list; None: every model) matches; 404 for an unknown or disabled
        router, 400 naming what was missing when no candidate can serve it."""
        name = split_router_id(model) or ""
        router = self._routers.get(workspace_id, name)
        if router is None:
            raise ModelNotFound(f"router '{model}' does not exist in this workspace", param="model")
        if not router.enabled:
            raise ModelNotFound(f"router '{model}' is disabled", param="model")
        today = self._today()
        pool = self._pool(router, today)
        kept, excluded, table = pool.admissions.split(needs, access)
        ctx = StrategyInput(needs, router, today, self._latency, self._rng, pool.day, table)
        ranked = STRATEGIES[router.strategy](kept, ctx) if kept else Ranking.of(())
        default = self._default(router, needs, access, ranked)
        if default is not None:
            ranked = ranked.then(Ranked(default, "default model"))
        if not ranked:
            missing = describe_missing(excluded) or "the router admits no served chat model"
            raise NoCandidate(
                f"no model behind '{model}' can serve this request: {missing}", param="model"
            )
        ranked = self._healthy(ranked, excluded)
        return RouteDecision(
            router=router.model_id,
            strategy=router.strategy,
            ranked=ranked,
            excluded=tuple(excluded),
            default_model=default.model_id if default is not None else None,
        )

    def _healthy(self, ranked: Ranking, excluded: list[Exclusion]) -> Ranking:
        """Leave out ejected or cooling-down targets, unless that would leave nothing: then
        every candidate stays in its order (better a try than a certain failure)."""
        health = self._health
        if health is None or health.all_live():
            return ranked
        live = [health.is_live(c.model_id) for c in ranked.candidates]
        if all(live) or not any(live):
            return ranked
        for candidate, is_live in zip(ranked.candidates, live, strict=True):
            if not is_live:
                excluded.append(Exclusion(candidate.model_id, "health", "ejected or cooling down"))
        return ranked.only([i for i, is_live in enumerate(live) if is_live])

    def _pool(self, router: RouterSpec, today: date) -> _Pool:
        """The models the router admits, with their figures for today (both kept until the
        router changes, the figures until the day does)."""
        key = (router.workspace_id, router.name)
        pool = self._pools.get(key)
        if pool is None or pool.router is not router:
            admitted = tuple(  # in model-id order, which strategies sort into at no cost
                sorted((c for c in self._universe if router.admits(c.model_id)), key=BY_MODEL_ID)
            )
            pool = self._pools[key] = self._day_pool(router, admitted, today)
        elif pool.today != today:
            pool = self._pools[key] = self._day_pool(router, pool.candidates, today)
        return pool

    def _day_pool(
        self, router: RouterSpec, candidates: tuple[Candidate, ...], today: date
    ) -> _Pool:
        day = DayFigures()
        ctx = StrategyInput(RequestNeeds(0), router, today, day=day)
        return _Pool(router, candidates, today, day, Admissions(candidates, _table_for(ctx)))

    def _default(
        self,
        router: RouterSpec,
        needs: RequestNeeds,
        access: re.Pattern[str] | None,
        ranked: Ranking,
    ) -> Candidate | None:
        if router.default_model is None:
            return None
        try:
            target = self._resolver.resolve(router.default_model)
        except ModelNotFound:
            return None
        if any(c.model_id == target.model_id for c in ranked.candidates):
            return None
        if access is not None and access.fullmatch(target.model_id) is None:
            return None
        info = self._catalog.get(target.provider.id, target.upstream_model) or _unknown(target)
        if unmet_need(info, needs) is not None:
            return None
        return Candidate(target, info)


def first_live(
    targets: Iterable[Target],
    health: Liveness,
    limit: int,
    reached_as: Callable[[Target], str] | None = None,
) -> tuple[Target, ...]:
    """The first ``limit`` distinct targets that are live (under their model id, and under
    ``reached_as`` when given), or the first distinct ones when none is; reads no further."""
    everything_live = health.all_live()
    seen: set[str] = set()
    first: list[Target] = []
    live: list[Target] = []
    for target in targets:
        if target.model_id in seen:
            continue
        seen.add(target.model_id)
        if len(first) < limit:
            first.append(target)
        if everything_live or (
            health.is_live(target.model_id)
            and (reached_as is None or health.is_live(reached_as(target)))
        ):
            live.append(target)
            if len(live) == limit:
                break
    return tuple(live or first)


def _table_for(ctx: StrategyInput) -> Callable[[tuple[Candidate, ...]], CostTable]:
    """Makes a split's costing table from the day's figures in ``ctx``."""
    return lambda candidates: CostTable.of(candidates, ctx)


def _unknown(target: Target) -> ModelInfo:
    return ModelInfo(
        provider_id=target.provider.id,
        model_id=target.upstream_model,
        name=target.upstream_model,
        kind="chat",
        family=None,
        context_window=None,
        max_output=None,
        input_modalities=("text",),
        output_modalities=("text",),
        capabilities=frozenset({"streaming", "tools"}),
        prices=(),
        release_date=None,
    )
