"""``RouteDecision``: what a router chose for one request, in order, and why.

The first candidate is served; the others are the order a failover walks. The decision is
kept with the request's usage record (``reason_json``, bounded in size) and summarised in
the ``X-Orca-Route-Reason`` response header (``header``, one short ASCII line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from orcarouter.routing.candidates import Candidate, Exclusion
from orcarouter.routing.strategies import Ranking

MAX_RECORDED: Final = 25  # candidates and exclusions each kept in the record; the rest are counted


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The ordered candidates (best first), the exclusions and the strategy that ordered them."""

    router: str  # orcarouter/{name}
    strategy: str
    ranked: Ranking
    excluded: tuple[Exclusion, ...] = ()
    default_model: str | None = None  # set when the router's default was appended last

    @property
    def chosen(self) -> Candidate:
        """The candidate to try first."""
        return self.ranked.candidates[0]

    @property
    def candidates(self) -> Sequence[Candidate]:
        """Every candidate, in the order to try them."""
        return self.ranked.candidates

    def header(self) -> str:
        """``cheapest; chose openai/gpt-4o-mini ($0.000120); 4 candidates; excluded tools=2``."""
        first = self.ranked[0]
        count = len(self.ranked)
        text = (
            f"{self.strategy}; chose {first.candidate.model_id} ({first.score}); "
            f"{count} candidate{'s' if count != 1 else ''}"
        )
        if self.excluded:
            by_need: dict[str, int] = {}
            for exclusion in self.excluded:
                by_need[exclusion.need] = by_need.get(exclusion.need, 0) + 1
            text += "; excluded " + ",".join(f"{need}={by_need[need]}" for need in sorted(by_need))
        return text if text.isascii() else text.encode("ascii", "replace").decode("ascii")

    def reason_json(self) -> str:
        """The decision as compact JSON for the usage record."""
        return orjson.dumps(self.reason()).decode()

    def reason(self) -> dict[str, object]:
        """The decision as JSON-ready data, bounded in size."""
        body: dict[str, object] = {
            "router": self.router,
            "strategy": self.strategy,
            "chosen": {"model": self.chosen.model_id, "score": self.ranked[0].score},
            "candidates": [
                {"model": r.candidate.model_id, "score": r.score}
                for r in self.ranked[:MAX_RECORDED]
            ],
            "excluded": [
                {"model": e.model_id, "need": e.need, "detail": e.detail}
                for e in self.excluded[:MAX_RECORDED]
            ],
        }
        if len(self.ranked) > MAX_RECORDED:
            body["more_candidates"] = len(self.ranked) - MAX_RECORDED
        if len(self.excluded) > MAX_RECORDED:
            body["more_excluded"] = len(self.excluded) - MAX_RECORDED
        if self.default_model is not None:
            body["default_model"] = self.default_model
        return body
