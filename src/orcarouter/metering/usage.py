"""One row of the usage ledger per request, with token counts in canonical semantics.

Token counts are the canonical ``Usage`` (``orcarouter.canonical``): ``prompt_tokens`` counts
every input token including cache reads and writes, ``completion_tokens`` every output token
including reasoning. Anthropic's ``input_tokens`` excludes both cache counters, so its prompt
total is input + cache read + cache write
(https://docs.claude.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orcarouter.canonical import Usage


@dataclass(slots=True)
class UsageRecord:
    """One row of the usage ledger: every authenticated inference request gets one."""

    request_id: str
    created_at: datetime
    workspace_id: str | None
    key_id: str | None
    endpoint: str
    stream: bool
    model_requested: str | None = None
    model_served: str | None = None
    upstream_model: str | None = None
    provider_id: str | None = None
    status_code: int = 0
    outcome: str = "ok"
    error_type: str | None = None
    usage: Usage | None = None
    latency_ms: int = 0
    ttft_ms: int | None = None
    route_reason: str | None = None  # a router's decision as JSON (routing.RouteDecision)
    cost_micros: int | None = None  # USD x 1e6, set when priced (metering.pricing)
    # Not stored: whether a settled reservation counted the cost (wallet, key cap).
    held: tuple[bool, bool] = (False, False)
    produced: int = 0  # not stored: output tokens estimated from the stream deltas relayed

    def as_row(self) -> dict[str, Any]:
        """The record as column values."""
        usage = self.usage
        return {
            "request_id": self.request_id,
            "created_at": self.created_at,
            "workspace_id": self.workspace_id,
            "key_id": self.key_id,
            "endpoint": self.endpoint,
            "model_requested": self.model_requested,
            "model_served": self.model_served,
            "upstream_model": self.upstream_model,
            "provider_id": self.provider_id,
            "stream": self.stream,
            "status_code": self.status_code,
            "outcome": self.outcome,
            "error_type": self.error_type,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.output_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "cache_read_tokens": (usage.cache_read_tokens or 0) if usage else None,
            "cache_write_tokens": (usage.cache_write_tokens or 0) if usage else None,
            "reasoning_tokens": (usage.reasoning_tokens or 0) if usage else None,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "route_reason": self.route_reason,
            "cost_micros": self.cost_micros,
        }
