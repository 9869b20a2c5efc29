"""The catalog shipped in the package: complete, parseable, and priced in decimals."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from importlib import resources

import pytest

from orcarouter.catalog import Catalog
from orcarouter.catalog.providers import WELL_KNOWN_PROVIDERS

SNAPSHOT = date(2026, 7, 2)


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.load_shipped()


def _shipped_text() -> str:
    return resources.files("orcarouter.catalog").joinpath("data/catalog.json").read_text("utf-8")


def _refuse_float(text: str) -> Decimal:
    raise AssertionError(f"float {text} in the shipped catalog")


def test_every_well_known_provider_ships_models(shipped: Catalog) -> None:
    assert set(shipped.providers) == {spec.id for spec in WELL_KNOWN_PROVIDERS}
    for provider_id in shipped.providers:
        assert shipped.models_of(provider_id), provider_id


def test_shipped_file_holds_no_floats() -> None:
    json.loads(_shipped_text(), parse_float=_refuse_float)


def test_every_shipped_price_parses_to_the_decimal_written(shipped: Catalog) -> None:
    raw = json.loads(_shipped_text())
    priced = 0
    for info in shipped:
        entries = raw["providers"][info.provider_id]["models"][info.model_id].get("prices", [])
        assert len(entries) == len(info.prices)
        for entry, price in zip(entries, info.prices, strict=True):
            priced += 1
            assert price.effective_from == date.fromisoformat(entry["effective_from"])
            assert price.input == Decimal(entry["input"]) >= 0
            assert price.output == Decimal(entry["output"]) >= 0
            for name in ("cache_read", "cache_write"):
                value = getattr(price, name)
                assert value == (Decimal(entry[name]) if name in entry else None)
            assert dict(price.per_call) == {
                key: Decimal(text) for key, text in entry.get("per_call", {}).items()
            }
            assert all(isinstance(v, Decimal) for v in price.per_call.values())
    assert priced > 500


def test_shipped_prices_take_effect_on_the_snapshot_date(shipped: Catalog) -> None:
    sonnet = shipped.get("anthropic", "claude-sonnet-4-5")
    assert sonnet is not None
    assert sonnet.price_at(date(2026, 7, 1)) is None
    price = sonnet.price_at(SNAPSHOT)
    assert price is not None
    assert (price.input, price.output) == (Decimal("3"), Decimal("15"))
    assert (price.cache_read, price.cache_write) == (Decimal("0.3"), Decimal("3.75"))


def test_long_context_tier_applies_above_its_threshold(shipped: Catalog) -> None:
    gpt = shipped.get("openai", "gpt-5.4")
    assert gpt is not None
    price = gpt.price_at(SNAPSHOT)
    assert price is not None and price.tiers
    threshold = price.tiers[0].above_tokens
    assert price.for_input_tokens(threshold).input == price.input
    assert price.for_input_tokens(threshold + 1).input > price.input


def test_providers_serving_agrees_with_each_providers_models(shipped: Catalog) -> None:
    for info in shipped:
        assert info.provider_id in shipped.providers_serving(info.model_id)
        assert shipped.get(info.provider_id, info.model_id) is info
    assert set(shipped.providers_serving("openai/gpt-oss-120b")) >= {"groq", "openrouter"}
    assert shipped.providers_serving("no-such-model") == ()


def test_aliases_reach_models_under_other_ids(shipped: Catalog) -> None:
    assert shipped.aliases
    for alias, target in shipped.aliases.items():
        info = shipped.resolve_alias(alias)
        assert info is not None and info.full_id == target != alias
    haiku = shipped.resolve_alias("anthropic/claude-haiku-4.5")
    assert haiku is not None and haiku.full_id == "anthropic/claude-haiku-4-5"


def test_kinds_and_capabilities_follow_the_modalities(shipped: Catalog) -> None:
    embedding = shipped.get("openai", "text-embedding-3-small")
    whisper = shipped.get("groq", "whisper-large-v3")
    claude = shipped.get("anthropic", "claude-sonnet-4-5")
    assert embedding is not None and whisper is not None and claude is not None
    assert embedding.kind == "embedding" and "streaming" not in embedding.capabilities
    assert whisper.kind == "audio"
    assert claude.kind == "chat"
    assert {"tools", "vision", "streaming"} <= claude.capabilities
    for info in shipped:
        assert ("streaming" in info.capabilities) == (info.kind == "chat"), info.full_id
        if "image" in info.input_modalities:
            assert "vision" in info.capabilities, info.full_id
