"""Strategies: pure functions that order a router's filtered candidates, best first.

Every strategy returns the whole list ordered (the first is served; the rest are the order a
failover walks) with a short score for each. Ties break on the model id, so an order never
depends on dict or configuration order.

- ``cheapest``: the expected cost of this request, in USD, from the catalog price in effect
  today: estimated prompt tokens at the input rate plus the expected output (``max_tokens``,
  else a default) at the output rate, price tiers resolved. Models without a price go last.
- ``quality``: ``quality_score`` below (or the router's ``quality_scores`` override), highest
  first.
- ``balanced``: the cheapest candidates whose quality meets the router's bar, then the rest
  best quality first (so with none above the bar, the best is served).
- ``fastest``: the expected time to the end of the answer from what the gateway observed:
  p50 time to first token plus the expected output at the observed tokens/s. Models with no
  observations go last, cheapest first.
- ``priority``: the router's ordered list of model ids or globs; models it does not name
  follow, cheapest first.
- ``weighted``: one weighted draw (the router's ``weights``; an empty map weighs all equally)
  picks the first; the rest follow by weight, then price. Zero-weight models are never drawn.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from orcarouter.catalog import ModelInfo
from orcarouter.routing.candidates import Candidate
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.routers import RouterSpec, glob_matches

MILLION = Decimal(1_000_000)


class LatencyFigures(Protocol):
    """What ``fastest`` reads of one model (``metering.stats.LatencySummary`` fits)."""

    @property
    def ttft_p50_ms(self) -> int | None: ...
    @property
    def output_tok_per_sec(self) -> float | None: ...


class LatencySource(Protocol):
    """Observed performance per ``provider/model`` (``metering.stats.ModelStats`` fits)."""

    def latency(self, model: str) -> LatencyFigures: ...


@dataclass(frozen=True, slots=True)
class StrategyInput:
    """Everything a strategy may look at besides the candidates."""

    needs: RequestNeeds
    router: RouterSpec
    today: date
    latency: LatencySource | None = None
    rng: random.Random | None = None


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate in its place, with the score the strategy gave it (for the record)."""

    candidate: Candidate
    score: str


Strategy = Callable[[Sequence[Candidate], StrategyInput], list[Ranked]]


def expected_cost(info: ModelInfo, needs: RequestNeeds, today: date) -> Decimal | None:
    """The request's expected cost in USD at today's catalog price, None when unpriced."""
    price = info.price_at(today)
    if price is None:
        return None
    price = price.for_input_tokens(needs.prompt_tokens)
    total = price.input * needs.prompt_tokens + price.output * needs.expected_output_tokens
    return total / MILLION


def _usd(value: Decimal | None) -> str:
    return "unpriced" if value is None else f"${value.quantize(Decimal('0.000001'))}"


def _cost_key(candidate: Candidate, ctx: StrategyInput) -> tuple[bool, Decimal, str]:
    cost = expected_cost(candidate.info, ctx.needs, ctx.today)
    return (cost is None, cost if cost is not None else Decimal(0), candidate.model_id)


