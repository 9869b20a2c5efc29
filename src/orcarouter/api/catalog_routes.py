"""The catalog API, readable without a key, like the hosted product's.

- ``GET /v1/models``: the models some enabled provider serves, as ``provider/model`` ids with
  OpenRouter-style fields, in OpenAI's list shape (``{"object": "list", "data"}``), or in
  Anthropic's paginated shape when the request carries ``anthropic-version``, so both SDKs'
  ``client.models.list()`` work. Filters: ``provider``, ``capability``, ``min_context``.
- ``GET /v1/models/{id}``: one of them (the id may hold slashes); 404 in the client's envelope.
- ``GET /api/public/providers`` and ``GET /api/public/models/{provider}/{slug}``: the provider
  list and the model card, in the ``{success, data}`` envelope, the card with the latency and
  uptime the gateway itself observed.

The catalog and the providers do not change while the gateway runs, so everything but the live
statistics is computed once; prices are dated, so the listing is rebuilt when a new one starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import orjson

from orcarouter.accounts.keys import KeyCache
from orcarouter.api.asgi import Receive, Scope, Send, header_map, respond, respond_error
from orcarouter.api.auth import bearer_token
from orcarouter.api.dialects import ANTHROPIC_MESSAGES, OPENAI_CHAT
from orcarouter.catalog import Catalog, ModelInfo, Price
from orcarouter.catalog.providers import WELL_KNOWN_PROVIDERS
from orcarouter.errors import GatewayError, InvalidRequest, ModelNotFound
from orcarouter.metering.stats import UPTIME_HOURS, ModelStats
from orcarouter.routing.health import HealthBook
from orcarouter.routing.routers import RouterSpec
from orcarouter.routing.table import RouterTable

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

MODEL_PREFIX = "/v1/models/"
CARD_PREFIX = "/api/public/models/"
# The hosted API's categories (``capability=chat|embedding|image|audio``), then, as an extension,
# the catalog's capability flags.
CATEGORIES = ("chat", "embedding", "image", "audio", "video")
FEATURES = ("tools", "vision", "reasoning", "structured_output", "streaming", "temperature")
ANTHROPIC_PAGE_DEFAULT, ANTHROPIC_PAGE_MAX = 20, 1000  # https://docs.claude.com/en/api/models-list
_CHAT_ENDPOINTS = tuple(
    {"type": dialect.protocol, "method": "POST", "path": dialect.path}
    for dialect in (OPENAI_CHAT, ANTHROPIC_MESSAGES)
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON = [(b"cache-control", b"no-store")]


def usd(amount: Decimal) -> str:
    """A decimal string without exponent or trailing zeros: ``0.00000015``, ``2.5``, ``0``."""
    return format(amount.normalize(), "f")


def _per_token(per_million: Decimal) -> str:
    return usd(per_million.scaleb(-6))


def _released(info: ModelInfo) -> datetime:
    """The release date as midnight UTC (``YYYY-MM`` as its first day); the epoch if unknown."""
    text = info.release_date
    if not text:
        return _EPOCH
    try:
        day = date.fromisoformat(text if len(text) != 7 else text + "-01")
    except ValueError:
        return _EPOCH
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _tags(info: ModelInfo) -> frozenset[str]:
    """What ``capability=`` matches: the model's category and its capability flags."""
    tags = {info.kind, *info.capabilities}
    if "image" in info.input_modalities:
        tags.add("vision")
    tags.update(m for m in ("image", "audio") if m in info.output_modalities)
    return frozenset(tags)


def _openai_pricing(price: Price) -> dict[str, str]:
    pricing = {
        "prompt": _per_token(price.input),
        "completion": _per_token(price.output),
        "request": usd(price.per_call.get("request", Decimal(0))),
        "image": usd(price.per_call.get("image", Decimal(0))),
        "prompt_per_million": usd(price.input),
        "completion_per_million": usd(price.output),
    }
    if price.cache_read is not None:
        pricing["input_cache_read"] = _per_token(price.cache_read)
    if price.cache_write is not None:
        pricing["input_cache_write"] = _per_token(price.cache_write)
    return pricing


def _card_pricing(price: Price) -> dict[str, str | None]:
    def optional(amount: Decimal | None) -> str | None:
        return None if amount is None else usd(amount)

    return {
        "quota_type": "per_token",
        "currency": "USD",
        "per_call_usd": optional(price.per_call.get("request")),
        "input_per_million_usd": usd(price.input),
        "output_per_million_usd": usd(price.output),
        "cache_read_per_million_usd": optional(price.cache_read),
        "cache_write_per_million_usd": optional(price.cache_write),
    }


