"""Building the catalog from models.dev data, and refreshing it without losing price history."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orcarouter.catalog import Catalog, CatalogError, build_catalog, refresh_catalog
from orcarouter.catalog.models_dev import usd_text
from orcarouter.catalog.providers import ProviderSpec

VENDOR = ProviderSpec(
    "vendor", "Vendor", "openai", "https://vendor.test/v1", "VENDOR_KEY", "vendor-ai"
)
HUB = ProviderSpec("hub", "Hub", "openai", "https://hub.test/v1", "HUB_KEY", "hub")
PROVIDERS = (VENDOR, HUB)
JULY = date(2026, 7, 2)


def _chat_model() -> dict[str, Any]:
    return {
        "name": "Chat One",
        "family": "chat",
        "release_date": "2026-01-15",
        "attachment": True,
        "tool_call": True,
        "reasoning": False,
        "temperature": True,
        "structured_output": True,
        "limit": {"context": 200000, "output": 8192, "input": 0},
        "modalities": {"input": ["text", "image"], "output": ["text"]},
        "cost": {
            "input": 3.0,
            "output": 15,
            "cache_read": 0.3,
            "cache_write": 3.75,
            "request": 0.005,
            "tiers": [{"input": 6, "output": 22.5, "tier": {"size": 200000, "type": "context"}}],
        },
    }


def _models_dev() -> dict[str, Any]:
    chat = _chat_model()
    return {
        "source": "example/models (MIT), commit abcdef1234567 (2026-07-02)",
        "providers": {
            "vendor-ai": {
                "name": "Vendor AI",
                "models": {
                    "chat-1": chat,
                    "embed-1": {
                        "name": "Embed",
                        "modalities": {"input": ["text"], "output": ["text"]},
                        "limit": {"context": 8191, "output": 3072},
                        "cost": {"input": 0.02, "output": 0},
                    },
                    "speak-1": {
                        "name": "Speak",
                        "modalities": {"input": ["text"], "output": ["audio"]},
                        "cost": {"input": 1e-07, "output": 12},
                    },
                    "see-1": {
                        "name": "See",
                        "attachment": False,
                        "modalities": {"input": ["text", "image"], "output": ["text"]},
                    },
                    "hear-1": {"modalities": {"input": ["audio"], "output": ["text"]}},
                    "ghost": {"base_model": "vendor-ai/ghost", "cost": {"input": 1, "output": 2}},
                },
            },
            "hub": {
                "name": "Hub",
                "models": {
                    "vendor/chat-1": {
                        "base_model": "vendor-ai/chat-1",
                        "base_model_omit": ["limit.output"],
                        "limit": {"context": 100000},
                        "cost": {"input": 3.5, "output": 16, "cached_input": 0.35},
                    },
                },
            },
            "orcarouter": {
                "models": {
                    "vendor/chat-1.0": {"base_model": "vendor-ai/chat-1"},
                    "vendor/chat-1": {"base_model": "vendor-ai/chat-1"},
                    "vendor/gone": {"base_model": "vendor-ai/gone"},
                }
            },
        },
    }


def test_models_are_converted_to_the_catalog_form() -> None:
    built = build_catalog(_models_dev(), PROVIDERS, JULY)
    chat = built["providers"]["vendor"]["models"]["chat-1"]
    assert chat["kind"] == "chat"
    assert chat["capabilities"] == [
        "streaming",
        "structured_output",
        "temperature",
        "tools",
        "vision",
    ]
    assert (chat["context_window"], chat["max_output"]) == (200000, 8192)
    assert "max_input" not in chat  # a limit of 0 means unknown
    assert chat["prices"] == [
        {
            "effective_from": "2026-07-02",
            "input": "3",
            "output": "15",
            "cache_read": "0.3",
            "cache_write": "3.75",
            "per_call": {"request": "0.005"},
            "tiers": [{"above_tokens": 200000, "input": "6", "output": "22.5"}],
        }
    ]
    vendor = built["providers"]["vendor"]["models"]
    assert vendor["embed-1"]["kind"] == "embedding"
    assert vendor["speak-1"]["kind"] == vendor["hear-1"]["kind"] == "audio"
    assert vendor["speak-1"]["prices"][0]["input"] == "0.0000001"
    assert vendor["see-1"]["capabilities"] == ["streaming", "vision"]
    assert "prices" not in vendor["see-1"]
    assert built["source"]["commit"] == "abcdef1234567"


def test_base_models_lend_their_facts_but_not_their_price() -> None:
    built = build_catalog(_models_dev(), PROVIDERS, JULY)
    hub_chat = built["providers"]["hub"]["models"]["vendor/chat-1"]
    assert hub_chat["name"] == "Chat One"
    assert hub_chat["context_window"] == 100000  # its own limit wins
    assert "max_output" not in hub_chat  # dropped by base_model_omit
    assert "tools" in hub_chat["capabilities"]
    assert hub_chat["prices"][0] == {
        "effective_from": "2026-07-02",
        "input": "3.5",
        "output": "16",
        "cache_read": "0.35",
    }
    ghost = built["providers"]["vendor"]["models"]["ghost"]
    assert ghost["name"] == "ghost" and ghost["kind"] == "chat"
    assert built["unresolved_base_models"] == ["vendor/ghost"]


def test_aliases_map_the_alias_providers_ids_onto_catalog_models() -> None:
    built = build_catalog(_models_dev(), PROVIDERS, JULY)
    assert built["aliases"] == {"vendor/chat-1.0": "vendor/chat-1"}
    catalog = Catalog.from_document(built)
    alias = catalog.resolve_alias("vendor/chat-1.0")
    assert alias is not None and alias.full_id == "vendor/chat-1"


def test_a_provider_missing_from_the_source_is_an_error() -> None:
    lost = ProviderSpec("lost", "Lost", "openai", "https://lost.test", "LOST_KEY", "lost")
    with pytest.raises(CatalogError, match="'lost' is not in the snapshot"):
        build_catalog(_models_dev(), (lost,), JULY)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (15, "15"),
        (0.1, "0.1"),
        (0.0028, "0.0028"),
        (1e-07, "0.0000001"),
        ("2.50", "2.5"),
    ],
)
def test_prices_become_plain_decimal_strings(value: object, text: str) -> None:
    assert usd_text(value) == text


@pytest.mark.parametrize("value", [True, -1, float("nan"), None, "free"])
def test_values_that_are_not_prices_are_refused(value: object) -> None:
    with pytest.raises((CatalogError, ArithmeticError)):
        usd_text(value)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _chat_prices(dest: Path) -> list[dict[str, Any]]:
    document = json.loads(dest.read_text(encoding="utf-8"))
    prices: list[dict[str, Any]] = document["providers"]["vendor"]["models"]["chat-1"]["prices"]
    return prices


def test_refresh_keeps_older_prices_when_a_price_changes(tmp_path: Path) -> None:
    source, dest = tmp_path / "models-dev.json", tmp_path / "catalog.json"
    snapshot = _models_dev()
    first = refresh_catalog(_write(source, snapshot), dest, providers=PROVIDERS)
    assert (first.providers, first.models, first.added, first.repriced) == (2, 7, 7, 0)
    assert str(first).startswith(f"{dest} (2 providers, 7 models: 7 added")
    assert [p["effective_from"] for p in _chat_prices(dest)] == ["2026-07-02"]

    cheaper = copy.deepcopy(snapshot)
    cheaper["providers"]["vendor-ai"]["models"]["chat-1"]["cost"]["input"] = 2.0
    del cheaper["providers"]["vendor-ai"]["models"]["speak-1"]
    second = refresh_catalog(
        _write(source, cheaper), dest, effective_from=date(2026, 9, 1), providers=PROVIDERS
    )
    assert (second.models, second.added, second.removed, second.repriced) == (6, 0, 1, 1)
    assert [(p["effective_from"], p["input"]) for p in _chat_prices(dest)] == [
        ("2026-07-02", "3"),
        ("2026-09-01", "2"),
    ]

    third = refresh_catalog(source, dest, effective_from=date(2026, 10, 1), providers=PROVIDERS)
    assert third.repriced == 0
    assert [p["effective_from"] for p in _chat_prices(dest)] == ["2026-07-02", "2026-09-01"]

    chat = Catalog.from_document(json.loads(dest.read_text("utf-8"))).get("vendor", "chat-1")
    assert chat is not None
    old, new = chat.price_at(date(2026, 8, 31)), chat.price_at(date(2026, 10, 5))
    assert old is not None and new is not None
    assert (old.input, new.input) == (Decimal("3"), Decimal("2"))


def test_refresh_on_the_same_date_replaces_that_dates_price(tmp_path: Path) -> None:
    source, dest = tmp_path / "models-dev.json", tmp_path / "catalog.json"
    snapshot = _models_dev()
    refresh_catalog(_write(source, snapshot), dest, providers=PROVIDERS)
    snapshot["providers"]["vendor-ai"]["models"]["chat-1"]["cost"]["output"] = 14
    refresh_catalog(_write(source, snapshot), dest, providers=PROVIDERS)
    assert [(p["effective_from"], p["output"]) for p in _chat_prices(dest)] == [
        ("2026-07-02", "14")
    ]


def test_a_model_whose_price_disappears_keeps_its_history(tmp_path: Path) -> None:
    source, dest = tmp_path / "models-dev.json", tmp_path / "catalog.json"
    snapshot = _models_dev()
    refresh_catalog(_write(source, snapshot), dest, providers=PROVIDERS)
    del snapshot["providers"]["vendor-ai"]["models"]["chat-1"]["cost"]
    refresh_catalog(
        _write(source, snapshot), dest, effective_from=date(2026, 9, 1), providers=PROVIDERS
    )
    assert [p["input"] for p in _chat_prices(dest)] == ["3"]


def test_refresh_refuses_to_write_an_invalid_catalog(tmp_path: Path) -> None:
    source, dest = tmp_path / "models-dev.json", tmp_path / "catalog.json"
    snapshot = _models_dev()
    snapshot["providers"]["vendor-ai"]["models"]["chat-1"]["modalities"]["input"].append("smell")
    with pytest.raises(CatalogError, match="input_modalities"):
        refresh_catalog(_write(source, snapshot), dest, providers=PROVIDERS)
    assert not dest.exists()
