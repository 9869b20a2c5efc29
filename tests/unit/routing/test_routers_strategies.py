"""Each strategy orders the candidates it is given, deterministically, with a score for each."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from orcarouter.catalog import Price, PriceTier
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.strategies import (
    Ranked,
    StrategyInput,
    balanced,
    cheapest,
    fastest,
    priority,
    quality,
    quality_score,
    usd_text,
    weighted,
)
from tests.unit.routing.routers_support import (
    TODAY,
    FakeLatency,
    Figures,
    candidates,
    model,
    spec,
)


def _order(ranked: Sequence[Ranked]) -> list[str]:
    return [r.candidate.model_id for r in ranked]


def _ctx(
    strategy: str = "cheapest", needs: RequestNeeds | None = None, **kw: object
) -> StrategyInput:
    latency = kw.pop("latency", None)
    rng = kw.pop("rng", None)
    return StrategyInput(
        needs or RequestNeeds(prompt_tokens=1000, max_tokens=100),
        spec(strategy, **kw),
        TODAY,
        latency,  # type: ignore[arg-type]
        rng,  # type: ignore[arg-type]
    )


def test_cheapest_prices_the_expected_token_mix() -> None:
    # cheap input, dear output vs the reverse: which is cheaper depends on the request
    reader = model("reader", "0.10", "10")
    writer = model("writer", "5", "0.20")
    pool = candidates(reader, writer)
    long_prompt = RequestNeeds(prompt_tokens=100_000, max_tokens=100)
    long_answer = RequestNeeds(prompt_tokens=100, max_tokens=50_000)
    ranked = cheapest(pool, _ctx(needs=long_prompt))
    assert _order(ranked) == ["p/reader", "p/writer"]
    assert ranked[0].score == "$0.011000"  # 100,000 x $0.10 + 100 x $10, per million
    assert _order(cheapest(pool, _ctx(needs=long_answer))) == ["p/writer", "p/reader"]


def test_cheapest_resolves_price_tiers_for_this_request_and_records_the_exact_cost() -> None:
    # Long prompts cost more per token on a tiered model: cheapest for a short prompt, dearest
    # for a long one; the score is the exact expected cost of the tier that applies.
    base = model("tiered", "1", "2")
    tiered = replace(
        base,
        prices=(replace(base.prices[0], tiers=(PriceTier(1000, Decimal(9), Decimal(18)),)),),
    )
    flat = model("flat", "3", "6")
    pool = candidates(tiered, flat)
    short = RequestNeeds(prompt_tokens=1000, max_tokens=100)
    long = RequestNeeds(prompt_tokens=1001, max_tokens=100)
    ranked = cheapest(pool, _ctx(needs=short))
    assert _order(ranked) == ["p/tiered", "p/flat"]
    assert [r.score for r in ranked] == ["$0.001200", "$0.003600"]  # 1000 x 1 + 100 x 2, ...
    ranked = cheapest(pool, _ctx(needs=long))
    assert _order(ranked) == ["p/flat", "p/tiered"]
    assert [r.score for r in ranked] == ["$0.003603", "$0.010809"]  # 1001 x 9 + 100 x 18


def test_cheapest_puts_unpriced_models_last_and_breaks_ties_by_id() -> None:
    pool = candidates(model("z", "1"), model("unpriced", None), model("a", "1"))
    ranked = cheapest(pool, _ctx())
    assert _order(ranked) == ["p/a", "p/z", "p/unpriced"]
    assert ranked[0].score.startswith("$") and ranked[-1].score == "unpriced"


def test_cheapest_with_no_max_tokens_expects_a_default_output() -> None:
    needs = RequestNeeds(prompt_tokens=10)
    assert needs.expected_output_tokens == 1000


def test_quality_heuristic_prefers_newer_dearer_reasoning_models() -> None:
    old_cheap = model("old", "0.1", "0.4", released="2023-03-01", caps=frozenset({"streaming"}))
    new_dear = model(
        "new", "5", "30", released="2026-04-01", caps=frozenset({"reasoning", "tools", "vision"})
    )
    assert quality_score(new_dear, TODAY) > 80 > 20 > quality_score(old_cheap, TODAY)
    assert _order(quality(candidates(old_cheap, new_dear), _ctx("quality"))) == ["p/new", "p/old"]


def test_quality_scores_on_the_router_override_the_heuristic() -> None:
    pool = candidates(model("a", "10"), model("b", "0.1"))
    ranked = quality(pool, _ctx("quality", quality_scores={"p/b": 99, "p/a*": 1}))
    assert _order(ranked) == ["p/b", "p/a"]
    assert ranked[0].score == "quality 99"


def test_balanced_picks_the_cheapest_above_the_bar_else_the_best() -> None:
    pool = candidates(model("weak", "0.1"), model("good", "1"), model("great", "5"))
    scores = {"p/weak": 40, "p/good": 70, "p/great": 90}
    ranked = balanced(pool, _ctx("balanced", quality_scores=scores, quality_bar=60))
    assert _order(ranked) == ["p/good", "p/great", "p/weak"]
    assert ranked[0].score.startswith("quality 70 >= bar 60")
    nothing_meets = balanced(pool, _ctx("balanced", quality_scores=scores, quality_bar=95))
    assert _order(nothing_meets) == ["p/great", "p/good", "p/weak"]


def test_fastest_uses_observed_ttft_and_throughput_and_puts_unknown_last() -> None:
    pool = candidates(
        model("snappy", "1"), model("steady", "1"), model("new-a", "2"), model("new-b", "1")
    )
    latency = FakeLatency(
        {
            "p/snappy": Figures(100, 10.0),  # 100 ms + 100 tokens at 10/s = 10.1 s
            "p/steady": Figures(800, 200.0),  # 800 ms + 0.5 s = 1.3 s
        }
    )
    ranked = fastest(pool, _ctx("fastest", latency=latency))
    assert _order(ranked) == ["p/steady", "p/snappy", "p/new-b", "p/new-a"]
    assert ranked[-1].score == "not observed yet"


def test_priority_follows_the_list_then_the_rest_by_price() -> None:
    pool = candidates(model("a", "1"), model("b", "2"), model("c", "3"), model("d", "0.5"))
    ranked = priority(pool, _ctx("priority", priority=("p/c", "p/b*")))
    assert _order(ranked) == ["p/c", "p/b", "p/d", "p/a"]
    assert [r.score for r in ranked[:3]] == ["priority 1", "priority 2", "unlisted"]


def test_weighted_splits_load_by_weight_under_a_seeded_rng() -> None:
    pool = candidates(model("a", "1"), model("b", "1"), model("never", "0.1"))
    weights = {"p/a": 3, "p/b": 1, "p/never": 0}
    rng = random.Random(1234)
    firsts = Counter(
        _order(weighted(pool, _ctx("weighted", weights=weights, rng=rng)))[0] for _ in range(4000)
    )
    assert set(firsts) == {"p/a", "p/b"}
    assert 0.70 < firsts["p/a"] / 4000 < 0.80
    again = [
        _order(weighted(pool, _ctx("weighted", weights=weights, rng=random.Random(7))))
        for _ in range(3)
    ]
    assert again[0] == again[1] == again[2]
    assert again[0][-1] == "p/never"  # a zero weight is never drawn, only a last resort


def test_weighted_with_no_weights_splits_evenly() -> None:
    pool = candidates(model("a", "1"), model("b", "1"))
    rng = random.Random(3)
    firsts = Counter(_order(weighted(pool, _ctx("weighted", rng=rng)))[0] for _ in range(2000))
    assert 0.4 < firsts["p/a"] / 2000 < 0.6


@given(
    st.decimals(0, 200, places=6) | st.decimals(0, 200, places=7),  # 7: finer than the ints
    st.decimals(0, 200, places=6),
    st.integers(0, 2_000_000),
    st.integers(1, 200_000),
)
def test_a_recorded_cost_is_the_exact_figure_rounded_half_to_even(
    per_input: Decimal, per_output: Decimal, prompt: int, output: int
) -> None:
    price = Price(TODAY, input=per_input, output=per_output)
    needs = RequestNeeds(prompt_tokens=prompt, max_tokens=output)
    exact = (per_input * prompt + per_output * output) / 1_000_000
    expected = exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    assert usd_text(price, needs) == f"${expected}"


def test_a_recorded_cost_halfway_between_two_micro_dollars_goes_to_the_even_one() -> None:
    price = Price(TODAY, input=Decimal("0.000001"), output=Decimal(0))  # 1e-12 $ a token
    assert price.micro_rates == (1, 0)
    halves = [
        usd_text(price, RequestNeeds(prompt_tokens=n, max_tokens=1)) for n in (500_000, 1_500_000)
    ]
    assert halves == ["$0.000000", "$0.000002"]
    finer = Price(TODAY, input=Decimal("0.0000001"), output=Decimal(0))
    assert finer.micro_rates is None
    assert Price(TODAY, input=Decimal("Infinity"), output=Decimal(1)).micro_rates is None
    assert usd_text(finer, RequestNeeds(prompt_tokens=5_000_000, max_tokens=1)) == "$0.000000"
