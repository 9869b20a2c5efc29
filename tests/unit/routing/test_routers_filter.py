"""What a request needs, the filter before any strategy, and the selector end to end in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orcarouter.catalog import Price
from orcarouter.errors import ModelNotFound, NoCandidate
from orcarouter.routing.candidates import filter_candidates
from orcarouter.routing.decision import RouteDecision
from orcarouter.routing.needs import BYTES_PER_TOKEN, TOKENS_PER_IMAGE, RequestNeeds, needs_of
from orcarouter.routing.routers import RouterError, RouterSpec, check_fields, check_name
from orcarouter.routing.select import RouteSelector
from orcarouter.routing.table import RouterTable
from tests.unit.routing.routers_support import TODAY, NoRouterSource, candidates, model, spec, world

NO_TOOLS = frozenset({"streaming", "vision"})


def _ids(items: Sequence[object]) -> list[str]:
    return [c.model_id for c in items]  # type: ignore[attr-defined]


def _chat(**extra: object) -> dict[str, object]:
    return {"model": "orcarouter/auto", "messages": [{"role": "user", "content": "hi"}], **extra}


def _route(
    selector: RouteSelector, workspace: str, model: str, payload: dict[str, Any], size: int
) -> RouteDecision:
    """The selector's decision for a body of ``size`` bytes, every model allowed."""
    return selector.route(workspace, model, needs_of(payload, size))


def test_needs_read_both_dialects() -> None:
    tools = {"type": "function", "function": {"name": "f", "parameters": {}}}
    openai = _chat(
        tools=[tools],
        max_completion_tokens=500,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        reasoning_effort="high",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + "A" * 40_000},
                    },
                ],
            }
        ],
    )
    needs = needs_of(openai, 41_000)
    assert (needs.tools, needs.images, needs.structured_output, needs.reasoning) == (True,) * 4
    assert needs.max_tokens == 500
    # the inline image's bytes are not read as text; it costs a fixed allowance instead
    assert needs.prompt_tokens < TOKENS_PER_IMAGE + 1_000 // BYTES_PER_TOKEN + 10
    anthropic = {
        "model": "orcarouter/auto",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {
                "role": "user",
                "content": [{"type": "document", "source": {"type": "base64", "data": "JVBER"}}],
            }
        ],
    }
    needs = needs_of(anthropic, 300)
    assert (needs.documents, needs.reasoning, needs.tools, needs.max_tokens) == (
        True,
        True,
        False,
        2048,
    )
    plain = needs_of(_chat(reasoning_effort="none"), 1_200)
    assert (plain.reasoning, plain.tools, plain.images, plain.prompt_tokens) == (
        False,
        False,
        False,
        300,
    )


def test_a_request_needing_tools_never_reaches_a_model_without_them() -> None:
    pool = candidates(model("no-tools", "0.01", caps=NO_TOOLS), model("tools", "5"))
    kept, excluded = filter_candidates(pool, RequestNeeds(100, tools=True), lambda _m: True)
    assert _ids(kept) == ["p/tools"]
    assert [(e.model_id, e.need) for e in excluded] == [("p/no-tools", "tools")]


def test_a_150k_token_prompt_never_reaches_a_128k_model() -> None:
    pool = candidates(
        model("small", "0.01", context=128_000), model("large", "5", context=1_000_000)
    )
    kept, excluded = filter_candidates(pool, RequestNeeds(150_000), lambda _m: True)
    assert _ids(kept) == ["p/large"]
    assert excluded[0].need == "context" and "128000" in excluded[0].detail


def test_output_limit_input_limit_and_the_keys_allow_list() -> None:
    pool = candidates(
        model("short", "0.01", max_output=4096),
        model("forbidden", "0.02"),
        model("ok", "1"),
    )
    needs = RequestNeeds(1000, max_tokens=8000)
    kept, excluded = filter_candidates(pool, needs, lambda m: m != "p/forbidden")
    assert _ids(kept) == ["p/ok"]
    assert {(e.model_id, e.need) for e in excluded} == {
        ("p/short", "max_tokens"),
        ("p/forbidden", "key"),
    }
    # prompt + max_tokens must fit the window together
    window = candidates(model("w", "1", context=10_000, max_output=None))
    assert (
        filter_candidates(window, RequestNeeds(9_000, max_tokens=2_000), lambda _m: True)[0] == []
    )


