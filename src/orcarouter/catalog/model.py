"""The in-memory model catalog: what each provider serves, its limits, capabilities and prices.

Built once from the shipped data plus operator entries, then read on the request hot path:
every lookup is a dict lookup and nothing here mutates after construction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from orcarouter.catalog.errors import CatalogError
from orcarouter.catalog.schema import (
    CatalogDocument,
    ModelEntry,
    ModelKind,
    ModelOverride,
    PriceEntry,
    parse_document,
    parse_overrides,
)

SHIPPED_CATALOG: Final = "data/catalog.json"
# What a model without catalog data is assumed to do: pass requests through rather than
# reject them; an operator entry can say otherwise.
ASSUMED_CHAT_CAPABILITIES: Final = frozenset({"streaming", "temperature", "tools"})


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates that replace the base rates once a request's input exceeds `above_tokens`."""

    above_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


def _in_millionths(first: Decimal, second: Decimal) -> tuple[int, int] | None:
    """Two rates in millionths of their unit, or None when either is finer (or not finite)."""
    rates = (first * 1_000_000, second * 1_000_000)
    if all(rate.is_finite() and rate == rate.to_integral_value() for rate in rates):
        return int(rates[0]), int(rates[1])
    return None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens from `effective_from` on; `per_call` holds the other rates.

    `per_call` is keyed by the models.dev name of the rate (`reasoning`, `input_audio`,
    `output_audio` and `citation` per million such tokens; `request`, `image` in the unit
    models.dev gives them, which its data does not state).
    """

    effective_from: date
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    per_call: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    tiers: tuple[PriceTier, ...] = ()
    # ``input`` and ``output`` in millionths of a dollar per million tokens (so a request's
    # cost in 1e-12 dollars is an integer sum), or None when a rate is finer than that.
    micro_rates: tuple[int, int] | None = field(init=False, repr=False, compare=False)
    # The same for cache reads and writes (the input rate where the catalog has none).
    micro_cache_rates: tuple[int, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        read = self.cache_read if self.cache_read is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        object.__setattr__(self, "micro_rates", _in_millionths(self.input, self.output))
        object.__setattr__(self, "micro_cache_rates", _in_millionths(read, write))

    def for_input_tokens(self, input_tokens: int) -> Price:
        """The price that applies to a request with this many input tokens (tiers resolved)."""
        chosen = None
        for tier in self.tiers:
            if input_tokens > tier.above_tokens and (
                chosen is None or tier.above_tokens > chosen.above_tokens
            ):
                chosen = tier
        if chosen is None:
            return self
        return dataclasses.replace(
            self,
            input=chosen.input,
            output=chosen.output,
            cache_read=chosen.cache_read if chosen.cache_read is not None else self.cache_read,
            cache_write=chosen.cache_write if chosen.cache_write is not None else self.cache_write,
            tiers=(),
        )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model as served by one provider."""

    provider_id: str
    model_id: str
    name: str
    kind: ModelKind
    family: str | None
    context_window: int | None
    max_output: int | None
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    capabilities: frozenset[str]
    prices: tuple[Price, ...]  # oldest first
    release_date: str | None
    max_input: int | None = None
    status: str | None = None  # "alpha", "beta" or "deprecated" when the source says so

    def __post_init__(self) -> None:
        days = [price.effective_from for price in self.prices]
        if days != sorted(set(days)):
            raise CatalogError(f"{self.full_id}: prices must be ordered by distinct dates")

    @property
    def full_id(self) -> str:
        """The `provider/model` id clients may send."""
        return f"{self.provider_id}/{self.model_id}"

    def price_at(self, when: date) -> Price | None:
        """The newest price in effect on `when`, or None if none had started by then."""
        for price in reversed(self.prices):
            if price.effective_from <= when:
                return price
        return None


