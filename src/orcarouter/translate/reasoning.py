"""reasoning_effort ⇄ thinking budget tables and Anthropic's thinking constraints.

Numbers follow LiteLLM's constants (wire-formats.md §4.7); Anthropic constraints:
https://platform.claude.com/docs/en/build-with-claude/extended-thinking
"""

from __future__ import annotations

from typing import Final

from orcarouter.translate.common import TranslationError

MIN_THINKING_BUDGET: Final = 1024
"""Anthropic rejects ``budget_tokens`` below 1024."""

EFFORT_TO_BUDGET: Final[dict[str, int]] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
    "max": 16384,
}

ADAPTIVE_EFFORTS: Final = ("low", "medium", "high", "xhigh", "max")
"""Values Anthropic's ``output_config.effort`` accepts."""

THINKING_MIN_TOP_P: Final = 0.95
"""With thinking on, Anthropic accepts ``top_p`` only in [0.95, 1]."""


def budget_for_effort(effort: str) -> int | None:
    """Thinking budget for an OpenAI effort; ``None`` for ``none``; unknown efforts raise."""
    if effort == "none":
        return None
    _check_effort(effort)
    return EFFORT_TO_BUDGET[effort]


def _check_effort(effort: str) -> None:
    """Raise ``TranslationError`` (a 400) for an effort with no thinking level (§4.7)."""
    if effort not in EFFORT_TO_BUDGET:
        raise TranslationError(param="reasoning_effort", message=f"unknown effort {effort!r}")


def effort_for_budget(budget: int) -> str:
    """OpenAI effort for an Anthropic budget (LiteLLM ``reasoning_effort_from_thinking_budget``)."""
    if budget >= EFFORT_TO_BUDGET["high"]:
        return "high"
    if budget >= EFFORT_TO_BUDGET["medium"]:
        return "medium"
    if budget >= MIN_THINKING_BUDGET:
        return "low"
    return "minimal"


def adaptive_effort(effort: str) -> str:
    """Map an OpenAI effort onto Anthropic's adaptive ``output_config.effort`` values.

    ``minimal`` becomes ``low``; unknown efforts raise as ``budget_for_effort`` does.
    """
    _check_effort(effort)
    return effort if effort in ADAPTIVE_EFFORTS else "low"


def fit_budget(budget: int, max_tokens: int) -> tuple[int, int]:
    """Return ``(budget, max_tokens)`` with budget ≥ 1024 and < max_tokens.

    When the budget would eat the whole output allowance, ``max_tokens`` is raised by the
    budget rather than starving the answer (the client's limit then bounds the answer alone).
    """
    budget = max(budget, MIN_THINKING_BUDGET)
    if max_tokens <= budget:
        max_tokens = budget + max_tokens
    return budget, max_tokens
