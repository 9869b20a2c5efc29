"""What a stream observer wrote and counted, in one comparable value."""

from __future__ import annotations

from orcarouter.providers.base import StreamObserver


def observed(observer: StreamObserver, out: list[bytes]) -> tuple[object, ...]:
    """``out`` (what the observer wrote, its close included) with everything it counted."""
    return (
        out,
        observer.usage,
        observer.produced,
        observer.upstream_model,
        observer.finished,
        observer.error_type,
    )
