"""The health book (ejection, back-off, cool-down, the ejection cap) and the retry budget."""

from __future__ import annotations

import email.utils

import pytest

from orcarouter.metering.stats import Outcome
from orcarouter.routing.health import (
    COOL,
    EJECT,
    HealthBook,
    HealthEvent,
    RetryBudget,
    retry_after_seconds,
)
from orcarouter.settings import HealthConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _book(targets: int = 4, **config: float) -> tuple[HealthBook, Clock]:
    clock = Clock()
    return HealthBook(HealthConfig.model_validate(config), targets=targets, clock=clock), clock


def test_consecutive_failures_eject_and_the_back_off_doubles() -> None:
    book, clock = _book(consecutive_failures=3, base_ejection=10, max_ejection=25)
    for _ in range(2):
        book.failure("p/a", "500")
    assert book.is_live("p/a")
    book.failure("p/a", "500")
    assert not book.is_live("p/a")
    assert book.state("p/a")["status"] == "ejected"
    assert book.ejected() == ["p/a"]
    clock.now += 10
    assert book.is_live("p/a")  # the back-off ran out: tried again
    book.failure("p/a", "timeout")  # one failure after an ejection is enough
    assert not book.is_live("p/a")
    clock.now += 19.9
    assert not book.is_live("p/a")  # 20 s this time
    clock.now += 0.2
    assert book.is_live("p/a")
    book.failure("p/a", "500")
    clock.now += 24.9
    assert not book.is_live("p/a")  # capped at max_ejection
    clock.now += 0.2
    book.success("p/a")
    book.failure("p/a", "500")
    assert book.is_live("p/a")  # a success clears the record: the threshold counts again


def test_a_success_in_between_resets_the_count() -> None:
    book, _ = _book(consecutive_failures=2)
    book.failure("p/a", "500")
    book.observe("p/a", Outcome.OK)
    book.failure("p/a", "500")
    assert book.is_live("p/a")
    book.observe("p/a", Outcome.DOWN)
    assert not book.is_live("p/a")


def test_client_errors_do_not_count() -> None:
    book, _ = _book(consecutive_failures=1)
    book.observe("p/a", Outcome.CLIENT_ERROR)
    book.observe("p/a", Outcome.IGNORED)
    assert book.is_live("p/a") and book.snapshot() == []


def test_never_more_than_the_share_of_targets_is_ejected() -> None:
    book, _ = _book(targets=4, consecutive_failures=1, max_ejected_share=0.5)
    for model in ("p/a", "p/b", "p/c"):
        book.failure(model, "500")
    assert [book.is_live(m) for m in ("p/a", "p/b", "p/c")] == [False, False, True]


def test_a_429_cools_down_for_retry_after_without_counting_a_failure() -> None:
    book, clock = _book(consecutive_failures=1, default_cooldown=5, max_cooldown=60)
    book.observe("p/a", Outcome.THROTTLED, "7")
    state = book.state("p/a")
    assert state["status"] == "cooling_down" and state["consecutive_failures"] == 0
    clock.now += 6.9
    assert not book.is_live("p/a")
    clock.now += 0.2
    assert book.is_live("p/a")
    book.throttled("p/a", None)  # no header: the default
    clock.now += 5.1
    assert book.is_live("p/a")
    book.throttled("p/a", "86400")  # capped
    clock.now += 60.1
    assert book.is_live("p/a")


def test_all_live_holds_exactly_while_nothing_is_ejected_or_cooling_down() -> None:
    # A router skips asking about each candidate while this is true, so it must never be
    # true while some target is down, however that happened (here or on another replica).
    book, clock = _book(consecutive_failures=1, base_ejection=10, default_cooldown=5)
    assert book.all_live()
    book.failure("p/a", "500")
    assert not book.all_live()
    clock.now += 10.1
    assert book.all_live() and book.is_live("p/a")
    book.throttled("p/b", "3")
    assert not book.all_live()
    clock.now += 3.1
    assert book.all_live()
    book.apply(HealthEvent("p/c", EJECT, 20))
    clock.now += 19.9
    assert not book.all_live() and not book.is_live("p/c")
    clock.now += 0.2
    book.apply(HealthEvent("p/d", COOL, 4))
    clock.now += 3.9
    assert not book.all_live()
    clock.now += 0.2
    assert book.all_live()


def test_readmit_after_a_probe() -> None:
    book, _ = _book(consecutive_failures=1, base_ejection=600)
    book.failure("p/a", "500")
    assert not book.is_live("p/a")
    book.readmit("p/a")
    assert book.is_live("p/a") and book.ejected() == []
    assert book.state("p/a")["total_ejections"] == 1


def test_snapshot_lists_the_worst_first() -> None:
    book, _ = _book(consecutive_failures=1, max_ejected_share=1.0)
    book.failure("p/b", "500")
    book.throttled("p/a", "3")
    book.failure("p/c", "500")
    book.success("p/c")
    book.readmit("p/c")
    assert [s["status"] for s in book.snapshot()] == ["ejected", "cooling_down", "healthy"]
    assert book.snapshot()[0]["ejected_until"] is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 2.5 ", 2.5), ("-4", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date() -> None:
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == pytest.approx(30)


def test_retry_budget_allows_a_share_of_in_flight_with_a_floor() -> None:
    budget = RetryBudget(ratio=0.2, floor=3)
    for _ in range(10):
        budget.enter()
    granted = [budget.try_acquire() for _ in range(5)]
    assert granted == [True, True, True, False, False]  # max(3, 0.2 * 10)
    for _ in range(20):
        budget.enter()
    assert [budget.try_acquire() for _ in range(5)] == [True, True, True, False, False]  # 6
    budget.leave(held=True)
    assert budget.retrying == 5 and budget.in_flight == 29
    assert budget.try_acquire()
    assert not budget.try_acquire()