class Catalog:
    """An immutable index of models by provider, by bare model id and by alias."""

    __slots__ = ("_aliases", "_by_provider", "_models_of", "_serving")

    def __init__(
        self, models: Iterable[ModelInfo], aliases: Mapping[str, str] | None = None
    ) -> None:
        by_provider: dict[str, dict[str, ModelInfo]] = {}
        serving: dict[str, list[str]] = {}
        for info in models:
            provider_models = by_provider.setdefault(info.provider_id, {})
            if info.model_id in provider_models:
                raise CatalogError(f"model {info.full_id} is listed twice")
            provider_models[info.model_id] = info
            serving.setdefault(info.model_id, []).append(info.provider_id)
        self._by_provider = by_provider
        self._models_of = {pid: tuple(found.values()) for pid, found in by_provider.items()}
        self._serving = {model_id: tuple(pids) for model_id, pids in serving.items()}
        self._aliases: dict[str, ModelInfo] = {}
        for alias, target in (aliases or {}).items():
            provider_id, _, model_id = target.partition("/")
            resolved = self.get(provider_id, model_id)
            if resolved is None:
                raise CatalogError(f"alias {alias!r} points at unknown model {target!r}")
            self._aliases[alias] = resolved

    @classmethod
    def load_shipped(cls) -> Catalog:
        """The catalog shipped inside the package (`data/catalog.json`)."""
        text = resources.files("orcarouter.catalog").joinpath(SHIPPED_CATALOG).read_text("utf-8")
        return cls.from_document(json.loads(text))

    @classmethod
    def from_document(cls, raw: object) -> Catalog:
        """Build a catalog from a decoded catalog file, validating it."""
        document = parse_document(raw)
        return cls(_models_of_document(document), document.aliases)

    def get(self, provider_id: str, model_id: str) -> ModelInfo | None:
        """The model `model_id` of `provider_id`, if the catalog knows it."""
        provider_models = self._by_provider.get(provider_id)
        return None if provider_models is None else provider_models.get(model_id)

    def models_of(self, provider_id: str) -> tuple[ModelInfo, ...]:
        """Every model the catalog lists for `provider_id`."""
        return self._models_of.get(provider_id, ())

    def providers_serving(self, model_id: str) -> tuple[str, ...]:
        """The providers that list this bare model id (no provider prefix)."""
        return self._serving.get(model_id, ())

    def resolve_alias(self, alias: str) -> ModelInfo | None:
        """The model an alias (for example `anthropic/claude-haiku-4.5`) stands for."""
        return self._aliases.get(alias)

    @property
    def providers(self) -> tuple[str, ...]:
        """The ids of every provider with at least one model."""
        return tuple(self._by_provider)

    @property
    def aliases(self) -> Mapping[str, str]:
        """Every alias and the `provider/model` id it stands for."""
        return MappingProxyType({alias: info.full_id for alias, info in self._aliases.items()})

    def __iter__(self) -> Iterator[ModelInfo]:
        for provider_models in self._models_of.values():
            yield from provider_models

    def __len__(self) -> int:
        return sum(len(found) for found in self._models_of.values())

    def with_overrides(self, entries: Sequence[Mapping[str, object]]) -> Catalog:
        """A new catalog where operator entries change existing models or add custom ones."""
        models = {(info.provider_id, info.model_id): info for info in self}
        for override in parse_overrides(entries):
            key = (override.provider, override.model)
            current = models.get(key)
            models[key] = (
                _new_model(override) if current is None else _overridden(current, override)
            )
        return Catalog(models.values(), self.aliases)

    def with_provider_models(self, provider_id: str, model_ids: Iterable[str]) -> Catalog:
        """A new catalog that also lists these models of a provider, minimally if unknown."""
        added = [
            _minimal_model(provider_id, model_id)
            for model_id in dict.fromkeys(model_ids)
            if self.get(provider_id, model_id) is None
        ]
        return Catalog([*self, *added], self.aliases)

    def with_aliases(self, aliases: Mapping[str, str]) -> Catalog:
        """A new catalog with these extra aliases (`alias -> provider/model`) added."""
        return Catalog(self, {**self.aliases, **aliases})


def _price(entry: PriceEntry) -> Price:
    tiers = tuple(
        PriceTier(tier.above_tokens, tier.input, tier.output, tier.cache_read, tier.cache_write)
        for tier in entry.tiers
    )
    return Price(
        effective_from=entry.effective_from,
        input=entry.input,
        output=entry.output,
        cache_read=entry.cache_read,
        cache_write=entry.cache_write,
        per_call=MappingProxyType(dict(entry.per_call)),
        tiers=tiers,
    )


def _prices(entries: Iterable[PriceEntry]) -> tuple[Price, ...]:
    return tuple(sorted((_price(entry) for entry in entries), key=lambda p: p.effective_from))


def _model(provider_id: str, model_id: str, entry: ModelEntry) -> ModelInfo:
    return ModelInfo(
        provider_id=provider_id,
        model_id=model_id,
        name=entry.name,
        kind=entry.kind,
        family=entry.family,
        context_window=entry.context_window,
        max_output=entry.max_output,
        input_modalities=entry.input_modalities,
        output_modalities=entry.output_modalities,
        capabilities=frozenset(entry.capabilities),
        prices=_prices(entry.prices),
        release_date=entry.release_date,
        max_input=entry.max_input,
        status=entry.status,
    )


def _models_of_document(document: CatalogDocument) -> Iterator[ModelInfo]:
    for provider_id, provider in document.providers.items():
        for model_id, entry in provider.models.items():
            yield _model(provider_id, model_id, entry)


def _minimal_model(provider_id: str, model_id: str) -> ModelInfo:
    return ModelInfo(
        provider_id=provider_id,
        model_id=model_id,
        name=model_id,
        kind="chat",
        family=None,
        context_window=None,
        max_output=None,
        input_modalities=("text",),
        output_modalities=("text",),
        capabilities=ASSUMED_CHAT_CAPABILITIES,
        prices=(),
        release_date=None,
    )


def _new_model(override: ModelOverride) -> ModelInfo:
    base = _minimal_model(override.provider, override.model)
    if override.kind not in (None, "chat"):  # assume nothing about a non-chat model
        base = dataclasses.replace(
            base, capabilities=frozenset(), input_modalities=(), output_modalities=()
        )
    return _overridden(base, override)


_PLAIN_FIELDS: Final = (
    "name",
    "kind",
    "family",
    "release_date",
    "status",
    "context_window",
    "max_input",
    "max_output",
    "input_modalities",
    "output_modalities",
)


def _overridden(current: ModelInfo, override: ModelOverride) -> ModelInfo:
    given = override.model_fields_set
    changes: dict[str, Any] = {
        name: getattr(override, name) for name in _PLAIN_FIELDS if name in given
    }
    capabilities = set(current.capabilities)
    if override.capabilities is not None:
        streams = "streaming" in current.capabilities
        capabilities = set(override.capabilities) | ({"streaming"} if streams else set())
    if override.streaming is not None:
        capabilities.discard("streaming")
        capabilities.update({"streaming"} if override.streaming else set())
    changes["capabilities"] = frozenset(capabilities)
    if override.prices is not None:
        changes["prices"] = _prices(override.prices)
    return dataclasses.replace(current, **changes)
