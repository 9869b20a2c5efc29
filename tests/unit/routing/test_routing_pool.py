"""The selector's kept work over a pool: splits by access and capabilities, costing tables,
orders made lazily, and the walk to the targets to try. Each must give exactly what working
everything out per request gives, which is what these tests compare against."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from orcarouter.catalog import ModelInfo, PriceTier
from orcarouter.routing.candidates import Admissions, Candidate, filter_candidates
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import Target
from orcarouter.routing.select import RouteSelector, first_live
from orcarouter.routing.strategies import STRATEGIES, DayFigures, Ranked, Ranking, StrategyInput
from orcarouter.routing.table import RouterTable
from tests.unit.routing.routers_support import (
    TODAY,
    FakeLatency,
    Figures,
    NoRouterSource,
    candidates,
    model,
    spec,
    world,
)

CAPABILITIES = ("tools", "vision", "structured_output", "reasoning", "streaming")
PROMPTS = (0, 300, 4_000, 30_000, 120_000, 400_000)
MAX_TOKENS = (None, 100, 8_000, 40_000)


def _random_model(rng: random.Random, index: int) -> ModelInfo:
    provider_id = rng.choice(("p", "q"))
    price = rng.choice((None, "0.1", "0.15", "1", "2.5", "3", "15"))  # ties on purpose
    info = model(
        f"m{index:02d}",
        price,
        rng.choice((None, "0.6", "4", "60")) if price is not None else None,
        provider_id=provider_id,
        caps=frozenset(rng.sample(CAPABILITIES, rng.randint(0, len(CAPABILITIES)))),
        context=rng.choice((None, 8_000, 128_000, 200_000, 1_000_000)),
        max_output=rng.choice((None, 4_096, 16_384, 64_000)),
        released=rng.choice((None, "2023-06-01", "2025-03-15", "2026-01-01")),
    )
    if price is not None and rng.random() < 0.2:  # a dearer rate above 200k input tokens
        tier = PriceTier(200_000, Decimal(price) * 2, Decimal(price) * 3)
        info = replace(info, prices=(replace(info.prices[0], tiers=(tier,)),))
    if rng.random() < 0.2:
        info = replace(info, input_modalities=("text", "pdf"))
    return info


def _random_needs(rng: random.Random) -> RequestNeeds:
    return RequestNeeds(
        prompt_tokens=rng.choice(PROMPTS),
        max_tokens=rng.choice(MAX_TOKENS),
        tools=rng.random() < 0.3,
        images=rng.random() < 0.2,
        documents=rng.random() < 0.1,
        structured_output=rng.random() < 0.1,
        reasoning=rng.random() < 0.2,
    )


ACCESS = (None, re.compile(r"p/.*"), re.compile(r"q/m0.|p/m1."), re.compile(r"(?!x)x"))


def _allowed(access: re.Pattern[str] | None) -> Callable[[str], bool]:
    if access is None:
        return lambda _m: True
    return lambda m: access.fullmatch(m) is not None


def test_admissions_split_as_the_plain_filter_does() -> None:
    rng = random.Random(7)
    pool = tuple(sorted(candidates(*(_random_model(rng, i) for i in range(60))), key=_by_id))
    admissions = Admissions(pool, lambda kept: ("annex", kept))
    for _ in range(600):  # up to 128 distinct splits: the kept ones fill, clear and refill
        needs, access = _random_needs(rng), rng.choice(ACCESS)
        kept, excluded, annex = admissions.split(needs, access)
        expected_kept, expected_excluded = filter_candidates(pool, needs, _allowed(access))
        assert list(kept) == expected_kept
        assert excluded == expected_excluded
        # the annex comes exactly when no kept candidate is too small: with the split's own
        # candidates, never with a subset
        capabilities_only = replace(needs, prompt_tokens=0, max_tokens=None)
        split_kept, _ = filter_candidates(pool, capabilities_only, _allowed(access))
        if expected_kept == split_kept:
            assert annex == ("annex", kept)
        else:
            assert annex is None


def _by_id(candidate: Candidate) -> str:
    return candidate.model_id


@pytest.mark.parametrize("strategy", ["cheapest", "quality", "balanced", "priority", "fastest"])
def test_selector_ranks_and_scores_as_the_plain_strategy_does(strategy: str) -> None:
    rng = random.Random(strategy)
    infos = [_random_model(rng, i) for i in range(50)]
    catalog, resolver, pool = world(*infos)
    router = spec(
        strategy,
        name="r",
        quality_bar=45,
        priority=("q/*", "p/m3*"),
        quality_scores={"p/m1*": 99},
    )
    table = RouterTable(NoRouterSource())  # type: ignore[arg-type]
    table.replace([router])
    seen = {c.model_id: Figures(rng.randint(50, 900), 80.0) for c in pool[::3]}
    latency = FakeLatency(seen)
    selector = RouteSelector(table, pool, resolver, catalog, latency=latency, today=lambda: TODAY)
    ordered = sorted(pool, key=_by_id)
    for _ in range(150):
        needs, access = _random_needs(rng), rng.choice(ACCESS)
        kept, excluded = filter_candidates(ordered, needs, _allowed(access))
        if not kept:
            continue
        decision = selector.route("ws", "orcarouter/r", needs, access)
        ctx = StrategyInput(needs, router, TODAY, latency, None, DayFigures())
        expected = STRATEGIES[strategy](kept, ctx)
        assert [(r.candidate.model_id, r.score) for r in decision.ranked] == [
            (r.candidate.model_id, r.score) for r in expected
        ]
        assert list(decision.excluded) == excluded


def test_the_selector_asks_health_about_candidates_only_while_some_target_is_down() -> None:
    catalog, resolver, pool = world(*(model(f"m{i}", str(i + 1)) for i in range(40)))
    table = RouterTable(NoRouterSource())  # type: ignore[arg-type]
    table.replace([spec(name="r")])
    health = _Health()
    selector = RouteSelector(table, pool, resolver, catalog, health=health)
    needs = RequestNeeds(100)
    assert selector.route("ws", "orcarouter/r", needs).chosen.model_id == "p/m0"
    assert health.asked == []
    health.down.add("p/m0")
    decision = selector.route("ws", "orcarouter/r", needs)
    assert decision.chosen.model_id == "p/m1" and len(health.asked) == 40
    assert [(e.model_id, e.need) for e in decision.excluded] == [("p/m0", "health")]


def test_a_ranking_makes_only_what_is_read() -> None:
    pool = candidates(*(model(f"m{i}", "1") for i in range(100)))
    made: list[int] = []

    def rank(i: int) -> Ranked:
        made.append(i)
        return Ranked(pool[i], "place {}", (i,))

    ranking = Ranking(pool, rank)
    assert len(ranking) == 100 and not made
    assert [r.score for r in ranking[:3]] == ["place 0", "place 1", "place 2"]
    assert ranking[-1].candidate is pool[99] and ranking[0] is ranking[0]
    assert sorted(made) == [0, 1, 2, 99]  # each made once
    with pytest.raises(IndexError):
        ranking[100]
    last = Ranked(pool[0], "default model")
    longer = ranking.then(last)
    assert len(longer) == 101 and longer[100] is last and longer[5].score == "place 5"
    picked = longer.only([100, 7])
    assert [r.score for r in picked] == ["default model", "place 7"]
    assert sorted(made) == [0, 1, 2, 5, 7, 99]


class _Health:
    def __init__(self, *down: str) -> None:
        self.down = set(down)
        self.asked: list[str] = []

    def is_live(self, model_id: str) -> bool:
        self.asked.append(model_id)
        return model_id not in self.down

    def all_live(self) -> bool:
        return not self.down


def _targets(*ids: str) -> list[Target]:
    return [c.target for c in candidates(*(model(i, "1") for i in ids))]


def test_first_live_reads_no_further_than_it_needs() -> None:
    read: list[str] = []

    def walk(targets: list[Target]) -> Iterator[Target]:
        for target in targets:
            read.append(target.model_id)
            yield target

    many = _targets(*(f"m{i}" for i in range(400)))
    healthy = _Health()
    picked = first_live(walk(many), healthy, 3)
    assert [t.model_id for t in picked] == ["p/m0", "p/m1", "p/m2"]
    assert read == ["p/m0", "p/m1", "p/m2"] and healthy.asked == []  # nothing down: not asked


def test_first_live_skips_repeats_and_the_down_and_keeps_order_when_none_is_live() -> None:
    a, b, c, d = _targets("a", "b", "c", "d")
    health = _Health("p/b")
    picked = first_live([a, b, a, c, d], health, 2)
    assert [t.model_id for t in picked] == ["p/a", "p/c"]
    throttled = _Health("p/c@ws")  # down only as this workspace reaches it
    picked = first_live([a, c, d], throttled, 3, lambda t: f"{t.model_id}@ws")
    assert [t.model_id for t in picked] == ["p/a", "p/d"]
    everything_down = _Health("p/a", "p/b", "p/c")
    assert [t.model_id for t in first_live([c, a, c, b], everything_down, 2)] == ["p/c", "p/a"]