def cheapest(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """Lowest expected cost first."""
    ordered = sorted(candidates, key=lambda c: _cost_key(c, ctx))
    return [Ranked(c, _usd(expected_cost(c.info, ctx.needs, ctx.today))) for c in ordered]


def _year(release_date: str | None) -> float | None:
    if not release_date:
        return None
    try:
        day = date.fromisoformat(release_date[:10])
    except ValueError:
        try:
            return float(release_date[:4])
        except ValueError:
            return None
    return day.year + (day.timetuple().tm_yday - 1) / 366


def quality_score(info: ModelInfo, today: date) -> int:
    """A 0-100 heuristic from catalog data, for want of benchmark scores in the catalog.

    Up to 50 points for the price tier (vendors price their strongest models highest; the
    blended list price per million tokens, 1 input : 3 output, on a log scale from $0.10 to
    $100), up to 25 for recency (release date from 2023 to 2026 and later), 15 for reasoning,
    5 each for tool calling and image input.
    """
    score = 0.0
    price = info.price_at(today)
    if price is not None:
        blended = float(price.input + 3 * price.output) / 4
        if blended > 0:
            score += 50 * min(max((math.log10(blended) + 1) / 3, 0.0), 1.0)
    year = _year(info.release_date)
    if year is not None:
        score += 25 * min(max((year - 2023) / 3, 0.0), 1.0)
    caps = info.capabilities
    score += 15 * ("reasoning" in caps) + 5 * ("tools" in caps) + 5 * ("vision" in caps)
    return round(score)


def _first_match(entries: Mapping[str, int], model_id: str) -> int | None:
    exact = entries.get(model_id)
    if exact is not None:
        return exact
    for pattern, value in entries.items():
        if "*" in pattern and glob_matches(pattern, model_id):
            return value
    return None


def quality_of(candidate: Candidate, ctx: StrategyInput) -> int:
    """The router's override for this model, else the catalog heuristic."""
    override = _first_match(ctx.router.quality_scores, candidate.model_id)
    return override if override is not None else quality_score(candidate.info, ctx.today)


def quality(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """Highest quality first; cheaper first among equals."""
    scored = [(quality_of(c, ctx), c) for c in candidates]
    scored.sort(key=lambda pair: (-pair[0], _cost_key(pair[1], ctx)))
    return [Ranked(c, f"quality {q}") for q, c in scored]


def balanced(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """The cheapest that meet the bar first, then the rest by quality."""
    bar = ctx.router.bar
    scored = [(quality_of(c, ctx), c) for c in candidates]
    meeting = sorted((p for p in scored if p[0] >= bar), key=lambda p: _cost_key(p[1], ctx))
    below = sorted((p for p in scored if p[0] < bar), key=lambda p: (-p[0], _cost_key(p[1], ctx)))
    ranked = []
    for q, c in meeting + below:
        cost = _usd(expected_cost(c.info, ctx.needs, ctx.today))
        mark = ">=" if q >= bar else "<"
        ranked.append(Ranked(c, f"quality {q} {mark} bar {bar}, {cost}"))
    return ranked


def _expected_ms(candidate: Candidate, ctx: StrategyInput) -> float | None:
    if ctx.latency is None:
        return None
    figures = ctx.latency.latency(candidate.model_id)
    if figures.ttft_p50_ms is None:
        return None
    total = float(figures.ttft_p50_ms)
    speed = figures.output_tok_per_sec
    if speed:
        total += ctx.needs.expected_output_tokens * 1000 / speed
    return total


def fastest(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """Shortest expected time first; unobserved models last, cheapest first."""
    timed = [(_expected_ms(c, ctx), c) for c in candidates]
    known = sorted(
        ((ms, c) for ms, c in timed if ms is not None), key=lambda p: (p[0], p[1].model_id)
    )
    unknown = sorted((c for ms, c in timed if ms is None), key=lambda c: _cost_key(c, ctx))
    ranked = [Ranked(c, f"~{round(ms)} ms expected") for ms, c in known]
    return ranked + [Ranked(c, "not observed yet") for c in unknown]


def priority(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """In the router's list order; unlisted models after, cheapest first."""
    entries = ctx.router.priority

    def position(candidate: Candidate) -> int:
        for index, pattern in enumerate(entries):
            if pattern == candidate.model_id or glob_matches(pattern, candidate.model_id):
                return index
        return len(entries)

    ordered = sorted(candidates, key=lambda c: (position(c), _cost_key(c, ctx)))
    ranked = []
    for candidate in ordered:
        place = position(candidate)
        label = f"priority {place + 1}" if place < len(entries) else "unlisted"
        ranked.append(Ranked(candidate, label))
    return ranked


def weighted(candidates: Sequence[Candidate], ctx: StrategyInput) -> list[Ranked]:
    """A weighted draw picks the first; the rest by weight, then price."""
    weights = ctx.router.weights
    weighed = [
        (1 if not weights else (_first_match(weights, c.model_id) or 0), c) for c in candidates
    ]
    weighed.sort(key=lambda p: (-p[0], _cost_key(p[1], ctx)))
    drawable = [(w, c) for w, c in weighed if w > 0]
    if drawable:
        rng = ctx.rng or random.Random()  # noqa: S311 - load splitting, not security
        pick = rng.uniform(0, sum(w for w, _ in drawable))
        for index, (weight, _candidate) in enumerate(drawable):
            pick -= weight
            if pick <= 0 or index == len(drawable) - 1:
                weighed.remove(drawable[index])
                weighed.insert(0, drawable[index])
                break
    return [Ranked(c, f"weight {w}") for w, c in weighed]


STRATEGIES: Mapping[str, Strategy] = MappingProxyType(
    {
        "cheapest": cheapest,
        "quality": quality,
        "balanced": balanced,
        "fastest": fastest,
        "priority": priority,
        "weighted": weighted,
    }
)