def test_image_structured_output_and_reasoning_needs() -> None:
    text_only = replace(model("text", "0.1", caps=frozenset({"tools"})), input_modalities=("text",))
    pool = candidates(
        text_only,
        model("full", "1", caps=frozenset({"tools", "vision", "structured_output", "reasoning"})),
    )
    for needs in (
        RequestNeeds(10, images=True),
        RequestNeeds(10, structured_output=True),
        RequestNeeds(10, reasoning=True),
    ):
        kept, _ = filter_candidates(pool, needs, lambda _m: True)
        assert _ids(kept) == ["p/full"]


def test_router_names_follow_the_hosted_rules() -> None:
    for good in ("auto", "a", "my_router-2", "x" * 50):
        assert check_name(good) == good
    for bad in ("", "Upper", "has space", "x" * 51, "orcarouter", "dot.ted", "slash/x"):
        with pytest.raises(RouterError):
            check_name(bad)
    with pytest.raises(RouterError, match="strategy"):
        check_fields({"strategy": "linucb"})
    with pytest.raises(RouterError, match="quality_bar"):
        check_fields({"quality_bar": 101})
    with pytest.raises(RouterError, match="pattern"):
        check_fields({"allowed_models": ["openai/*", "bad pattern"]})
    with pytest.raises(RouterError, match="default_model"):
        check_fields({"default_model": "openai/*"})
    with pytest.raises(RouterError, match="weights"):
        check_fields({"weights": {"a/b": -1}})


def test_allowed_model_globs_are_case_insensitive_and_empty_means_all() -> None:
    router = spec(allowed_models=("OpenAI/*", "anthropic/claude-haiku-*"))
    assert router.admits("openai/gpt-4o-mini")
    assert router.admits("anthropic/claude-haiku-4-5")
    assert not router.admits("anthropic/claude-opus-4-1")
    assert spec().admits("anything/at-all")


