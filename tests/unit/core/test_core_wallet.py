"""Budgets in memory: reservations never overspend, settle exactly, expire, and reload safely."""

from __future__ import annotations

import pytest

from orcarouter.metering.wallet import Budgets, InsufficientFunds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reservations_never_exceed_the_balance() -> None:
    budgets = Budgets()
    budgets.load({"ws": 50_000}, {})
    held = []
    refused = 0
    for n in range(200):
        try:
            held.append(budgets.reserve(f"r{n}", "ws", "k", 1_000))
        except InsufficientFunds as exc:
            refused += 1
            assert exc.available < 1_000
    assert (len(held), refused) == (50, 150)
    assert budgets.available("ws") == 0
    for reservation in held:
        budgets.settle(reservation, 400)  # each cost less than it reserved
    assert budgets.available("ws") == 50_000 - 50 * 400
    for _ in held:
        budgets.written("ws", "k", 400, counted=(True, False))
    assert budgets.available("ws") == 30_000


def test_without_a_wallet_or_cap_nothing_is_limited() -> None:
    budgets = Budgets()
    reservation = budgets.reserve("r", "ws", "k", 10**12)
    assert reservation.workspace_id is None and reservation.key_id is None
    assert not budgets.has_wallet("ws") and budgets.available("ws") is None
    budgets.settle(reservation, 5)
    budgets.written("ws", "k", 5, counted=(False, False))  # harmless
    assert not budgets.metered("ws", "k")


def test_a_key_cap_is_checked_against_lifetime_spend_and_open_holds() -> None:
    budgets = Budgets()
    budgets.load({}, {"k": (10_000, 7_000)})  # cap $0.01, $0.007 spent
    first = budgets.reserve("a", "ws", "k", 2_000)
    with pytest.raises(InsufficientFunds, match="cap"):
        budgets.reserve("b", "ws", "k", 1_500)
    budgets.settle(first, 500)
    budgets.reserve("c", "ws", "k", 2_500)


def test_settle_twice_and_after_expiry_counts_the_cost_once() -> None:
    clock = Clock()
    budgets = Budgets(clock=clock)
    budgets.load({"ws": 10_000}, {})
    reservation = budgets.reserve("r", "ws", "k", 4_000, ttl=60)
    clock.now = 61
    assert budgets.expire() == [reservation]
    assert budgets.available("ws") == 10_000  # the hold is gone
    budgets.settle(reservation, 3_000)  # the request finished after all
    budgets.settle(reservation, 3_000)
    assert budgets.available("ws") == 7_000
    assert list(budgets.open_reservations()) == []


def test_a_reload_racing_a_written_charge_is_skipped() -> None:
    budgets = Budgets()
    budgets.load({"ws": 10_000}, {})
    reservation = budgets.reserve("r", "ws", "k", 1_000)
    budgets.settle(reservation, 1_000)
    seen = budgets.generation
    budgets.written("ws", "k", 1_000, counted=(True, False))  # committed while it read
    assert not budgets.load({"ws": 9_000}, {}, generation=seen)
    assert budgets.available("ws") == 9_000
    assert budgets.load({"ws": 9_000}, {}, generation=budgets.generation)
    assert budgets.available("ws") == 9_000  # never counted twice


def test_under_steady_charges_new_wallets_and_caps_still_load() -> None:
    budgets = Budgets()
    budgets.load({"busy": 10_000}, {})
    seen = budgets.generation
    budgets.written("busy", None, 500)  # some charge lands during every read
    assert not budgets.load({"busy": 9_000, "new": 7_000}, {"capped": (300, 0)}, generation=seen)
    assert budgets.available("busy") == 9_500  # its own figure: the read may predate the charge
    assert budgets.available("new") == 7_000  # a wallet made meanwhile is metered at once
    assert budgets.metered("any", "capped")  # and so is a key given a cap


def test_a_reload_keeps_open_holds_and_unwritten_charges() -> None:
    budgets = Budgets()
    budgets.load({"ws": 10_000}, {})
    budgets.reserve("open", "ws", "k", 2_000)
    settled = budgets.reserve("done", "ws", "k", 1_000)
    budgets.settle(settled, 1_000)
    budgets.load({"ws": 25_000}, {})  # a top-up made by another process
    assert budgets.available("ws") == 25_000 - 2_000 - 1_000
    budgets.credit("ws", 5_000, 30_000)
    assert budgets.available("ws") == 27_000
    budgets.credit("new", 100, 100)
    assert budgets.has_wallet("new") and budgets.metered("new", "any key")


def test_a_top_up_counts_once_whenever_the_refresh_reads() -> None:
    budgets = Budgets()
    budgets.load({"ws": 10_000}, {})
    # The refresh read the database after the top-up committed and loaded it first.
    budgets.load({"ws": 15_000}, {}, generation=budgets.generation)
    budgets.credit("ws", 5_000, 15_000)
    assert budgets.available("ws") == 15_000  # not 20,000
    # A refresh that read before a withdrawal committed and loads after it keeps it.
    before = budgets.generation
    budgets.credit("ws", -15_000, 0)
    assert not budgets.load({"ws": 15_000}, {}, generation=before)
    assert budgets.available("ws") == 0
    with pytest.raises(InsufficientFunds):
        budgets.reserve("r", "ws", "k", 1)
    # A wallet opened while a refresh read (which did not see it) stays open.
    before = budgets.generation
    budgets.credit("new", 100, 100)
    budgets.load({"ws": 0}, {}, generation=before)
    assert budgets.has_wallet("new") and budgets.available("new") == 100
    budgets.load({"ws": 0, "new": 100}, {}, generation=budgets.generation)
    assert budgets.available("new") == 100


def test_a_charge_nobody_reserved_still_moves_the_balance_once() -> None:
    budgets = Budgets()
    budgets.load({"ws": 1_000}, {"k": (500, 0)})
    budgets.written("ws", "k", 100)  # e.g. a request admitted before the wallet existed
    assert budgets.available("ws") == 900
    budgets.load({"ws": 900}, {"k": (500, 100)}, generation=budgets.generation)
    assert budgets.available("ws") == 900  # the database agrees; nothing counted twice
    with pytest.raises(InsufficientFunds):
        budgets.reserve("r", "ws", "k", 401)
