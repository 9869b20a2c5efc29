"""Build the shipped catalog file from a models.dev snapshot, keeping the price history.

`orcarouter catalog refresh --from FILE` calls `refresh_catalog`: each refresh adds a dated
price wherever a price changed, so costs of past dates stay computable.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from orcarouter.catalog.errors import CatalogError
from orcarouter.catalog.models_dev import JsonObject, convert_model, resolve_base_model
from orcarouter.catalog.providers import WELL_KNOWN_PROVIDERS, ProviderSpec
from orcarouter.catalog.schema import CATALOG_FORMAT, parse_document

SHIPPED_CATALOG_PATH = Path(__file__).parent / "data" / "catalog.json"
# The models.dev provider whose ids (`lab/model`) serve as the catalog's aliases.
ALIAS_SOURCE = "orcarouter"
_SNAPSHOT_DATE = re.compile(r"\((\d{4}-\d{2}-\d{2})\)")
_SNAPSHOT_COMMIT = re.compile(r"commit ([0-9a-f]{7,40})")


@dataclass(frozen=True, slots=True)
class RefreshSummary:
    """What a refresh changed, for the command line to report."""

    path: Path
    providers: int
    models: int
    added: int
    removed: int
    repriced: int

    def __str__(self) -> str:
        return (
            f"{self.path} ({self.providers} providers, {self.models} models: "
            f"{self.added} added, {self.removed} removed, {self.repriced} repriced)"
        )


def snapshot_date(models_dev: Mapping[str, Any]) -> date | None:
    """The date a models.dev snapshot names in its `source` line, if any."""
    found = _SNAPSHOT_DATE.search(str(models_dev.get("source", "")))
    return date.fromisoformat(found.group(1)) if found else None


def _source_block(models_dev: Mapping[str, Any], effective_from: date) -> dict[str, str]:
    source = {"name": "models.dev", "licence": "MIT", "snapshot": effective_from.isoformat()}
    commit = _SNAPSHOT_COMMIT.search(str(models_dev.get("source", "")))
    if commit:
        source["commit"] = commit.group(1)
    return source


def _provider_block(
    spec: ProviderSpec, all_providers: Mapping[str, Any], effective_from: date
) -> tuple[JsonObject, list[str]]:
    raw_provider = all_providers.get(spec.catalog_id)
    if not isinstance(raw_provider, Mapping):
        raise CatalogError(f"provider {spec.id}: {spec.catalog_id!r} is not in the snapshot")
    models: JsonObject = {}
    unresolved = []
    for model_id, raw in sorted(raw_provider.get("models", {}).items()):
        facts, found = resolve_base_model(raw, all_providers)
        if not found:
            unresolved.append(f"{spec.id}/{model_id}")
        models[model_id] = convert_model(model_id, facts, effective_from)
    block = {"name": spec.name, "source_id": spec.catalog_id, "models": models}
    return block, unresolved


def _aliases(
    all_providers: Mapping[str, Any], providers: Sequence[ProviderSpec], catalog: JsonObject
) -> dict[str, str]:
    """Map the alias provider's `lab/model` ids onto a catalog model where one matches."""
    our_id = {spec.catalog_id: spec.id for spec in providers}
    aliases = {}
    for alias, raw in all_providers.get(ALIAS_SOURCE, {}).get("models", {}).items():
        base = raw.get("base_model") if isinstance(raw, Mapping) else None
        if not isinstance(base, str) or alias.startswith(f"{ALIAS_SOURCE}/"):
            continue
        lab, _, model_id = base.partition("/")
        provider_id = our_id.get(lab)
        target = f"{provider_id}/{model_id}"
        if provider_id and model_id in catalog[provider_id]["models"] and alias != target:
            aliases[alias] = target
    return dict(sorted(aliases.items()))


