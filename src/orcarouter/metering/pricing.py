"""The cost of a request from the catalog price in effect, in integer micro-dollars.

Catalog prices are USD per million tokens, so a token costs ``price`` micro-dollars and a
request's cost is a sum of ``tokens x price`` in exact decimals, rounded once (half up) to a
whole micro-dollar. Cache reads and writes use their own rates where the catalog has them, else
the input rate; reasoning tokens are part of the output and cost the output rate. Long-context
tiers apply by the request's prompt size. Server tools (web search) are charged per call at the
vendor's rate, without markup: the catalog's per-call rate for the model when the operator gave
one, else the vendor's list price below. An optional markup (percent) applies to tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from orcarouter.canonical import Usage
from orcarouter.catalog import Catalog, Price
from orcarouter.metering.usage import UsageRecord

_MICROS: Final = Decimal(1_000_000)
DEFAULT_MAX_OUTPUT: Final = 4096  # a model with no output limit in the catalog, for reservations
# The prompt estimate (``routing.needs``, bytes / 4) is a guess; a hold takes twice it, so
# that text a tokenizer splits finely (code, most non-English) is still covered.
PROMPT_HOLD_FACTOR: Final = 2

# Anthropic bills 1-hour cache writes at twice the input rate (5-minute writes at the
# catalog's cache-write rate, 1.25x): https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing
HOUR_CACHE_WRITE_FACTOR: Final = 2

# Server-tool usage counters (canonical ``Usage.server_tool_uses``) -> the per-call rate name
# an operator may set in a model's ``per_call`` prices (USD per call).
_PER_CALL_NAMES: Final[Mapping[str, str]] = {"web_search_requests": "web_search"}

# List prices per call in micro-dollars, by upstream protocol, when the catalog has none.
SERVER_TOOL_MICROS: Final[Mapping[str, Mapping[str, int]]] = {
    # $10 per 1,000 searches: https://docs.claude.com/en/docs/agents-and-tools/tool-use/web-search-tool
    "anthropic": {"web_search_requests": 10_000},
    # $10 per 1,000 calls: https://platform.openai.com/docs/pricing (built-in tools)
    "openai": {"web_search_requests": 10_000},
    # $35 per 1,000 grounded prompts: https://ai.google.dev/gemini-api/docs/pricing
    "gemini": {"web_search_requests": 35_000},
}


def cost_micros(
    usage: Usage,
    price: Price,
    markup_percent: Decimal = Decimal(0),
    tool_rates: Mapping[str, int] | None = None,
) -> int:
    """What ``usage`` costs at ``price``, in micro-dollars (USD x 1e6).

    ``tool_rates``: micro-dollars per server-tool call by usage counter, for calls the price's
    own ``per_call`` rates do not cover.
    """
    price = price.for_input_tokens(usage.prompt_tokens)
    rates, cache = price.micro_rates, price.micro_cache_rates
    if not (rates is None or cache is None or markup_percent or usage.server_tool_uses):
        # Tokens only, at rates whole in picodollars a token: the same sum in integers, rounded
        # half up (about a tenth of the instructions of the Decimal one).
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        hour_writes = min(_hour_cache_writes(usage), cache_write)
        picos = (
            usage.input_tokens * rates[0]
            + cache_read * cache[0]
            + (cache_write - hour_writes) * cache[1]
            + hour_writes * rates[0] * HOUR_CACHE_WRITE_FACTOR
            + usage.output_tokens * rates[1]
        )
        if picos >= 0:
            micros, rest = divmod(picos, 1_000_000)
            return micros + 1 if rest >= 500_000 else micros
    return exact_cost_micros(usage, price, markup_percent, tool_rates)


def exact_cost_micros(
    usage: Usage,
    price: Price,
    markup_percent: Decimal = Decimal(0),
    tool_rates: Mapping[str, int] | None = None,
) -> int:
    """``cost_micros`` in exact decimals, for any usage, at ``price`` (its tier chosen)."""
    cache_read = usage.cache_read_tokens or 0
    cache_write = usage.cache_write_tokens or 0
    hour_writes = min(_hour_cache_writes(usage), cache_write)
    tokens = (
        usage.input_tokens * price.input
        + cache_read * (price.cache_read if price.cache_read is not None else price.input)
        + (cache_write - hour_writes)
        * (price.cache_write if price.cache_write is not None else price.input)
        + hour_writes * price.input * HOUR_CACHE_WRITE_FACTOR
        + usage.output_tokens * price.output
    )
    if markup_percent:
        tokens += tokens * markup_percent / 100
    tools = Decimal(0)
    for counter, calls in (usage.server_tool_uses or {}).items():
        name = _PER_CALL_NAMES.get(counter)
        per_call = price.per_call.get(name) if name is not None else None
        if per_call is not None:
            tools += calls * per_call * _MICROS
        elif tool_rates is not None and counter in tool_rates:
            tools += calls * tool_rates[counter]
    return int((tokens + tools).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _hour_cache_writes(usage: Usage) -> int:
    """Anthropic's 1-hour cache writes (``usage.cache_creation.ephemeral_1h_input_tokens``)."""
    creation = usage.extra.get("anthropic", {}).get("cache_creation")
    if creation is None or not isinstance(creation, Mapping):  # None: no abstract-class check
        return 0
    value = creation.get("ephemeral_1h_input_tokens")
    return value if isinstance(value, int) and value > 0 else 0


