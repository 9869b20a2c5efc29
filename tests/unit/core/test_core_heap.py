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
def test_cycles_made_after_start_up_are_collected_without_asking() -> None:
    """The young generation's threshold is raised, not removed: cyclic garbage piling up is
    collected by the collector's own schedule, so memory stays bounded."""
    settle_heap()
    first = _Node()
    first.other = first
    dead = weakref.ref(first)
    del first
    for _ in range(2 * YOUNG_COLLECTION):  # new cycles, never collected by hand
        node = _Node()
        node.other = node
    assert dead() is None
