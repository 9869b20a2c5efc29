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

A request through a router ranks every model its pool admits, which with a whole catalog behind
it (three providers: about 80 chat models; with OpenRouter, about 450) is the largest per-request
loop in the gateway. So the day-long figures (price in effect, quality score) come from
``DayFigures``, laid out in a ``CostTable`` that the selector keeps for each split of its pool;
a request costs the table in one pass of floats and sorts positions, and a strategy returns a
``Ranking``, which makes a ``Ranked`` (and renders its score) only for what is read. Ties need
no string comparisons: a table is in model-id order, and every sort after that is stable on a
single number.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Protocol, overload

from orcarouter.catalog import ModelInfo, Price
from orcarouter.routing.candidates import BY_MODEL_ID, Candidate
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.routers import RouterSpec, glob_matches

MILLION: Final = Decimal(1_000_000)
MICRO: Final = Decimal("0.000001")


class LatencyFigures(Protocol):
    """What ``fastest`` reads of one model (``metering.stats.LatencySummary`` fits)."""

    @property
    def ttft_p50_ms(self) -> int | None: ...
    @property
    def output_tok_per_sec(self) -> float | None: ...


class LatencySource(Protocol):
    """Observed performance per ``provider/model`` (``metering.stats.ModelStats`` fits)."""

    def latency(self, model: str) -> LatencyFigures: ...


Rate = tuple[Price, float, float]  # a price and its input and output rates as floats


class DayFigures:
    """Figures of a router's candidates that hold for a day: the price in effect and the
    quality score (the router's override, else the heuristic), each worked out once.

    Keyed by model id: one instance serves one router (its overrides) on one day, which the
    selector ensures by keeping one per pool and replacing it when the day or router changes.
    """

    __slots__ = ("_qualities", "_rates")

    def __init__(self) -> None:
        self._rates: dict[str, Rate | None] = {}
        self._qualities: dict[str, int] = {}

    def rate(self, candidate: Candidate, today: date) -> Rate | None:
        """The candidate's catalog price in effect today, None when it has none."""
        key = candidate.model_id
        try:
            return self._rates[key]
        except KeyError:
            price = candidate.info.price_at(today)
            rate = None if price is None else (price, float(price.input), float(price.output))
            self._rates[key] = rate
            return rate

    def quality(self, candidate: Candidate, ctx: StrategyInput) -> int:
        """The router's quality override for the candidate, else the catalog heuristic."""
        key = candidate.model_id
        try:
            return self._qualities[key]
        except KeyError:
            override = _first_match(ctx.router.quality_scores, key)
            score = override if override is not None else quality_score(candidate.info, ctx.today)
            self._qualities[key] = score
            return score


@dataclass(frozen=True, slots=True)
class StrategyInput:
    """Everything a strategy may look at besides the candidates."""

    needs: RequestNeeds
    router: RouterSpec
    today: date
    latency: LatencySource | None = None
    rng: random.Random | None = None
    day: DayFigures = field(default_factory=DayFigures)  # for ``router`` on ``today``
    table: CostTable | None = None  # the candidates' costing table, when the selector kept one


def usd_text(price: Price | None, needs: RequestNeeds) -> str:
    """A request's expected cost as the record shows it: in USD to the micro-dollar (rounded
    half to even, exactly), or ``unpriced``."""
    if price is None:
        return "unpriced"
    rates = price.micro_rates
    if rates is None:  # a rate finer than the integers hold
        return f"${_usd(price, needs).quantize(MICRO)}"
    # In integers: 0.6 µs against 1.3 for the same figure in Decimal.
    total = rates[0] * needs.prompt_tokens + rates[1] * needs.expected_output_tokens
    micros, rest = divmod(total, 1_000_000)
    if rest > 500_000 or (rest == 500_000 and micros & 1):
        micros += 1
    # Digits cut rather than ``f"{fraction:06d}"``: a format spec is a method call per figure
    # in compiled code, ``str`` of an int and slices are not.
    digits = str(micros)
    if len(digits) < 7:
        digits = "0" * (7 - len(digits)) + digits
    return "$" + digits[:-6] + "." + digits[-6:]


@dataclass(slots=True)  # not frozen: made once per candidate, and frozen costs 3x
class Ranked:
    """A candidate in its place, with its score: the text itself (strategies whose
    ``Ranking`` makes a ``Ranked`` only when read), or a ``template`` and the ``figures`` it
    is rendered from on first read (strategies that place every candidate up front)."""

    candidate: Candidate
    template: str
    figures: tuple[object, ...] = ()
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def score(self) -> str:
        """The score as text, e.g. ``$0.000120`` or ``quality 72 >= bar 60, $0.000120``
        (rendered once: the header and the record both show the first)."""
        if self._text is None:
            self._text = self.template.format(*self.figures) if self.figures else self.template
        return self._text


