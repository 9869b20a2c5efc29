"""``orcarouter/{name}`` to an ordered candidate list, from memory: router, pool, filter, strategy.

The pool of a router is every chat model an enabled provider serves that the router's
allowed-model globs admit (computed once per router version, with its models' prices in effect
and quality scores once a day); the filter drops what cannot
serve this request or what the key may not use; the strategy orders the rest. The router's
default model, when it can serve the request, is appended last as the safety net.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from orcarouter.catalog import Catalog, ModelInfo
from orcarouter.errors import InvalidRequest, ModelNotFound
from orcarouter.routing.candidates import (
    BY_MODEL_ID,
    Candidate,
    Exclusion,
    describe_missing,
    filter_candidates,
    unmet_need,
)
from orcarouter.routing.decision import RouteDecision
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import ModelResolver, Target
from orcarouter.routing.routers import RouterSpec, split_router_id
from orcarouter.routing.strategies import (
    STRATEGIES,
    DayFigures,
    LatencySource,
    Ranked,
    StrategyInput,
)
from orcarouter.routing.table import RouterTable
from orcarouter.settings import Provider


class NoCandidate(InvalidRequest):
    """No model behind the router can serve this request; the message says what was missing."""

    code = "no_candidate"


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


@dataclass(frozen=True, slots=True)
class _Pool:
    """A router's admitted candidates, and their figures on ``today``."""

    router: RouterSpec
    candidates: tuple[Candidate, ...]
    today: date
    day: DayFigures


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
        live: Callable[[str], bool] | None = None,
    ) -> None:
        self._routers = routers
        self._universe = tuple(universe)
        self._resolver = resolver
        self._catalog = catalog
        self._latency = latency
        self._rng = rng
        self._today = today
        self._live = live
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
        allowed: Callable[[str], bool],
    ) -> RouteDecision:
        """The ordered candidates for this request; 404 for an unknown or disabled router,
        400 naming what was missing when no candidate can serve it."""
        name = split_router_id(model) or ""
        router = self._routers.get(workspace_id, name)
        if router is None:
            raise ModelNotFound(f"router '{model}' does not exist in this workspace", param="model")
        if not router.enabled:
            raise ModelNotFound(f"router '{model}' is disabled", param="model")
        today = self._today()
        pool = self._pool(router, today)
        kept, excluded = filter_candidates(pool.candidates, needs, allowed)
        ctx = StrategyInput(needs, router, today, self._latency, self._rng, pool.day)
        ranked = STRATEGIES[router.strategy](kept, ctx) if kept else []
        default = self._default(router, needs, allowed, ranked)
        if default is not None:
            ranked.append(Ranked(default, "default model"))
        if not ranked:
            missing = describe_missing(excluded) or "the router admits no served chat model"
            raise NoCandidate(
                f"no model behind '{model}' can serve this request: {missing}", param="model"
            )
        ranked = self._healthy(ranked, excluded)
        return RouteDecision(
            router=router.model_id,
            strategy=router.strategy,
            ranked=tuple(ranked),
            excluded=tuple(excluded),
            default_model=default.model_id if default is not None else None,
        )

    def _healthy(self, ranked: list[Ranked], excluded: list[Exclusion]) -> list[Ranked]:
        """Leave out ejected or cooling-down targets, unless that would leave nothing: then
        every candidate stays in its order (better a try than a certain failure)."""
        live = self._live
        if live is None:
            return ranked
        healthy = [r for r in ranked if live(r.candidate.model_id)]
        if not healthy or len(healthy) == len(ranked):
            return ranked
        for r in ranked:
            if not live(r.candidate.model_id):
                excluded.append(
                    Exclusion(r.candidate.model_id, "health", "ejected or cooling down")
                )
        return healthy

    def _pool(self, router: RouterSpec, today: date) -> _Pool:
        """The models the router admits, with their figures for today (both kept until the
        router changes, the figures until the day does)."""
        key = (router.workspace_id, router.name)
        pool = self._pools.get(key)
        if pool is None or pool.router is not router:
            admitted = tuple(  # in model-id order, which strategies sort into at no cost
                sorted((c for c in self._universe if router.admits(c.model_id)), key=BY_MODEL_ID)
            )
            pool = self._pools[key] = _Pool(router, admitted, today, DayFigures())
        elif pool.today != today:
            pool = self._pools[key] = _Pool(router, pool.candidates, today, DayFigures())
        return pool

    def _default(
        self,
        router: RouterSpec,
        needs: RequestNeeds,
        allowed: Callable[[str], bool],
        ranked: list[Ranked],
    ) -> Candidate | None:
        if router.default_model is None:
            return None
        try:
            target = self._resolver.resolve(router.default_model)
        except ModelNotFound:
            return None
        if any(r.candidate.model_id == target.model_id for r in ranked):
            return None
        if not allowed(target.model_id):
            return None
        info = self._catalog.get(target.provider.id, target.upstream_model) or _unknown(target)
        if unmet_need(info, needs) is not None:
            return None
        return Candidate(target, info)


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
