"""ModelInfo, Price and Catalog lookups on hand-built models."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from orcarouter.catalog import Catalog, CatalogError, ModelInfo, Price, PriceTier


def _price(day: date, input_usd: str, output_usd: str) -> Price:
    return Price(day, Decimal(input_usd), Decimal(output_usd))


def _model(provider_id: str, model_id: str, prices: tuple[Price, ...] = ()) -> ModelInfo:
    return ModelInfo(
        provider_id=provider_id,
        model_id=model_id,
        name=model_id,
        kind="chat",
        family=None,
        context_window=8192,
        max_output=1024,
        input_modalities=("text",),
        output_modalities=("text",),
        capabilities=frozenset({"streaming"}),
        prices=prices,
        release_date=None,
    )


HISTORY = (
    _price(date(2025, 1, 1), "3", "15"),
    _price(date(2025, 6, 1), "2.5", "10"),
    _price(date(2026, 7, 2), "1.25", "5"),
)


@pytest.mark.parametrize(
    ("when", "expected_input"),
    [
        (date(2024, 12, 31), None),
        (date(2025, 1, 1), Decimal("3")),
        (date(2025, 5, 31), Decimal("3")),
        (date(2025, 6, 1), Decimal("2.5")),
        (date(2026, 7, 1), Decimal("2.5")),
        (date(2026, 7, 2), Decimal("1.25")),
        (date(2030, 1, 1), Decimal("1.25")),
    ],
)
def test_price_at_picks_the_newest_price_already_in_effect(
    when: date, expected_input: Decimal | None
) -> None:
    price = _model("p", "m", HISTORY).price_at(when)
    assert (None if price is None else price.input) == expected_input


def test_a_model_without_prices_has_no_price() -> None:
    assert _model("p", "m").price_at(date(2026, 1, 1)) is None


def test_prices_out_of_order_or_on_one_date_are_refused() -> None:
    with pytest.raises(CatalogError, match="p/m"):
        _model("p", "m", (HISTORY[1], HISTORY[0]))
    with pytest.raises(CatalogError):
        _model(
            "p",
            "m",
            (HISTORY[0], dataclasses.replace(HISTORY[1], effective_from=HISTORY[0].effective_from)),
        )


def test_tiers_apply_the_highest_threshold_exceeded() -> None:
    base = Price(
        date(2026, 1, 1),
        Decimal("1"),
        Decimal("2"),
        cache_read=Decimal("0.1"),
        tiers=(
            PriceTier(400_000, Decimal("4"), Decimal("8")),
            PriceTier(200_000, Decimal("2"), Decimal("4"), cache_read=Decimal("0.2")),
        ),
    )
    assert base.for_input_tokens(200_000) is base
    mid = base.for_input_tokens(200_001)
    assert (mid.input, mid.output, mid.cache_read) == (Decimal("2"), Decimal("4"), Decimal("0.2"))
    top = base.for_input_tokens(500_000)
    assert (top.input, top.cache_read, top.tiers) == (Decimal("4"), Decimal("0.1"), ())


def test_lookups_by_provider_model_and_bare_id() -> None:
    catalog = Catalog(
        [_model("a", "shared"), _model("b", "shared"), _model("a", "only-a")],
        aliases={"nice-name": "a/only-a"},
    )
    found = catalog.get("a", "only-a")
    assert found is not None and found.full_id == "a/only-a"
    assert catalog.get("b", "only-a") is None
    assert catalog.get("missing", "shared") is None
    assert [m.model_id for m in catalog.models_of("a")] == ["shared", "only-a"]
    assert catalog.models_of("missing") == ()
    assert catalog.providers_serving("shared") == ("a", "b")
    assert catalog.resolve_alias("nice-name") is found
    assert catalog.resolve_alias("a/only-a") is None
    assert len(catalog) == 3


def test_a_model_listed_twice_is_refused() -> None:
    with pytest.raises(CatalogError, match="a/m is listed twice"):
        Catalog([_model("a", "m"), _model("a", "m")])


def test_an_alias_to_an_unknown_model_is_refused() -> None:
    catalog = Catalog([_model("a", "m")])
    with pytest.raises(CatalogError, match="'a/other'"):
        catalog.with_aliases({"x": "a/other"})
    assert catalog.with_aliases({"x": "a/m"}).resolve_alias("x") is not None
    assert catalog.resolve_alias("x") is None