class Ranking(Sequence[Ranked]):
    """A strategy's order: the candidates, best first, each made a ``Ranked`` only when read.

    A router over a whole catalog orders hundreds of candidates, and a request reads a few of
    them as ``Ranked``: the one served, the record's first 25 (``candidates`` lists them all
    without making any).
    """

    __slots__ = ("_made", "_rank", "candidates")

    def __init__(self, candidates: Sequence[Candidate], rank: Callable[[int], Ranked]) -> None:
        self.candidates = candidates
        self._rank = rank  # the Ranked at a position of ``candidates``
        self._made: dict[int, Ranked] = {}

    @classmethod
    def of(cls, ranked: Sequence[Ranked]) -> Ranking:
        """An order already made."""
        return cls([r.candidate for r in ranked], ranked.__getitem__)

    def __len__(self) -> int:
        return len(self.candidates)

    @overload
    def __getitem__(self, index: int) -> Ranked: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ranked]: ...

    def __getitem__(self, index: int | slice) -> Ranked | list[Ranked]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self.candidates)))]
        if index < 0:
            index += len(self.candidates)
        if not 0 <= index < len(self.candidates):
            raise IndexError(index)
        return self._at(index)

    def _at(self, index: int) -> Ranked:
        made = self._made.get(index)
        if made is None:
            made = self._made[index] = self._rank(index)
        return made

    def then(self, last: Ranked) -> Ranking:
        """This order with ``last`` after it."""
        end = len(self.candidates)
        return Ranking(
            [*self.candidates, last.candidate], lambda i: last if i == end else self._at(i)
        )

    def only(self, positions: Sequence[int]) -> Ranking:
        """The candidates at ``positions``, in that order."""
        return Ranking([self.candidates[i] for i in positions], lambda i: self._at(positions[i]))


Strategy = Callable[[Sequence[Candidate], StrategyInput], Ranking]


def _usd(price: Price, needs: RequestNeeds) -> Decimal:
    """The expected cost at this price (its tier already chosen), exactly."""
    return (
        price.input * needs.prompt_tokens + price.output * needs.expected_output_tokens
    ) / MILLION


@dataclass(frozen=True, slots=True)
class CostTable:
    """Some candidates' figures for the day, laid out for costing a request: the priced ones
    (model-id order) with their rates as floats and the positions of those with tiers, the
    unpriced ones apart, and each one's quality score. The selector keeps one for each split
    of its pool; for other candidates a strategy makes one."""

    priced: tuple[Candidate, ...]
    prices: tuple[Price, ...]
    rates: tuple[tuple[float, float], ...]  # per input and per output million tokens
    tiered: tuple[int, ...]
    unpriced: tuple[Candidate, ...]
    qualities: tuple[int, ...]  # of ``priced`` then ``unpriced``

    @classmethod
    def of(cls, candidates: Sequence[Candidate], ctx: StrategyInput) -> CostTable:
        """The table of ``candidates`` (any order) from the figures of ``ctx.day``."""
        day, today = ctx.day, ctx.today
        priced: list[Candidate] = []
        prices: list[Price] = []
        rates: list[tuple[float, float]] = []
        unpriced: list[Candidate] = []
        for c in sorted(candidates, key=BY_MODEL_ID):  # in id order already: linear
            rate = day.rate(c, today)
            if rate is None:
                unpriced.append(c)
                continue
            priced.append(c)
            prices.append(rate[0])
            rates.append((rate[1], rate[2]))
        tiered = tuple(i for i, price in enumerate(prices) if price.tiers)
        qualities = tuple(day.quality(c, ctx) for c in (*priced, *unpriced))
        return cls(tuple(priced), tuple(prices), tuple(rates), tiered, tuple(unpriced), qualities)


@dataclass(frozen=True, slots=True)
class Costed:
    """Candidates cheapest first (unpriced last, ties by model id), each with the price (tier
    resolved) it was placed by and its quality score."""

    order: list[Candidate]
    prices: list[Price | None]
    qualities: list[int]


