"""Operator entries: changing catalog models, adding custom ones, and refusing bad input."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

import pytest

from orcarouter.catalog import Catalog, CatalogError, ModelInfo, Price


def _base_catalog() -> Catalog:
    gpt = ModelInfo(
        provider_id="openai",
        model_id="gpt-x",
        name="GPT X",
        kind="chat",
        family="gpt",
        context_window=128_000,
        max_output=16_384,
        input_modalities=("text", "image"),
        output_modalities=("text",),
        capabilities=frozenset({"tools", "vision", "streaming"}),
        prices=(Price(date(2026, 7, 2), Decimal("2.5"), Decimal("10")),),
        release_date="2026-01-01",
    )
    return Catalog([gpt], aliases={"gpt-latest": "openai/gpt-x"})


LLAMA: Mapping[str, object] = {
    "provider": "local",
    "model": "llama3.2",
    "context_window": 131072,
    "max_output": 8192,
    "capabilities": ["tools"],
    "prices": [{"effective_from": "2026-01-01", "input": "0", "output": "0"}],
}


def test_a_custom_model_is_added_with_its_fields() -> None:
    catalog = _base_catalog().with_overrides([LLAMA])
    llama = catalog.get("local", "llama3.2")
    assert llama is not None
    assert (llama.name, llama.kind) == ("llama3.2", "chat")
    assert (llama.context_window, llama.max_output) == (131072, 8192)
    assert llama.capabilities == {"tools", "streaming"}
    price = llama.price_at(date(2026, 3, 1))
    assert price is not None and price.input == Decimal("0") and price.output == Decimal("0")
    assert catalog.providers_serving("llama3.2") == ("local",)
    assert catalog.get("openai", "gpt-x") is not None
    assert catalog.resolve_alias("gpt-latest") is not None


def test_an_override_changes_only_the_fields_it_names() -> None:
    base = _base_catalog()
    changed = base.with_overrides(
        [{"provider": "openai", "model": "gpt-x", "context_window": 64_000, "family": None}]
    )
    before, after = base.get("openai", "gpt-x"), changed.get("openai", "gpt-x")
    assert before is not None and after is not None
    assert after.context_window == 64_000 and after.family is None
    assert (after.name, after.max_output, after.prices) == (
        before.name,
        before.max_output,
        before.prices,
    )
    assert after.capabilities == before.capabilities
    assert before.context_window == 128_000  # the original catalog is untouched


def test_override_prices_replace_the_history_and_accept_yaml_numbers() -> None:
    catalog = _base_catalog().with_overrides(
        [
            {
                "provider": "openai",
                "model": "gpt-x",
                "prices": [
                    {"effective_from": date(2026, 8, 1), "input": 0.15, "output": 2},
                    {"effective_from": "2026-01-01", "input": "2", "output": "8"},
                ],
            }
        ]
    )
    gpt = catalog.get("openai", "gpt-x")
    assert gpt is not None
    assert [p.effective_from for p in gpt.prices] == [date(2026, 1, 1), date(2026, 8, 1)]
    assert gpt.prices[1].input == Decimal(
        "0.15"
    )  # not 0.1499999999999999944488848768742172978818416595458984375
    assert gpt.price_at(date(2026, 7, 15)) is gpt.prices[0]


def test_capabilities_and_streaming_can_be_set_separately() -> None:
    catalog = _base_catalog().with_overrides(
        [
            {"provider": "openai", "model": "gpt-x", "capabilities": ["reasoning"]},
            {"provider": "local", "model": "batch-only", "streaming": False},
            {"provider": "local", "model": "embedder", "kind": "embedding"},
        ]
    )
    gpt = catalog.get("openai", "gpt-x")
    batch = catalog.get("local", "batch-only")
    embedder = catalog.get("local", "embedder")
    assert gpt is not None and batch is not None and embedder is not None
    assert gpt.capabilities == {"reasoning", "streaming"}
    assert "streaming" not in batch.capabilities and "tools" in batch.capabilities
    assert embedder.capabilities == frozenset()


def test_later_entries_win_over_earlier_ones() -> None:
    catalog = _base_catalog().with_overrides([LLAMA, {**LLAMA, "context_window": 4096}])
    llama = catalog.get("local", "llama3.2")
    assert llama is not None and llama.context_window == 4096


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**LLAMA, "contex_window": 1}, r"#1 \(local/llama3\.2\): contex_window: Extra inputs"),
        ({**LLAMA, "context_window": -5}, "context_window: Input should be greater than 0"),
        ({**LLAMA, "capabilities": ["telepathy"]}, "capabilities.0: Input should be 'tools'"),
        ({**LLAMA, "kind": "hologram"}, "kind: Input should be 'chat'"),
        ({**LLAMA, "kind": None}, "kind may be left out but not set to null"),
        ({"model": "m"}, r"\(\?/m\): provider: Field required"),
        (
            {**LLAMA, "prices": [{"effective_from": "2026-01-01", "input": "-1", "output": "1"}]},
            "prices.0.input: Value error, must not be negative",
        ),
        (
            {
                **LLAMA,
                "prices": [{"effective_from": "2026-01-01", "input": "cheap", "output": "1"}],
            },
            "prices.0.input: Value error, 'cheap' is not a decimal number",
        ),
        (
            {**LLAMA, "prices": [{"effective_from": "soon", "input": "1", "output": "1"}]},
            "prices.0.effective_from: Input should be a valid date",
        ),
        (
            {
                **LLAMA,
                "prices": [
                    {"effective_from": "2026-01-01", "input": "1", "output": "1"},
                    {"effective_from": "2026-01-01", "input": "2", "output": "2"},
                ],
            },
            "prices: Value error, two prices share one effective_from date",
        ),
    ],
)
def test_bad_entries_are_refused_naming_the_field(
    entry: Mapping[str, object], message: str
) -> None:
    with pytest.raises(CatalogError, match=message):
        _base_catalog().with_overrides([entry])


def test_the_error_names_which_entry_is_bad() -> None:
    with pytest.raises(CatalogError, match=r"catalog entry #2 \(local/llama3\.2\)"):
        _base_catalog().with_overrides([LLAMA, {**LLAMA, "max_output": "lots"}])


def test_provider_models_get_minimal_entries_without_replacing_known_ones() -> None:
    base = _base_catalog()
    catalog = base.with_provider_models("openai", ["gpt-x", "gpt-new", "gpt-new"])
    catalog = catalog.with_provider_models("vllm", ["qwen3"])
    known, new, qwen = (
        catalog.get("openai", "gpt-x"),
        catalog.get("openai", "gpt-new"),
        catalog.get("vllm", "qwen3"),
    )
    assert known is base.get("openai", "gpt-x")
    assert new is not None and qwen is not None
    assert (new.kind, new.prices, new.context_window) == ("chat", (), None)
    assert "streaming" in qwen.capabilities
    assert len(catalog) == 3 and len(base) == 1
