"""Candidates and the filter every strategy runs after: a model that cannot serve the request
is never offered to a strategy, and each one left out is recorded with why.

A model without catalog limits (a custom model the operator listed) passes the size checks:
the gateway cannot know better than the operator, and the upstream will say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from orcarouter.catalog import ModelInfo
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import Target


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model a router may send the request to, with what the catalog knows of it."""

    target: Target
    info: ModelInfo

    @property
    def model_id(self) -> str:
        """``provider/model``."""
        return self.target.model_id


BY_MODEL_ID: Callable[[Candidate], str] = attrgetter("target.model_id")  # a sort key, in C


@dataclass(slots=True)  # not frozen: made for each model left out, and frozen triples the cost
class Exclusion:
    """A model left out, the need it failed (``tools``, ``context``, …) and the detail."""

    model_id: str
    need: str
    detail: str


def unmet_need(info: ModelInfo, needs: RequestNeeds) -> tuple[str, str] | None:
    """The first need ``info`` cannot meet, as (need, detail), or None when it can serve."""
    caps = info.capabilities
    if needs.tools and "tools" not in caps:
        return "tools", "no tool calling"
    if needs.images and "vision" not in caps and "image" not in info.input_modalities:
        return "images", "no image input"
    if needs.documents and "pdf" not in info.input_modalities:
        return "documents", "no document (PDF) input"
    if needs.structured_output and "structured_output" not in caps:
        return "structured_output", "no structured output"
    if needs.reasoning and "reasoning" not in caps:
        return "reasoning", "no reasoning/thinking"
    output = needs.max_tokens
    if output is not None and info.max_output is not None and output > info.max_output:
        return "max_tokens", f"max_tokens {output} exceeds the output limit {info.max_output}"
    if info.max_input is not None and needs.prompt_tokens > info.max_input:
        limit = info.max_input
        return "context", f"~{needs.prompt_tokens} prompt tokens exceed the input limit {limit}"
    window = info.context_window
    if window is not None and needs.prompt_tokens + (output or 0) > window:
        return "context", (
            f"~{needs.prompt_tokens} prompt tokens + {output or 0} output exceed the "
            f"context window {window}"
        )
    return None


def filter_candidates(
    pool: Iterable[Candidate], needs: RequestNeeds, allowed: Callable[[str], bool]
) -> tuple[list[Candidate], list[Exclusion]]:
    """Split the pool into those that can serve the request and those that cannot (and why)."""
    kept: list[Candidate] = []
    excluded: list[Exclusion] = []
    for candidate in pool:
        if not allowed(candidate.model_id):
            excluded.append(Exclusion(candidate.model_id, "key", "not allowed for this API key"))
            continue
        unmet = unmet_need(candidate.info, needs)
        if unmet is None:
            kept.append(candidate)
        else:
            excluded.append(Exclusion(candidate.model_id, *unmet))
    return kept, excluded


def describe_missing(excluded: Sequence[Exclusion]) -> str:
    """One line on what no candidate had: ``tools (3 models), context (2 models: …)``."""
    by_need: dict[str, list[Exclusion]] = {}
    for exclusion in excluded:
        by_need.setdefault(exclusion.need, []).append(exclusion)
    parts = []
    for need, items in by_need.items():
        plural = "model" if len(items) == 1 else "models"
        parts.append(f"{need} ({len(items)} {plural}, e.g. {items[0].model_id}: {items[0].detail})")
    return "; ".join(parts)
