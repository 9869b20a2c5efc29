"""Small catalogs, providers and routers for the routing unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import cast

from orcarouter.catalog import Catalog, ModelInfo, Price
from orcarouter.routing.candidates import Candidate
from orcarouter.routing.resolve import ModelResolver, Target
from orcarouter.routing.routers import RouterSpec, compile_globs
from orcarouter.routing.select import chat_candidates
from orcarouter.settings import Provider, TimeoutsConfig

TODAY = date(2026, 6, 1)
CHAT = frozenset({"streaming", "tools", "vision", "structured_output"})


def provider(provider_id: str) -> Provider:
    return Provider(
        id=provider_id,
        protocol="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        models=None,
        headers={},
        timeouts=TimeoutsConfig(),
    )


def model(
    model_id: str,
    price_in: str | None,
    price_out: str | None = None,
    *,
    provider_id: str = "p",
    caps: frozenset[str] = CHAT,
    context: int | None = 128_000,
    max_output: int | None = 16_384,
    released: str | None = "2025-01-01",
    kind: str = "chat",
) -> ModelInfo:
    prices: tuple[Price, ...] = ()
    if price_in is not None:
        prices = (Price(date(2024, 1, 1), Decimal(price_in), Decimal(price_out or price_in)),)
    return ModelInfo(
        provider_id=provider_id,
        model_id=model_id,
        name=model_id,
        kind=kind,  # type: ignore[arg-type]
        family=None,
        context_window=context,
        max_output=max_output,
        input_modalities=("text", "image"),
        output_modalities=("text",),
        capabilities=caps,
        prices=prices,
        release_date=released,
    )


def candidates(*infos: ModelInfo) -> list[Candidate]:
    return [Candidate(Target(provider(i.provider_id), i.model_id), i) for i in infos]


def spec(strategy: str = "cheapest", **fields: object) -> RouterSpec:
    allowed = tuple(cast(Iterable[str], fields.pop("allowed_models", ())))
    return RouterSpec(
        workspace_id=str(fields.pop("workspace_id", "ws")),
        name=str(fields.pop("name", "r")),
        strategy=strategy,  # type: ignore[arg-type]
        allowed_models=allowed,
        matcher=compile_globs(allowed),
        **fields,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Figures:
    ttft_p50_ms: int | None
    output_tok_per_sec: float | None


class FakeLatency:
    def __init__(self, figures: dict[str, Figures]) -> None:
        self._figures = figures

    def latency(self, model: str) -> Figures:
        return self._figures.get(model, Figures(None, None))


def world(*infos: ModelInfo) -> tuple[Catalog, ModelResolver, list[Candidate]]:
    catalog = Catalog(infos)
    providers = {i.provider_id: provider(i.provider_id) for i in infos}
    served: dict[str, list[str]] = {}
    for info in infos:
        served.setdefault(info.provider_id, []).append(info.model_id)
    resolver = ModelResolver(providers.values(), served)
    return catalog, resolver, list(chat_candidates(providers.values(), served, catalog))


class NoRouterSource:
    """A router store with nothing in it (the tests put their routers in memory)."""

    async def all(self) -> list[object]:
        return []

    async def version(self) -> tuple[int, None]:
        return (0, None)