def _openai_model(info: ModelInfo, price: Price | None, chat: bool) -> dict[str, Any]:
    inputs, outputs = list(info.input_modalities), list(info.output_modalities)
    model: dict[str, Any] = {
        "id": info.full_id,
        "object": "model",
        "created": int(_released(info).timestamp()),
        "owned_by": info.provider_id,
        "name": info.name,
        "description": "",
        "kind": info.kind,
        "context_length": info.context_window,
        "max_completion_tokens": info.max_output,
        "architecture": {
            "modality": f"{'+'.join(inputs)}->{'+'.join(outputs)}",
            "input_modalities": inputs,
            "output_modalities": outputs,
        },
        "top_provider": {
            "context_length": info.context_window,
            "max_completion_tokens": info.max_output,
            "is_moderated": False,
        },
        "capabilities": sorted(info.capabilities),
        "supported_endpoint_types": [e["type"] for e in _CHAT_ENDPOINTS] if chat else [],
    }
    if price is not None:  # unpriced models (custom, local) carry no pricing, as routers
        model["pricing"] = _openai_pricing(price)
    return model


def _anthropic_model(info: ModelInfo) -> dict[str, Any]:
    """Anthropic's ``ModelInfo``: https://docs.claude.com/en/api/models-list."""
    return {
        "type": "model",
        "id": info.full_id,
        "display_name": info.name,
        "created_at": _released(info).isoformat().replace("+00:00", "Z"),
        "lifecycle": "deprecated" if info.status == "deprecated" else "active",
        "max_input_tokens": info.max_input or info.context_window,
        "max_tokens": info.max_output,
    }


def _card(info: ModelInfo, price: Price | None, chat: bool) -> dict[str, Any]:
    """The model card's static part (the live statistics are added per request)."""
    return {
        "id": info.full_id,
        "model_name": info.model_id,
        "slug": info.model_id,
        "provider_slug": info.provider_id,
        "display_name": info.name,
        "tagline": None,
        "long_description": None,
        "kind": info.kind,
        "family": info.family,
        "status": info.status,
        "context_window": info.context_window,
        "max_output": info.max_output,
        "modalities_in": list(info.input_modalities),
        "modalities_out": list(info.output_modalities),
        "capabilities": sorted(info.capabilities),
        "release_date": info.release_date,
        "supported_endpoints": list(_CHAT_ENDPOINTS) if chat else [],
        "pricing": None if price is None else _card_pricing(price),
    }


@dataclass(frozen=True, slots=True)
class ListedModel:
    """One listed model, rendered once in every shape the API serves."""

    info: ModelInfo
    tags: frozenset[str]
    openai: bytes  # JSON
    anthropic: bytes  # JSON
    card: dict[str, Any]


def _entry(info: ModelInfo, day: date) -> ListedModel:
    price = info.price_at(day)
    chat = info.kind == "chat"  # every chat model is reachable through both endpoints
    return ListedModel(
        info,
        _tags(info),
        orjson.dumps(_openai_model(info, price, chat)),
        orjson.dumps(_anthropic_model(info)),
        _card(info, price, chat),
    )


class Listing:
    """The served models at the prices of one day: in order, by id and by bare id;
    ``next_change`` is the first later day a price takes effect."""

    def __init__(self, models: Sequence[ModelInfo], day: date) -> None:
        self.day = day
        self.next_change = min(
            (p.effective_from for info in models for p in info.prices if p.effective_from > day),
            default=None,
        )
        self.entries = tuple(_entry(info, day) for info in models)
        self.by_id = {entry.info.full_id: entry for entry in self.entries}
        self.bare: dict[str, ListedModel] = {}
        for entry in self.entries:  # the first provider in configuration order wins, as routing
            self.bare.setdefault(entry.info.model_id, entry)


def _openai_list(entries: Iterable[ListedModel], extra: Sequence[bytes] = ()) -> bytes:
    items = [e.openai for e in entries]
    items.extend(extra)
    return b'{"object":"list","data":[' + b",".join(items) + b"]}"


# Every workspace has orcarouter/auto; a caller who shows a key also sees its other routers.
_AUTO = RouterSpec(workspace_id="", name="auto", strategy="cheapest")


def _router_model(router: RouterSpec) -> bytes:
    """A router as a listed model: no limits or prices of its own (they are its pick's)."""
    return orjson.dumps(
        {
            "id": router.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "orcarouter",
            "name": router.model_id,
            "description": f"Router: picks a model per request ({router.strategy})",
            "kind": "router",
            "context_length": None,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
            },
            "supported_endpoint_types": [e["type"] for e in _CHAT_ENDPOINTS],
        }
    )