class _Down:
    """Health with the targets in ``down`` ejected."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)

    def is_live(self, model_id: str) -> bool:
        return model_id not in self.down

    def all_live(self) -> bool:
        return not self.down


def _selector(
    routers: Sequence[RouterSpec], *infos: object, health: _Down | None = None
) -> RouteSelector:
    catalog, resolver, pool = world(*infos)  # type: ignore[arg-type]
    table = RouterTable(NoRouterSource())  # type: ignore[arg-type]
    table.replace(routers)
    return RouteSelector(table, pool, resolver, catalog, health=health)


def test_selector_reprices_and_rescores_when_the_day_or_the_router_changes() -> None:
    # The pool's prices and quality scores are worked out once a day per router version: a
    # price taking effect tomorrow must rank tomorrow, and a router edited mid-day re-scores.
    rival = model("rival", "5")
    tomorrow = TODAY + timedelta(days=1)
    rival = replace(rival, prices=(*rival.prices, Price(tomorrow, Decimal("0.5"), Decimal("0.5"))))
    catalog, resolver, pool = world(model("steady", "1"), rival)
    table = RouterTable(NoRouterSource())  # type: ignore[arg-type]
    table.replace([spec(name="auto")])
    day = [TODAY]
    selector = RouteSelector(table, pool, resolver, catalog, today=lambda: day[0])
    assert _route(selector, "ws", "orcarouter/auto", _chat(), 10).chosen.model_id == "p/steady"
    day[0] = tomorrow
    decision = _route(selector, "ws", "orcarouter/auto", _chat(), 10)
    assert decision.chosen.model_id == "p/rival"
    prompt = needs_of(_chat(), 10).prompt_tokens  # and the default 1,000 output tokens
    cost = (Decimal(prompt + 1000) * Decimal("0.5") / 1_000_000).quantize(Decimal("0.000001"))
    assert decision.ranked[0].score == f"${cost}"  # today's price, not yesterday's $5

    by_quality = spec(name="auto", strategy="quality", quality_scores={"p/steady": 90})
    table.replace([by_quality])
    assert _route(selector, "ws", "orcarouter/auto", _chat(), 10).chosen.model_id == "p/steady"
    table.replace([replace(by_quality, quality_scores={"p/rival": 95})])
    assert _route(selector, "ws", "orcarouter/auto", _chat(), 10).chosen.model_id == "p/rival"


def test_selector_leaves_out_unhealthy_targets_unless_none_is_left() -> None:
    health = _Down("p/cheap")
    cheap, dear = model("cheap", "0.1"), model("dear", "5")
    selector = _selector([spec(name="auto")], cheap, dear, health=health)
    decision = _route(selector, "ws", "orcarouter/auto", _chat(), 10)
    assert _ids(decision.candidates) == ["p/dear"]
    assert decision.ranked[0].candidate.model_id == "p/dear" and len(decision.ranked) == 1
    assert "excluded health=1" in decision.header()
    health.down.add("p/dear")  # nothing is live: every candidate stays, in order
    panic = _route(selector, "ws", "orcarouter/auto", _chat(), 10)
    assert _ids(panic.candidates) == ["p/cheap", "p/dear"]


def test_selector_orders_candidates_and_explains_the_decision() -> None:
    infos = (
        model("cheap-no-tools", "0.01", caps=NO_TOOLS),
        model("mid", "0.5"),
        model("dear", "5"),
        model("embedder", "0.001", kind="embedding"),
    )
    selector = _selector([spec(name="auto", workspace_id="ws")], *infos)
    decision = _route(selector, "ws", "orcarouter/auto", _chat(tools=[{"type": "function"}]), 400)
    assert _ids(decision.candidates) == ["p/mid", "p/dear"]  # ordered for a later failover
    assert decision.chosen.model_id == "p/mid"
    header = decision.header()
    assert header.startswith("cheapest; chose p/mid ($") and "excluded tools=1" in header
    reason = decision.reason_json()
    assert '"need":"tools"' in reason and '"router":"orcarouter/auto"' in reason
    assert "embedder" not in reason  # only chat models are candidates
    plain = _route(selector, "ws", "orcarouter/auto", _chat(), 400)
    assert plain.chosen.model_id == "p/cheap-no-tools"


def test_selector_errors_say_what_was_missing() -> None:
    selector = _selector(
        [spec(name="auto"), spec(name="off", enabled=False)],
        model("small", "0.1", context=128_000, caps=NO_TOOLS),
    )
    with pytest.raises(ModelNotFound, match="does not exist"):
        _route(selector, "ws", "orcarouter/nope", _chat(), 10)
    with pytest.raises(ModelNotFound, match="disabled"):
        _route(selector, "ws", "orcarouter/off", _chat(), 10)
    with pytest.raises(ModelNotFound):  # routers belong to their workspace
        _route(selector, "other-ws", "orcarouter/auto", _chat(), 10)
    with pytest.raises(NoCandidate, match=r"tools \(1 model") as caught:
        _route(selector, "ws", "orcarouter/auto", _chat(tools=[{}]), 10)
    assert caught.value.status == 400
    with pytest.raises(NoCandidate, match="context"):
        _route(selector, "ws", "orcarouter/auto", _chat(), 150_000 * BYTES_PER_TOKEN)


def test_default_model_is_the_last_resort_and_is_filtered_too() -> None:
    infos = (
        model("a", "1", provider_id="p"),
        model("b", "2", provider_id="p"),
        model("fallback", "9", provider_id="q"),
        model("fallback-no-tools", "9", provider_id="q", caps=NO_TOOLS),
    )
    routers = [
        spec(name="r", allowed_models=("p/*",), default_model="q/fallback"),
        spec(name="s", allowed_models=("nothing/*",), default_model="q/fallback-no-tools"),
    ]
    selector = _selector(routers, *infos)
    decision = _route(selector, "ws", "orcarouter/r", _chat(), 10)
    assert _ids(decision.candidates) == ["p/a", "p/b", "q/fallback"]
    assert decision.ranked[-1].score == "default model"
    only_default = _route(selector, "ws", "orcarouter/s", _chat(), 10)
    assert only_default.chosen.model_id == "q/fallback-no-tools"
    with pytest.raises(NoCandidate):  # the default cannot call tools either
        _route(selector, "ws", "orcarouter/s", _chat(tools=[{}]), 10)