def build_catalog(
    models_dev: Mapping[str, Any], providers: Sequence[ProviderSpec], effective_from: date
) -> JsonObject:
    """The catalog document for `providers`, keyed by our provider ids, prices dated as given."""
    all_providers = models_dev.get("providers")
    if not isinstance(all_providers, Mapping):
        raise CatalogError("not a models.dev document: no 'providers' table")
    catalog: JsonObject = {}
    unresolved: list[str] = []
    for spec in providers:
        catalog[spec.id], missing = _provider_block(spec, all_providers, effective_from)
        unresolved.extend(missing)
    return {
        "format": CATALOG_FORMAT,
        "source": _source_block(models_dev, effective_from),
        "providers": catalog,
        "aliases": _aliases(all_providers, providers, catalog),
        "unresolved_base_models": unresolved,
    }


def _same_rates(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    def rates(price: Mapping[str, Any]) -> JsonObject:
        return {key: value for key, value in price.items() if key != "effective_from"}

    return rates(left) == rates(right)


def merge_price_history(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[JsonObject]:
    """The history after a refresh: older prices kept, a new entry only where rates changed.

    A refresh is authoritative from its effective date on: previous entries dated on or after
    it are replaced. A model the refresh gives no price for keeps its previous history.
    """
    if not current:
        return [dict(price) for price in previous]
    latest = current[-1]
    kept = [dict(price) for price in previous if price["effective_from"] < latest["effective_from"]]
    if kept and _same_rates(kept[-1], latest):
        return kept
    return [*kept, dict(latest)]


def merge_catalogs(previous: Mapping[str, Any], current: JsonObject) -> tuple[JsonObject, int]:
    """`current` with each model's price history carried over from `previous`; and how many
    models got a new price."""
    repriced = 0
    old_providers = previous.get("providers", {})
    for provider_id, block in current["providers"].items():
        old_models = old_providers.get(provider_id, {}).get("models", {})
        for model_id, entry in block["models"].items():
            old_prices = old_models.get(model_id, {}).get("prices", [])
            merged = merge_price_history(old_prices, entry.get("prices", []))
            if old_prices and merged != old_prices:
                repriced += 1
            if merged:
                entry["prices"] = merged
    return current, repriced


def _model_ids(document: Mapping[str, Any]) -> set[str]:
    return {
        f"{provider_id}/{model_id}"
        for provider_id, block in document.get("providers", {}).items()
        for model_id in block.get("models", {})
    }


def write_document(document: Mapping[str, Any], dest: Path) -> None:
    """Write a catalog document atomically, in a stable and diff-friendly layout."""
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = dest.stat().st_mode & 0o777 if dest.exists() else 0o644
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=dest.parent, prefix=f".{dest.name}.", delete=False
    ) as handle:
        handle.write(text)
    os.chmod(handle.name, mode)  # the temporary file was created private (0600)
    os.replace(handle.name, dest)


def refresh_catalog(
    source_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str] | None = None,
    effective_from: date | None = None,
    providers: Sequence[ProviderSpec] = WELL_KNOWN_PROVIDERS,
) -> RefreshSummary:
    """Rebuild the catalog at `dest_path` from a models.dev JSON file, keeping price history.

    `dest_path` defaults to the catalog shipped in this package. New prices take effect on
    `effective_from`, by default the snapshot's own date (else today). The result is
    validated before it replaces the destination.
    """
    models_dev = json.loads(Path(source_path).read_text(encoding="utf-8"))
    when = effective_from or snapshot_date(models_dev) or date.today()
    current = build_catalog(models_dev, providers, when)
    dest = SHIPPED_CATALOG_PATH if dest_path is None else Path(dest_path)
    previous = json.loads(dest.read_text(encoding="utf-8")) if dest.exists() else {}
    merged, repriced = merge_catalogs(previous, current)
    parse_document(merged)
    write_document(merged, dest)
    old_ids, new_ids = _model_ids(previous), _model_ids(merged)
    return RefreshSummary(
        path=dest,
        providers=len(merged["providers"]),
        models=len(new_ids),
        added=len(new_ids - old_ids),
        removed=len(old_ids - new_ids),
        repriced=repriced,
    )
