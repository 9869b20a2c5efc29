"""CPU of routing one request through ``orcarouter/auto``, in-process, by the size of the pool.

A router ranks every chat model its providers serve, so its cost grows with the catalog behind
it, which ``bench.py`` does not show: its providers list one model each. This builds the pool
the gateway would for providers that list no models (they serve their whole entry in the
shipped catalog), then times what each request through a router pays: the selector's
decision (with a health book, as the gateway has, no target down), its reason for the usage
record, its response header and the live targets it would try. Keys either allow every model
or only one (then the rest are excluded, and recorded as such).

Usage: ``.venv/bin/python bench/routing.py [--providers openai,anthropic,google]
[--strategies cheapest balanced] [--requests 2000]``; several ``--providers`` lists may be given.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from orcarouter.api.inference import MAX_ATTEMPTS
from orcarouter.catalog import Catalog
from orcarouter.routing.candidates import Candidate
from orcarouter.routing.health import HealthBook
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import ModelResolver
from orcarouter.routing.routers import RouterSpec, StoredRouter
from orcarouter.routing.select import RouteSelector, chat_candidates, first_live
from orcarouter.routing.table import RouterTable
from orcarouter.settings import Provider, TimeoutsConfig

PROTOCOLS = {"anthropic": "anthropic", "google": "gemini"}  # the rest speak OpenAI's


class _NoStore:
    """The routers' store: empty (the one router is put in memory)."""

    async def all(self) -> Sequence[StoredRouter]:
        return []

    async def version(self) -> tuple[int, datetime | None]:
        return 0, None


def _selector(
    catalog: Catalog, provider_ids: Sequence[str], strategy: str
) -> tuple[RouteSelector, tuple[Candidate, ...]]:
    """The selector for one ``auto`` router with this strategy, and the pool behind it."""
    providers = tuple(
        Provider(
            id=pid,
            protocol=PROTOCOLS.get(pid, "openai"),  # type: ignore[arg-type]
            base_url="http://127.0.0.1:9",
            api_key="unused",
            models=None,
            headers={},
            timeouts=TimeoutsConfig(),
        )
        for pid in provider_ids
    )
    served = {p.id: frozenset(m.model_id for m in catalog.models_of(p.id)) for p in providers}
    universe = chat_candidates(providers, served, catalog)
    routers = RouterTable(_NoStore())
    routers.replace([RouterSpec("ws", "auto", strategy)])  # type: ignore[arg-type]
    resolver = ModelResolver(providers, served, catalog.aliases)
    selector = RouteSelector(routers, universe, resolver, catalog, health=HealthBook())
    return selector, universe


def _request(
    selector: RouteSelector, needs: RequestNeeds, access: re.Pattern[str] | None
) -> Callable[[], None]:
    """What one request through the router pays: the decision, its record, its header and
    the targets it would try."""
    health = HealthBook()

    def route() -> None:
        decision = selector.route("ws", "orcarouter/auto", needs, access)
        decision.reason_json()
        decision.header()
        first_live((c.target for c in decision.candidates), health, MAX_ATTEMPTS)

    return route


def _time(route: Callable[[], None], requests: int) -> float:
    """Process CPU µs per call, after a warm-up."""
    for _ in range(min(requests, 200)):
        route()
    start = time.process_time()
    for _ in range(requests):
        route()
    return (time.process_time() - start) / requests * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--providers",
        action="append",
        help="comma-separated catalog provider ids (default: openai,anthropic,google)",
    )
    parser.add_argument("--strategies", nargs="+", default=["cheapest", "balanced", "quality"])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    catalog = Catalog.load_shipped()
    needs = RequestNeeds(prompt_tokens=20, max_tokens=100)
    print("| providers | candidates | strategy | µs/request, key allows all | key allows one |")
    print("|---|---|---|---|---|")
    for listed in args.providers or ["openai,anthropic,google"]:
        provider_ids = listed.split(",")
        for strategy in args.strategies:
            selector, pool = _selector(catalog, provider_ids, strategy)
            one = pool[0].model_id
            cells = [
                f"{_time(_request(selector, needs, access), args.requests):,.0f}"
                for access in (None, re.compile(re.escape(one)))
            ]
            print(f"| {listed} | {len(pool)} | {strategy} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