MAX_MOVEMENT_MICROS: Final = 10**15  # one billion dollars in one top-up or adjustment


def parse_usd(text: str) -> int:
    """``"12.5"`` -> ``12_500_000`` micro-dollars; ValueError for anything else (finer than a
    micro-dollar, zero, or over a billion)."""
    try:
        value = Decimal(text.strip()) * _MICROS
    except (InvalidOperation, ValueError):
        raise ValueError("the amount must be a decimal number of US dollars") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError("the amount has more than 6 decimal places")
    micros = int(value)
    if micros == 0 or abs(micros) > MAX_MOVEMENT_MICROS:
        raise ValueError("the amount must be non-zero and at most 1e9 dollars")
    return micros


def usd(micros: int) -> str:
    """Micro-dollars as a decimal USD string (``1234`` -> ``"0.001234"``)."""
    return format(Decimal(micros) / _MICROS, "f")


class Pricer:
    """Prices finished requests from the catalog (the served model's price on the day)."""

    def __init__(
        self,
        catalog: Catalog,
        protocols: Mapping[str, str],
        markup_percent: Decimal = Decimal(0),
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        """``protocols``: each provider id's upstream protocol (for server-tool list prices)."""
        self._catalog = catalog
        self._protocols = protocols
        self._markup = markup_percent
        self._today = today

    def price(self, provider_id: str | None, model: str | None) -> Price | None:
        """The price in effect today for a served ``provider/model`` (None: unpriced)."""
        if provider_id is None or model is None:
            return None
        info = self._catalog.get(provider_id, model.removeprefix(provider_id + "/"))
        return info.price_at(self._today()) if info is not None else None

    def worst_case(
        self, provider_id: str, model: str, prompt_tokens: int, max_output: int | None
    ) -> int:
        """The most a request may cost on this target: its prompt estimate plus its output
        limit (the request's ``max_tokens``, else the model's), at today's price; 0 unpriced."""
        price = self.price(provider_id, model)
        if price is None:
            return 0
        if max_output is None:
            info = self._catalog.get(provider_id, model.removeprefix(provider_id + "/"))
            max_output = (info.max_output if info is not None else None) or DEFAULT_MAX_OUTPUT
        usage = Usage(input_tokens=prompt_tokens * PROMPT_HOLD_FACTOR, output_tokens=max_output)
        return cost_micros(usage, price, self._markup)

    def record_cost(self, record: UsageRecord) -> int | None:
        """The cost of a finished request (its served model, its usage)."""
        return self.cost(record.provider_id, record.model_served, record.usage)

    def cost(self, provider_id: str | None, model: str | None, usage: Usage | None) -> int | None:
        """The request's cost in micro-dollars: 0 without usage (nothing was generated),
        None for a model the catalog has no price for."""
        if usage is None:
            return 0
        price = self.price(provider_id, model)
        if price is None:
            return None
        rates = SERVER_TOOL_MICROS.get(self._protocols.get(provider_id or "", ""))
        return cost_micros(usage, price, self._markup, rates)
