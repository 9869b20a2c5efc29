"""The start-up heap is collected once, then frozen out of the cyclic collector's reach."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from orcarouter.app import YOUNG_COLLECTION, settle_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfrozen")
def test_garbage_is_collected_before_the_heap_is_frozen() -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first  # a cycle only the collector frees
    dead = weakref.ref(first)
    del first, second
    settle_heap()
    assert dead() is None  # collected, not frozen forever
    assert gc.get_freeze_count() > 1000  # what lives on is out of the collector's reach


@pytest.mark.usefixtures("unfrozen")
def test_objects_made_after_start_up_are_still_collected() -> None:
    settle_heap()
    frozen = gc.get_freeze_count()
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    dead = weakref.ref(first)
    del first, second
    gc.collect()
    assert dead() is None
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("unfrozen")
def test_young_collections_come_later_but_still_come() -> None:
    """A young collection waits for ``YOUNG_COLLECTION`` net new objects (CPython's 700 would
    run several during the first loop), and is not switched off: cyclic garbage piling up is
    collected on the collector's own schedule, so memory stays bounded."""
    settle_heap()

    def young_collections() -> int:
        return int(gc.get_stats()[0]["collections"])

    before = young_collections()
    kept = [_Node() for _ in range(YOUNG_COLLECTION // 4)]  # two tracked objects each
    assert young_collections() == before
    del kept
    first = _Node()
    first.other = first
    dead = weakref.ref(first)
    del first
    for _ in range(2 * YOUNG_COLLECTION):  # new cycles, never collected by hand
        node = _Node()
        node.other = node
    assert young_collections() > before
    assert dead() is None
