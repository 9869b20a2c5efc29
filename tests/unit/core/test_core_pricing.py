"""Request costs from catalog prices, in micro-dollars, checked against hand computations."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orcarouter.canonical import Usage
from orcarouter.catalog import Catalog, Price
from orcarouter.catalog.model import PriceTier
from orcarouter.metering.pricing import Pricer, cost_micros, exact_cost_micros, usd
from orcarouter.metering.usage import UsageRecord
from orcarouter.store.ids import utcnow
from orcarouter.translate.usage import usage_from_anthropic, usage_from_openai
from tests.support.recordings import load_family

SONNET = Price(
    effective_from=date(2025, 1, 1),
    input=Decimal(3),
    output=Decimal(15),
    cache_read=Decimal("0.3"),
    cache_write=Decimal("3.75"),
)


def test_a_recorded_anthropic_answer_with_cache_reads_and_writes() -> None:
    recorded = next(
        i
        for i in load_family("anthropic-messages")
        if i.id == "test_anthropic__test_anthropic_cache_real_api#1"
    )
    assert isinstance(recorded.response_json, dict)
    usage = usage_from_anthropic(recorded.response_json["usage"])
    # input 3, cache read 1111, cache write 418 (5-minute), output 33, on Sonnet 4.5's prices
    # per million: $3 in, $0.30 cache read, $3.75 cache write, $15 out. A token at $p per
    # million costs p micro-dollars:
    by_hand = 3 * 3 + 1111 * Decimal("0.3") + 418 * Decimal("3.75") + 33 * 15  # 2404.8
    assert by_hand == Decimal("2404.8")
    assert cost_micros(usage, SONNET) == 2405
    catalog = Catalog.load_shipped()
    pricer = Pricer(catalog, {"anthropic": "anthropic"}, today=lambda: date(2026, 11, 22))
    assert pricer.cost("anthropic", "anthropic/claude-sonnet-4-5", usage) == 2405
    assert usd(2405) == "0.002405"


def test_one_hour_cache_writes_cost_twice_the_input_rate() -> None:
    usage = usage_from_anthropic(
        {
            "input_tokens": 10,
            "output_tokens": 0,
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
        }
    )
    assert cost_micros(usage, SONNET) == 10 * 3 + 400 * Decimal("3.75") + 600 * 6  # 5130


def test_openai_cached_prompt_tokens_are_not_charged_twice() -> None:
    price = Price(
        effective_from=date(2025, 1, 1),
        input=Decimal("0.15"),
        output=Decimal("0.6"),
        cache_read=Decimal("0.075"),
    )
    usage = usage_from_openai(
        {
            "prompt_tokens": 2000,
            "completion_tokens": 100,
            "total_tokens": 2100,
            "prompt_tokens_details": {"cached_tokens": 1500},
            "completion_tokens_details": {"reasoning_tokens": 60},
        }
    )
    # 500 fresh + 1500 cached input; 100 output of which 60 reasoning (billed as output).
    expected = 500 * Decimal("0.15") + 1500 * Decimal("0.075") + 100 * Decimal("0.6")  # 247.5
    assert cost_micros(usage, price) == 248  # half up
    assert expected == Decimal("247.5")


def test_cache_rates_fall_back_to_the_input_rate_and_tiers_apply_by_prompt_size() -> None:
    tiered = Price(
        effective_from=date(2025, 1, 1),
        input=Decimal("1.25"),
        output=Decimal(10),
        tiers=(PriceTier(above_tokens=200_000, input=Decimal("2.5"), output=Decimal(15)),),
    )
    small = Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=1000)
    assert cost_micros(small, tiered) == 2000 * Decimal("1.25") + 10 * 10
    large = Usage(input_tokens=250_000, output_tokens=1000)
    assert cost_micros(large, tiered) == 250_000 * Decimal("2.5") + 1000 * 15


def test_markup_applies_to_tokens_and_server_tools_are_charged_per_call() -> None:
    usage = Usage(input_tokens=1000, output_tokens=100, server_tool_uses={"web_search_requests": 2})
    plain = 1000 * 3 + 100 * 15  # 4500
    assert cost_micros(usage, SONNET) == plain  # no rate known: tools not charged
    rates = {"web_search_requests": 10_000}  # $10 per 1,000 searches
    assert cost_micros(usage, SONNET, tool_rates=rates) == plain + 20_000
    assert cost_micros(usage, SONNET, Decimal(10), rates) == 4950 + 20_000  # markup: tokens only
    own = Price(
        effective_from=date(2025, 1, 1),
        input=Decimal(3),
        output=Decimal(15),
        per_call={"web_search": Decimal("0.02")},
    )
    assert cost_micros(usage, own, tool_rates=rates) == plain + 40_000  # the model's own rate


def test_the_pricer_prices_records_by_served_model_and_day() -> None:
    catalog = Catalog.load_shipped()
    pricer = Pricer(catalog, {"anthropic": "anthropic"}, today=lambda: date(2026, 11, 22))
    record = UsageRecord("req_1", utcnow(), "ws", "k", "openai.chat", False)
    assert pricer.record_cost(record) == 0  # nothing served, nothing generated
    record.provider_id, record.model_served = "anthropic", "anthropic/claude-sonnet-4-5"
    record.usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert pricer.record_cost(record) == 3_000_000  # $3
    record.provider_id, record.model_served = "local", "local/llama-unknown"
    assert pricer.record_cost(record) is None  # no price: not a guess
    before = Pricer(catalog, {}, today=lambda: date(2020, 1, 1))
    assert before.cost("anthropic", "anthropic/claude-sonnet-4-5", Usage(input_tokens=1)) is None


@pytest.mark.parametrize(("micros", "text"), [(0, "0"), (1, "0.000001"), (2_500_000, "2.5")])
def test_usd_strings(micros: int, text: str) -> None:
    assert usd(micros) == text


# Rates in USD per million tokens from 0 to 1,000, with up to eight decimals: those with more
# than six are finer than a picodollar a token and take the Decimal path.
RATES = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(0, 10**11),
    st.integers(0, 8),
).filter(lambda rate: rate <= 1000)


@given(
    tokens=st.tuples(*[st.integers(0, 10**7)] * 5),
    rates=st.tuples(RATES, RATES, st.none() | RATES, st.none() | RATES),
)
def test_the_integer_sum_costs_what_the_decimal_one_does(
    tokens: tuple[int, int, int, int, int],
    rates: tuple[Decimal, Decimal, Decimal | None, Decimal | None],
) -> None:
    fresh, output, read, written, hour = tokens
    input_rate, output_rate, read_rate, write_rate = rates
    price = Price(
        effective_from=date(2025, 1, 1),
        input=input_rate,
        output=output_rate,
        cache_read=read_rate,
        cache_write=write_rate,
    )
    usage = Usage(
        input_tokens=fresh,
        output_tokens=output,
        cache_read_tokens=read or None,
        cache_write_tokens=written,
        extra={"anthropic": {"cache_creation": {"ephemeral_1h_input_tokens": hour}}},
    )
    assert cost_micros(usage, price) == exact_cost_micros(usage, price)


def test_half_a_micro_dollar_rounds_up_in_integers_as_in_decimals() -> None:
    price = Price(effective_from=date(2025, 1, 1), input=Decimal("0.5"), output=Decimal("1.5"))
    assert price.micro_rates == (500_000, 1_500_000)  # the integer path
    for tokens, micros in ((1, 1), (2, 1), (3, 2), (0, 0)):
        usage = Usage(input_tokens=tokens)
        assert cost_micros(usage, price) == exact_cost_micros(usage, price) == micros
    assert cost_micros(Usage(output_tokens=1), price) == 2  # 1.5 rounds up
