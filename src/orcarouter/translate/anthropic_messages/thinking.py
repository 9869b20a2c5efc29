"""Planning Anthropic ``thinking`` from canonical reasoning, within Anthropic's constraints.

Constraints (https://platform.claude.com/docs/en/build-with-claude/extended-thinking):
budget ≥ 1024 and < max_tokens; no temperature/top_k changes, top_p in [0.95, 1]
(https://github.com/QuantumNous/new-api/issues/3124); no forced tool_choice with budget
(``enabled``) thinking, while adaptive thinking accepts one; the last tool-use turn must start
with its thinking block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orcarouter.canonical import Reasoning, Request, ToolChoice
from orcarouter.translate.anthropic_messages.messages import last_tool_turn_lacks_thinking
from orcarouter.translate.common import JsonDict, Policy, with_extras
from orcarouter.translate.reasoning import (
    THINKING_MIN_TOP_P,
    adaptive_effort,
    budget_for_effort,
    fit_budget,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnthropicTarget:
    """Dialect choices for the target model (provider profile data).

    ``adaptive_thinking``: the model takes ``thinking.type = adaptive`` + ``output_config.effort``
    (Claude 4.6+) instead of a token budget.
    """

    default_max_tokens: int
    adaptive_thinking: bool = False


@dataclass(slots=True)
class ThinkingPlan:
    """What to send: the ``thinking`` object, ``output_config.effort``, limits and overrides."""

    thinking: JsonDict | None = None
    effort: str | None = None
    max_tokens: int = 0
    tool_choice: ToolChoice | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_reasoning(cls, reasoning: Reasoning) -> ThinkingPlan:
        """Render reasoning that already speaks Anthropic (``mode`` or ``budget`` set)."""
        if reasoning.mode is None and reasoning.budget_tokens is None:
            return cls(effort=reasoning.effort)
        thinking: JsonDict = {"type": reasoning.mode or "enabled"}
        if reasoning.budget_tokens is not None:
            thinking["budget_tokens"] = reasoning.budget_tokens
        if reasoning.display is not None:
            thinking["display"] = reasoning.display
        return cls(
            thinking=with_extras(thinking, reasoning.extra, "anthropic"), effort=reasoning.effort
        )


def plan_thinking(request: Request, target: AnthropicTarget, policy: Policy) -> ThinkingPlan:
    """Decide thinking, effort and ``max_tokens`` for an Anthropic request."""
    max_tokens = request.max_output_tokens or target.default_max_tokens
    reasoning = request.reasoning
    if reasoning is None:
        return ThinkingPlan(max_tokens=max_tokens, tool_choice=request.tool_choice)
    if request.source == "anthropic" or reasoning.mode is not None:
        plan = ThinkingPlan.from_reasoning(reasoning)
        plan.max_tokens, plan.tool_choice = max_tokens, request.tool_choice
        return plan
    plan = _from_effort_or_budget(reasoning, max_tokens, target, policy)
    plan.tool_choice = request.tool_choice
    if plan.thinking is not None:
        _fit_constraints(plan, request, policy)
    return plan


def _from_effort_or_budget(
    reasoning: Reasoning, max_tokens: int, target: AnthropicTarget, policy: Policy
) -> ThinkingPlan:
    effort, budget = reasoning.effort, reasoning.budget_tokens
    if effort == "none" or (effort is None and not budget):
        return ThinkingPlan(max_tokens=max_tokens)
    if target.adaptive_thinking and effort is not None:
        # Without display the API returns blank thinking (LiteLLM adaptive mapping, §4.7).
        thinking: JsonDict = {"type": "adaptive", "display": "summarized"}
        return ThinkingPlan(
            thinking=thinking, effort=adaptive_effort(effort), max_tokens=max_tokens
        )
    if budget is None:
        budget = budget_for_effort(effort or "medium")
        if budget is None:
            return ThinkingPlan(max_tokens=max_tokens)
    budget, fitted = fit_budget(budget, max_tokens)
    if fitted != max_tokens:
        policy.adjusted.append("max_tokens")
    return ThinkingPlan(thinking={"type": "enabled", "budget_tokens": budget}, max_tokens=fitted)


def _fit_constraints(plan: ThinkingPlan, request: Request, policy: Policy) -> None:
    choice = plan.tool_choice
    forced = choice is not None and choice.mode in ("required", "tool")
    if forced and plan.thinking is not None and plan.thinking.get("type") == "enabled":
        # "Thinking may not be enabled when tool_choice forces tool use": the forced tool wins.
        # Adaptive thinking is accepted with a forced choice (recorded: claude-opus-4-6 with
        # thinking adaptive and tool_choice any), so only budget thinking is turned off.
        _disable(plan, policy)
        return
    if last_tool_turn_lacks_thinking(request.messages):
        _disable(plan, policy)
        return
    sampling = request.sampling
    for key in ("temperature", "top_k"):
        if getattr(sampling, key) is not None:
            plan.sampling[key] = None
            policy.drop(key)
    if sampling.top_p is not None and sampling.top_p < THINKING_MIN_TOP_P:
        plan.sampling["top_p"] = THINKING_MIN_TOP_P
        policy.adjusted.append("top_p")


def _disable(plan: ThinkingPlan, policy: Policy) -> None:
    plan.thinking, plan.effort = None, None
    policy.drop("reasoning_effort")
