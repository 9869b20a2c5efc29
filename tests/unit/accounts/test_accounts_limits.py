"""A key grants only what it holds: model patterns, IP ranges, USD cap, expiry and role."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from orcarouter.accounts.key_admin import normalized
from orcarouter.accounts.limits import (
    GrantExceeded,
    KeyLimits,
    LimitError,
    check_within,
    pattern_within,
    validate_model_pattern,
)
from orcarouter.accounts.roles import KEY_ROLES, Action, allows, at_most
from orcarouter.store.ids import utcnow


@pytest.mark.parametrize(
    ("inner", "outer", "within"),
    [
        ("openai/gpt-4o", "openai/*", True),
        ("openai/gpt-*", "openai/*", True),
        ("openai/*", "openai/gpt-*", False),
        ("*", "openai/*", False),
        ("anything", "*", True),
        ("*/claude-*", "*", True),
        ("a*bc", "a*b*c", True),
        ("a*c", "a*b*c", False),
        ("openai/gpt-4o", "openai/gpt-4o", True),
        ("openai/gpt-4o", "openai/gpt-4", False),
    ],
)
def test_pattern_within(inner: str, outer: str, within: bool) -> None:
    assert pattern_within(inner, outer) is within


@pytest.mark.parametrize("bad", ["", "a b", "x[1]", "gpt-?", "' OR '1'='1", "a" * 201, "é"])
def test_model_patterns_hold_only_model_id_characters(bad: str) -> None:
    with pytest.raises(LimitError):
        validate_model_pattern(bad)


def test_a_parent_without_limits_grants_anything_up_to_its_role() -> None:
    check_within(KeyLimits(role="developer"), KeyLimits(role="developer"), True)
    with pytest.raises(GrantExceeded):
        check_within(KeyLimits(role="admin"), KeyLimits(role="developer"), False)


def test_every_limit_must_lie_within_the_parents() -> None:
    soon = utcnow() + timedelta(days=1)
    parent = KeyLimits(
        role="developer",
        model_limits_enabled=True,
        model_limits=("openai/*",),
        allow_ips=("10.0.0.0/8", "2001:db8::/32"),
        usd_cap_micros=1000,
        expires_at=soon,
    )
    good = KeyLimits(
        role="member",
        model_limits_enabled=True,
        model_limits=("openai/gpt-4o",),
        allow_ips=("10.1.0.0/16", "2001:db8:1::/48"),
        usd_cap_micros=1000,
        expires_at=soon,
    )
    check_within(good, parent, True)
    for bad in (
        replace(good, model_limits_enabled=False),
        replace(good, model_limits=("anthropic/x",)),
        replace(good, allow_ips=()),
        replace(good, allow_ips=("0.0.0.0/0",)),
        replace(good, allow_ips=("2001:db8::/31",)),
        replace(good, usd_cap_micros=None),
        replace(good, usd_cap_micros=1001),
        replace(good, expires_at=None),
        replace(good, expires_at=soon + timedelta(seconds=1)),
    ):
        with pytest.raises(GrantExceeded):
            check_within(bad, parent, True)


def test_normalized_canonicalises_and_rejects() -> None:
    limits = normalized(
        KeyLimits(role="viewer", model_limits=("a/b", "a/b"), allow_ips=("10.1.2.3/8", "::1"))
    )
    assert limits.model_limits == ("a/b",)
    assert limits.allow_ips == ("10.0.0.0/8", "::1/128")
    for bad in (
        KeyLimits(role="owner"),
        KeyLimits(role="member", allow_ips=("10.0.0.300",)),
        KeyLimits(role="member", expires_at=utcnow() - timedelta(seconds=1)),
    ):
        with pytest.raises(LimitError):
            normalized(bad)


def test_role_policy() -> None:
    assert KEY_ROLES == ("member", "viewer", "developer", "admin")
    assert allows("viewer", Action.READ_KEYS) and not allows("viewer", Action.MANAGE_KEYS)
    assert allows("developer", Action.MANAGE_KEYS)
    assert not allows("developer", Action.MANAGE_MEMBERS)
    assert allows("admin", Action.MANAGE_MEMBERS) and allows("admin", Action.READ_AUDIT)
    assert not allows("member", Action.READ_WORKSPACE)
    assert not allows("owner", Action.READ_WORKSPACE)  # unknown roles rank below every role
    assert at_most("developer", "admin") and not at_most("admin", "developer")
