"""Read models.dev's model database into the catalog's own compact entries.

models.dev (https://models.dev, MIT) describes each provider's models with flags, modalities,
limits and costs in USD per million tokens. Entries may name a `base_model` whose facts they
inherit; see `resolve_base_model` for how that is approximated from a JSON snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from orcarouter.catalog.errors import CatalogError

JsonObject = dict[str, Any]

# models.dev cost keys that are priced outside input/output/cache, kept under `per_call`.
PER_CALL_COSTS = ("reasoning", "input_audio", "output_audio", "citation", "request", "image")
# Spellings some providers' files use for the cache prices.
CACHE_READ_SPELLINGS = ("cache_read", "cached_input", "cache_input")
CACHE_WRITE_SPELLINGS = ("cache_write", "cached_write")
# Facts a model never inherits from its base model: they belong to one provider's offer.
PROVIDER_OWN_FIELDS = ("cost", "experimental", "status", "provider")


def usd_text(value: object) -> str:
    """A models.dev number as a plain decimal string ("2.5", "0.0028", "10"), never a float."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CatalogError(f"{value!r} is not a price")
    if isinstance(value, float) and not math.isfinite(value):
        raise CatalogError(f"{value!r} is not a price")
    amount = Decimal(repr(value) if isinstance(value, float) else value)
    if not amount.is_finite() or amount < 0:
        raise CatalogError(f"{value!r} is not a price")
    return format(amount.normalize(), "f")


def resolve_base_model(
    raw: Mapping[str, Any], all_providers: Mapping[str, Any]
) -> tuple[JsonObject, bool]:
    """Merge a model with the facts of its `base_model`; the flag says whether it was found.

    models.dev resolves `base_model: "lab/model"` against a directory of model metadata that
    the JSON snapshot does not carry, so the lab's own provider entry of that id stands in for
    it, prices and other provider-specific fields excluded. A base that is missing, or is the
    entry itself, leaves the model with only its own fields.
    """
    return _resolve(raw, all_providers, seen=())


def _resolve(
    raw: Mapping[str, Any], all_providers: Mapping[str, Any], seen: tuple[str, ...]
) -> tuple[JsonObject, bool]:
    own = {k: v for k, v in raw.items() if k not in ("base_model", "base_model_omit")}
    base_id = raw.get("base_model")
    if not isinstance(base_id, str):
        return own, True
    lab, _, base_model_id = base_id.partition("/")
    base = all_providers.get(lab, {}).get("models", {}).get(base_model_id)
    if not isinstance(base, Mapping) or base is raw or base_id in seen:
        return own, False
    base_facts, found = _resolve(base, all_providers, (*seen, base_id))
    if not found or "name" not in base_facts:
        return own, False
    inherited = {k: v for k, v in base_facts.items() if k not in PROVIDER_OWN_FIELDS}
    merged = _deep_merge(inherited, own)
    for path in raw.get("base_model_omit", ()):
        _drop_path(merged, str(path).split("."))
    return merged, True


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> JsonObject:
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _drop_path(target: JsonObject, parts: Sequence[str]) -> None:
    head, *rest = parts
    if not rest:
        target.pop(head, None)
        return
    child = target.get(head)
    if isinstance(child, dict):
        _drop_path(child, rest)
        if not child:
            del target[head]


def derive_kind(
    model_id: str, family: str | None, inputs: Sequence[str], outputs: Sequence[str]
) -> str:
    """chat, embedding, image, audio or video, from the modalities and, failing those, names."""
    words = f"{model_id} {family or ''}".lower()
    if "embed" in words:
        return "embedding"
    if outputs and "text" not in outputs:
        for kind in ("audio", "video", "image"):
            if kind in outputs:
                return kind
    if "image" in outputs and "image" in words:  # gpt-image-*, gemini-*-image: image generators
        return "image"
    if list(inputs) == ["audio"]:  # speech to text
        return "audio"
    if not inputs and not outputs:  # facts unknown: the name is all there is
        if "image" in words:
            return "image"
        if "whisper" in words or "transcribe" in words or "tts" in words:
            return "audio"
    return "chat"


def derive_capabilities(raw: Mapping[str, Any], kind: str, inputs: Sequence[str]) -> list[str]:
    """The catalog's capability names for a models.dev entry."""
    tool_call = raw.get("tool_call")
    if isinstance(tool_call, Mapping):
        tool_call = tool_call.get("supported")
    flags = {
        "tools": tool_call is True,
        "vision": "image" in inputs or raw.get("attachment") is True,
        "structured_output": raw.get("structured_output") is True,
        "reasoning": raw.get("reasoning") is True,
        "temperature": raw.get("temperature") is True,
        "streaming": kind == "chat",
    }
    return sorted(name for name, present in flags.items() if present)


def _first_present(cost: Mapping[str, Any], spellings: Sequence[str]) -> str | None:
    for spelling in spellings:
        if cost.get(spelling) is not None:
            return usd_text(cost[spelling])
    return None


def _rates(cost: Mapping[str, Any]) -> JsonObject:
    rates: JsonObject = {"input": usd_text(cost["input"]), "output": usd_text(cost["output"])}
    cache_read = _first_present(cost, CACHE_READ_SPELLINGS)
    cache_write = _first_present(cost, CACHE_WRITE_SPELLINGS)
    if cache_read is not None:
        rates["cache_read"] = cache_read
    if cache_write is not None:
        rates["cache_write"] = cache_write
    return rates


def convert_price(cost: object, effective_from: date) -> JsonObject | None:
    """A models.dev `cost` table as one price entry, or None when it gives no token price."""
    if not isinstance(cost, Mapping) or "input" not in cost or "output" not in cost:
        return None
    price: JsonObject = {"effective_from": effective_from.isoformat(), **_rates(cost)}
    per_call = {key: usd_text(cost[key]) for key in PER_CALL_COSTS if cost.get(key) is not None}
    if per_call:
        price["per_call"] = per_call
    tiers = []
    for tier in cost.get("tiers") or ():
        size = tier.get("tier", {}).get("size")
        kind = tier.get("tier", {}).get("type", "context")
        if isinstance(size, int) and size > 0 and kind == "context":
            tiers.append({"above_tokens": size, **_rates(tier)})
    if tiers:
        price["tiers"] = sorted(tiers, key=lambda tier: int(tier["above_tokens"]))
    return price


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def convert_model(model_id: str, raw: Mapping[str, Any], effective_from: date) -> JsonObject:
    """One resolved models.dev model as a catalog entry (fields it lacks are left out)."""
    modalities = raw.get("modalities") or {}
    inputs = list(modalities.get("input") or ())
    outputs = list(modalities.get("output") or ())
    family = raw.get("family")
    kind = derive_kind(model_id, family, inputs, outputs)
    limit = raw.get("limit") or {}
    entry: JsonObject = {
        "name": raw.get("name") or model_id,
        "kind": kind,
        "family": family,
        "release_date": raw.get("release_date"),
        "status": raw.get("status"),
        "context_window": _positive(limit.get("context")),
        "max_input": _positive(limit.get("input")),
        "max_output": _positive(limit.get("output")),
        "input_modalities": inputs,
        "output_modalities": outputs,
        "capabilities": derive_capabilities(raw, kind, inputs),
    }
    price = convert_price(raw.get("cost"), effective_from)
    entry["prices"] = [] if price is None else [price]
    return {key: value for key, value in entry.items() if value not in (None, [])}