def _by_cost(candidates: Sequence[Candidate], ctx: StrategyInput) -> Costed:
    """The candidates by this request's expected cost. The order compares floats; the record
    renders the exact cost from the price. The sorts that follow are stable, so they keep this
    order among their own ties."""
    table = ctx.table if ctx.table is not None else CostTable.of(candidates, ctx)
    prompt, output = ctx.needs.prompt_tokens, ctx.needs.expected_output_tokens
    costs = [per_input * prompt + per_output * output for per_input, per_output in table.rates]
    prices: Sequence[Price] = table.prices
    if table.tiered:
        prices = list(prices)
        for i in table.tiered:
            price = prices[i] = prices[i].for_input_tokens(prompt)
            costs[i] = float(price.input) * prompt + float(price.output) * output
    positions = sorted(range(len(costs)), key=costs.__getitem__)  # stable: ties by model id
    priced, qualities = table.priced, table.qualities
    unpriced = table.unpriced
    order = [priced[i] for i in positions]  # list displays: a generator costs 2x per item
    order += unpriced
    ordered_prices: list[Price | None] = [prices[i] for i in positions]
    ordered_prices += [None] * len(unpriced)
    ordered_qualities = [qualities[i] for i in positions]
    ordered_qualities += qualities[len(priced) :]
    return Costed(order, ordered_prices, ordered_qualities)


def _first(item: tuple[Any, ...]) -> Any:
    return item[0]


def _first_descending(item: tuple[Any, ...]) -> Any:
    return -item[0]


def cheapest(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """Lowest expected cost first."""
    costed, needs = _by_cost(candidates, ctx), ctx.needs
    order, prices = costed.order, costed.prices
    return Ranking(order, lambda i: Ranked(order[i], usd_text(prices[i], needs)))


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


def quality(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """Highest quality first; cheaper first among equals."""
    costed = _by_cost(candidates, ctx)
    qualities = costed.qualities
    lower = [-q for q in qualities]
    positions = sorted(range(len(lower)), key=lower.__getitem__)  # stable: cheaper first
    order = [costed.order[i] for i in positions]
    return Ranking(order, lambda i: Ranked(order[i], f"quality {qualities[positions[i]]}"))


def balanced(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """The cheapest that meet the bar first, then the rest by quality."""
    bar, needs = ctx.router.bar, ctx.needs
    costed = _by_cost(candidates, ctx)
    qualities, prices = costed.qualities, costed.prices
    everyone = range(len(qualities))
    lower = [-q for q in qualities]
    positions = [i for i in everyone if qualities[i] >= bar] + sorted(
        (i for i in everyone if qualities[i] < bar), key=lower.__getitem__
    )
    order = [costed.order[i] for i in positions]

    def rank(i: int) -> Ranked:
        q, price = qualities[positions[i]], prices[positions[i]]
        meets = ">=" if q >= bar else "<"
        return Ranked(order[i], f"quality {q} {meets} bar {bar}, {usd_text(price, needs)}")

    return Ranking(order, rank)


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


def fastest(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """Shortest expected time first; unobserved models last, cheapest first."""
    timed = [(_expected_ms(c, ctx), c) for c in candidates]
    known = sorted(
        ((ms, c) for ms, c in timed if ms is not None), key=lambda p: (p[0], p[1].model_id)
    )
    unobserved = [c for ms, c in timed if ms is None]
    unknown = _by_cost(unobserved, replace(ctx, table=None)).order  # a subset: not its table
    ranked = [Ranked(c, "~{} ms expected", (round(ms),)) for ms, c in known]
    return Ranking.of(ranked + [Ranked(c, "not observed yet") for c in unknown])


def priority(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """In the router's list order; unlisted models after, cheapest first."""
    entries = ctx.router.priority

    def position(candidate: Candidate) -> int:
        for index, pattern in enumerate(entries):
            if pattern == candidate.model_id or glob_matches(pattern, candidate.model_id):
                return index
        return len(entries)

    placed = [(position(c), c) for c in _by_cost(candidates, ctx).order]
    placed.sort(key=_first)
    listed = len(entries)
    return Ranking.of(
        [
            Ranked(c, "priority {}", (place + 1,)) if place < listed else Ranked(c, "unlisted")
            for place, c in placed
        ]
    )


def weighted(candidates: Sequence[Candidate], ctx: StrategyInput) -> Ranking:
    """A weighted draw picks the first; the rest by weight, then price."""
    weights = ctx.router.weights
    weighed = [
        (1 if not weights else (_first_match(weights, c.model_id) or 0), c)
        for c in _by_cost(candidates, ctx).order
    ]
    weighed.sort(key=_first_descending)
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
    return Ranking.of([Ranked(c, "weight {}", (w,)) for w, c in weighed])


STRATEGIES: Final[Mapping[str, Strategy]] = MappingProxyType(
    {
        "cheapest": cheapest,
        "quality": quality,
        "balanced": balanced,
        "fastest": fastest,
        "priority": priority,
        "weighted": weighted,
    }
)