def _anthropic_router(router: RouterSpec) -> bytes:
    return orjson.dumps(
        {
            "type": "model",
            "id": router.model_id,
            "display_name": router.model_id,
            "created_at": "1970-01-01T00:00:00Z",
        }
    )


@dataclass(frozen=True, slots=True)
class _Filters:
    providers: frozenset[str] | None
    capabilities: tuple[str, ...]
    min_context: int

    @property
    def none(self) -> bool:
        return self.providers is None and not self.capabilities and not self.min_context

    @property
    def routers(self) -> bool:
        """Whether routers pass: they have no capabilities or context of their own."""
        if self.capabilities or self.min_context:
            return False
        return self.providers is None or "orcarouter" in self.providers

    def accept(self, entry: ListedModel) -> bool:
        info = entry.info
        if self.providers is not None and info.provider_id not in self.providers:
            return False
        if not entry.tags.issuperset(self.capabilities):
            return False
        return not self.min_context or (info.context_window or 0) >= self.min_context


def _query(scope: Scope) -> dict[str, str]:
    """The query parameters, the last value of each repeated one."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def _whole_number(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}", param=name)
    return int(raw)


def _filters(query: Mapping[str, str]) -> _Filters:
    providers = query.get("provider")
    wanted = tuple(c.strip() for c in query.get("capability", "").split(",") if c.strip())
    for capability in wanted:
        if capability not in CATEGORIES and capability not in FEATURES:
            raise InvalidRequest(
                f"unknown capability '{capability}'; use one of "
                + ", ".join((*CATEGORIES, *FEATURES)),
                param="capability",
            )
    return _Filters(
        providers=frozenset(p.strip() for p in providers.split(",")) if providers else None,
        capabilities=wanted,
        min_context=_whole_number(query, "min_context", 0, 0, 1 << 40),
    )


def _position(entries: list[ListedModel], model_id: str, param: str) -> int:
    for n, entry in enumerate(entries):
        if entry.info.full_id == model_id:
            return n
    raise InvalidRequest(f"'{param}' is not a listed model id", param=param)


def _anthropic_page(
    listing: Listing,
    filters: _Filters,
    query: Mapping[str, str],
    routers: Sequence[RouterSpec],
) -> bytes:
    """One page: ``limit`` models after ``after_id`` or before ``before_id``; the routers
    follow the models on the last page."""
    limit = _whole_number(query, "limit", ANTHROPIC_PAGE_DEFAULT, 1, ANTHROPIC_PAGE_MAX)
    entries = [entry for entry in listing.entries if filters.accept(entry)]
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("give 'after_id' or 'before_id', not both", param="before_id")
    if after is not None:
        start = _position(entries, after, "after_id") + 1
        page, has_more = entries[start : start + limit], start + limit < len(entries)
    elif before is not None:
        stop = _position(entries, before, "before_id")
        page, has_more = entries[max(stop - limit, 0) : stop], stop - limit > 0
    else:
        page, has_more = entries[:limit], limit < len(entries)
    tail = {
        "has_more": has_more,
        "first_id": page[0].info.full_id if page else None,
        "last_id": page[-1].info.full_id if page else None,
    }
    items = [entry.anthropic for entry in page]
    if not has_more and before is None:
        items.extend(_anthropic_router(r) for r in routers)
    return b'{"data":[' + b",".join(items) + b"]," + orjson.dumps(tail)[1:]


class CatalogRoutes:
    """The catalog endpoints over the models the enabled providers serve."""

    def __init__(
        self,
        catalog: Catalog,
        served: Mapping[str, Iterable[str]],
        stats: ModelStats,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        *,
        keys: KeyCache | None = None,
        routers: RouterTable | None = None,
        health: HealthBook | None = None,
    ) -> None:
        """``served``: each enabled provider's id, in configuration order, to its model ids."""
        self._catalog = catalog
        self._keys = keys
        self._routers = routers
        self._health = health
        self._models = tuple(
            info
            for provider_id, model_ids in served.items()
            for model_id in sorted(model_ids)
            if (info := catalog.get(provider_id, model_id)) is not None
        )
        self._stats = stats
        self._today = today
        self._listing = Listing(self._models, today())
        names = {spec.id: spec.name for spec in WELL_KNOWN_PROVIDERS}
        counts = dict.fromkeys(served, 0)
        for info in self._models:
            counts[info.provider_id] += 1
        providers = [
            {
                "provider_id": provider_id,
                "model_count": count,
                "display_name": names.get(provider_id, provider_id),
                "icon_url": None,
            }
            for provider_id, count in counts.items()
        ]
        # Every listed id has a provider prefix; bare ids resolve but are not listed.
        self._providers_body = orjson.dumps(
            {"success": True, "data": {"providers": providers, "unprefixed_model_count": 0}}
        )

    @property
    def routes(self) -> dict[tuple[str, str], Handler]:
        """The exact-path routes."""
        return {
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/api/public/providers"): self.providers,
        }

    @property
    def prefixed(self) -> tuple[tuple[str, str, Handler], ...]:
        """The routes whose last parameter may hold slashes: (method, path prefix, handler)."""
        return (("GET", MODEL_PREFIX, self.get_model), ("GET", CARD_PREFIX, self.model_card))

    def listing(self) -> Listing:
        """Today's listing, rebuilt once a dated price takes effect."""
        change = self._listing.next_change
        if change is not None and (day := self._today()) >= change:
            self._listing = Listing(self._models, day)
        return self._listing

    def lookup(self, model_id: str) -> ListedModel | None:
        """A listed model by ``provider/model`` id, catalog alias or bare id."""
        listing = self.listing()
        entry = listing.by_id.get(model_id)
        if entry is None:
            aliased = self._catalog.resolve_alias(model_id)
            if aliased is not None:
                entry = listing.by_id.get(aliased.full_id)
        return entry if entry is not None else listing.bare.get(model_id)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models``, in the OpenAI or (with ``anthropic-version``) Anthropic shape."""
        headers = header_map(scope)
        anthropic = "anthropic-version" in headers
        try:
            query = _query(scope)
            filters = _filters(query)
            listing = self.listing()
            routers = self._visible_routers(headers) if filters.routers else []
            if anthropic:
                body = _anthropic_page(listing, filters, query, routers)
            else:
                entries = listing.entries
                if not filters.none:
                    entries = tuple(e for e in entries if filters.accept(e))
                body = _openai_list(entries, [_router_model(r) for r in routers])
        except GatewayError as error:
            await respond_error(send, error, anthropic, _JSON)
            return
        await respond(send, 200, body, _JSON)

    def _visible_routers(self, headers: Mapping[str, str]) -> list[RouterSpec]:
        """``orcarouter/auto``, or with a valid key the enabled routers of its workspace."""
        token = bearer_token(headers)
        principal = self._keys.lookup(token) if token and self._keys is not None else None
        if principal is None or self._routers is None:
            return [_AUTO]
        return [r for r in self._routers.of_workspace(principal.workspace_id) if r.enabled]

    async def get_model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models/{id}``: one listed model, or 404 in the client's envelope."""
        anthropic = "anthropic-version" in header_map(scope)
        model_id = scope["path"][len(MODEL_PREFIX) :]
        entry = self.lookup(model_id)
        if entry is None:
            error = ModelNotFound(f"model '{model_id}' is not served here (see GET /v1/models)")
            await respond_error(send, error, anthropic, _JSON)
            return
        await respond(send, 200, entry.anthropic if anthropic else entry.openai, _JSON)

    async def providers(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /api/public/providers``."""
        await respond(send, 200, self._providers_body, _JSON)

    async def model_card(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /api/public/models/{provider}/{slug}`` (or ``{bare}``): the model card."""
        model_id = scope["path"][len(CARD_PREFIX) :]
        entry = self.lookup(model_id)
        if entry is None:
            body = {"success": False, "message": f"model '{model_id}' not found"}
            await respond(send, 404, orjson.dumps(body), _JSON)
            return
        card = {**entry.card, **self._live(entry.info.full_id)}
        if self._health is not None:
            card["health"] = self._health.state(entry.info.full_id)
        await respond(send, 200, orjson.dumps({"success": True, "data": card}), _JSON)

    def _live(self, model_id: str) -> dict[str, Any]:
        """The card's ``latency`` and ``uptime``, from what this gateway observed."""
        latency = self._stats.latency(model_id)
        uptime = self._stats.uptime(model_id)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {
            "latency": {
                "p50_ms": latency.p50_ms,
                "p95_ms": latency.p95_ms,
                "ttft_p50_ms": latency.ttft_p50_ms,
                "output_tok_per_sec": latency.output_tok_per_sec,
                "error_rate_percent": latency.error_rate_percent,
                "requests": latency.requests,
                "window_days": latency.window_days,
                "evaluated_at": now,
                "source": "observed",
            },
            "uptime": {
                "percent_24h": uptime.percent,
                "window_hours": UPTIME_HOURS,
                "has_data": uptime.has_data,
                "requests": uptime.requests,
            },
            "updated_at": now,
        }
