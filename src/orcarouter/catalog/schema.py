"""Validated shapes of catalog data: the shipped JSON file and operator override entries.

Used when data is loaded (start-up, config reload), never per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from orcarouter.catalog.errors import CatalogError

ModelKind = Literal["chat", "embedding", "image", "audio", "video"]
Modality = Literal["text", "audio", "image", "video", "pdf"]
Capability = Literal[
    "tools", "vision", "structured_output", "reasoning", "temperature", "streaming"
]
NonEmptyText = Annotated[str, Field(min_length=1)]

CATALOG_FORMAT = 1


def parse_usd(value: object) -> Decimal:
    """Read a USD amount from a decimal string, an int or (operator YAML) a float."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a decimal number written as a string, e.g. '2.5'")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite amount")
        value = repr(value)  # the shortest text that reads back as this float: what was typed
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError("must be a finite amount")
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


Usd = Annotated[Decimal, PlainValidator(parse_usd)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceTierEntry(_Strict):
    """Rates that replace the base rates once a request's input exceeds `above_tokens`."""

    above_tokens: PositiveInt
    input: Usd
    output: Usd
    cache_read: Usd | None = None
    cache_write: Usd | None = None


class PriceEntry(_Strict):
    """Prices in USD per million tokens, valid from `effective_from` until the next entry."""

    effective_from: date
    input: Usd
    output: Usd
    cache_read: Usd | None = None
    cache_write: Usd | None = None
    per_call: dict[NonEmptyText, Usd] = Field(default_factory=dict)
    tiers: tuple[PriceTierEntry, ...] = ()


def _check_price_dates(prices: Sequence[PriceEntry]) -> None:
    days = [price.effective_from for price in prices]
    if len(set(days)) != len(days):
        raise ValueError("two prices share one effective_from date")


class ModelEntry(_Strict):
    """One model as the shipped catalog file describes it."""

    name: NonEmptyText
    kind: ModelKind
    family: str | None = None
    release_date: str | None = None
    status: str | None = None
    context_window: PositiveInt | None = None
    max_input: PositiveInt | None = None
    max_output: PositiveInt | None = None
    input_modalities: tuple[Modality, ...] = ()
    output_modalities: tuple[Modality, ...] = ()
    capabilities: frozenset[Capability] = frozenset()
    prices: tuple[PriceEntry, ...] = ()

    @field_validator("prices")
    @classmethod
    def _unique_dates(cls, prices: tuple[PriceEntry, ...]) -> tuple[PriceEntry, ...]:
        _check_price_dates(prices)
        return prices


class ProviderEntry(_Strict):
    """One provider's block in the shipped catalog file."""

    name: str | None = None
    source_id: str | None = None
    models: dict[NonEmptyText, ModelEntry]


class CatalogDocument(_Strict):
    """The whole shipped catalog file (`data/catalog.json`)."""

    format: Literal[1]
    source: dict[str, str] = Field(default_factory=dict)
    providers: dict[NonEmptyText, ProviderEntry]
    aliases: dict[NonEmptyText, NonEmptyText] = Field(default_factory=dict)
    unresolved_base_models: tuple[str, ...] = ()


class ModelOverride(_Strict):
    """An operator's entry: changes fields of a catalog model or adds a custom model.

    Fields left out keep the catalog's value (or a default for a new model); `prices`,
    when given, replaces the model's whole price history; `streaming` adds or removes the
    `streaming` capability without having to restate the others.
    """

    provider: NonEmptyText
    model: NonEmptyText
    name: NonEmptyText | None = None
    kind: ModelKind | None = None
    family: str | None = None
    release_date: str | None = None
    status: str | None = None
    context_window: PositiveInt | None = None
    max_input: PositiveInt | None = None
    max_output: PositiveInt | None = None
    input_modalities: tuple[Modality, ...] | None = None
    output_modalities: tuple[Modality, ...] | None = None
    capabilities: frozenset[Capability] | None = None
    streaming: bool | None = None
    prices: tuple[PriceEntry, ...] | None = None

    @field_validator("prices")
    @classmethod
    def _unique_dates(cls, prices: tuple[PriceEntry, ...] | None) -> tuple[PriceEntry, ...] | None:
        if prices is not None:
            _check_price_dates(prices)
        return prices

    @model_validator(mode="after")
    def _required_not_null(self) -> ModelOverride:
        for name in _NOT_NULLABLE:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may be left out but not set to null")
        return self


# Fields every model has: an entry may leave them out, but not clear them.
_NOT_NULLABLE = (
    "name",
    "kind",
    "input_modalities",
    "output_modalities",
    "capabilities",
    "streaming",
    "prices",
)


def describe_validation_error(error: ValidationError, where: str) -> str:
    """Render a pydantic error as one line per bad field, each naming the field's path."""
    problems = []
    for detail in error.errors(include_url=False):
        path = ".".join(str(part) for part in detail["loc"]) or "(entry)"
        problems.append(f"{path}: {detail['msg']}")
    return f"{where}: " + "; ".join(problems)


def parse_document(raw: object) -> CatalogDocument:
    """Validate a decoded catalog file, raising `CatalogError` naming each bad field."""
    try:
        return CatalogDocument.model_validate(raw)
    except ValidationError as error:
        raise CatalogError(describe_validation_error(error, "catalog file")) from None


def parse_overrides(entries: Sequence[Mapping[str, object]]) -> tuple[ModelOverride, ...]:
    """Validate operator entries, raising `CatalogError` naming the entry and the bad field."""
    parsed = []
    for index, entry in enumerate(entries):
        try:
            parsed.append(ModelOverride.model_validate(entry))
        except ValidationError as error:
            where = f"catalog entry #{index + 1}"
            if isinstance(entry, Mapping):
                where += f" ({entry.get('provider', '?')}/{entry.get('model', '?')})"
            raise CatalogError(describe_validation_error(error, where)) from None
    return tuple(parsed)
