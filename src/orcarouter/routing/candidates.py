"""Candidates and the filter every strategy runs after: a model that cannot serve the request
is never offered to a strategy, and each one left out is recorded with why.

A model without catalog limits (a custom model the operator listed) passes the size checks:
the gateway cannot know better than the operator, and the upstream will say so.

A router over a whole catalog filters hundreds of models on every request, so the selector
filters through ``Admissions``: what a key may use and the capabilities a request needs take
few distinct values, and the split of the pool by them is worked out once for each; a request
then pays per candidate only when it is larger than the smallest limit among those left.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Final, Generic, TypeVar

from orcarouter.catalog import ModelInfo
from orcarouter.routing.needs import RequestNeeds
from orcarouter.routing.resolve import Target

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model a router may send the request to, with what the catalog knows of it."""

    target: Target
    info: ModelInfo

    @property
    def model_id(self) -> str:
        """``provider/model``."""
        return self.target.model_id


BY_MODEL_ID: Final[Callable[[Candidate], str]] = attrgetter("target.model_id")  # a sort key, in C


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


class _Split(Generic[T]):
    """The pool for one key's access and one set of capability needs: the candidates that
    pass (pool order), those left out and why (pool order), the smallest size limits among
    those that pass (``inf``: none known), and what the owner works out once for ``kept``.

    A plain class: mypyc cannot compile a generic dataclass."""

    __slots__ = ("annex", "excluded", "kept", "max_input", "max_output", "window")

    def __init__(
        self,
        kept: tuple[Candidate, ...],
        excluded: tuple[Exclusion, ...],
        max_output: float,
        max_input: float,
        window: float,
    ) -> None:
        self.kept = kept
        self.excluded = excluded
        self.max_output = max_output
        self.max_input = max_input
        self.window = window
        self.annex: T | None = None

    def fits(self, needs: RequestNeeds) -> bool:
        """Whether every kept candidate is large enough for the request."""
        output = needs.max_tokens or 0
        prompt = needs.prompt_tokens
        fits_window = prompt + output <= self.window
        return output <= self.max_output and prompt <= self.max_input and fits_window


def _smallest(values: Iterable[int | None]) -> float:
    return min((v for v in values if v is not None), default=math.inf)


class Admissions(Generic[T]):
    """``filter_candidates`` over one pool (in model-id order) for keys given by their
    compiled model allow-list (``None``: every model), keeping each split by access and
    capabilities: the same answer, without a loop over the pool for most requests.

    ``annex`` is worked out once for each kept split (the strategies' costing table) and
    handed out with it; a request that some kept candidate is too small for gets None.
    """

    __slots__ = ("_annex", "_pool", "_splits")

    # Distinct (allow-list, capabilities) pairs kept per router; then start again. A split
    # of a 451-model pool with its table holds 30-45 KB (tracemalloc): 64 keep it under 3 MB.
    MAX_SPLITS = 64

    def __init__(
        self, pool: tuple[Candidate, ...], annex: Callable[[tuple[Candidate, ...]], T]
    ) -> None:
        self._pool = pool
        self._annex = annex
        self._splits: dict[tuple[re.Pattern[str] | None, tuple[bool, ...]], _Split[T]] = {}

    def split(
        self, needs: RequestNeeds, access: re.Pattern[str] | None
    ) -> tuple[tuple[Candidate, ...], list[Exclusion], T | None]:
        """The candidates that can serve the request and those that cannot, in pool order,
        and the annex of the candidates when they are the kept split's."""
        flags = (needs.tools, needs.images, needs.documents, needs.structured_output)
        key = (access, (*flags, needs.reasoning))
        split = self._splits.get(key)
        if split is None:
            if len(self._splits) >= self.MAX_SPLITS:
                self._splits.clear()
            split = self._splits[key] = self._make(needs, access)
        if split.fits(needs):
            if split.annex is None:
                split.annex = self._annex(split.kept)
            return split.kept, list(split.excluded), split.annex
        kept, too_small = filter_candidates(split.kept, needs, _every_model)
        return tuple(kept), sorted([*split.excluded, *too_small], key=_BY_EXCLUDED_ID), None

    def _make(self, needs: RequestNeeds, access: re.Pattern[str] | None) -> _Split[T]:
        """The split by access and capabilities alone (sizes that every model meets)."""
        allowed = _every_model if access is None else _matches(access)
        capabilities_only = replace(needs, prompt_tokens=0, max_tokens=None)
        kept, excluded = filter_candidates(self._pool, capabilities_only, allowed)
        return _Split(
            tuple(kept),
            tuple(excluded),
            _smallest(c.info.max_output for c in kept),
            _smallest(c.info.max_input for c in kept),
            _smallest(c.info.context_window for c in kept),
        )


def _every_model(_model_id: str) -> bool:
    return True


def _matches(access: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda model_id: access.fullmatch(model_id) is not None


# Pool order, by its sort.
_BY_EXCLUDED_ID: Final[Callable[[Exclusion], str]] = attrgetter("model_id")
