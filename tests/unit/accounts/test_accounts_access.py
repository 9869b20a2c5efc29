"""The key checks the inference path runs: IP/CIDR allow-list first, then model allow-list."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orcarouter.accounts.access import check_access, ip_allowed, model_allowed, router_access
from orcarouter.accounts.keys import Principal, principal_of
from orcarouter.errors import AccessDenied, ModelNotAllowed
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRow

NOW = utcnow()
BASE = KeyRow(
    id="key_1",
    workspace_id="ws_1",
    name="k",
    key_hash="0" * 64,
    display_prefix="sk-orca-abcd…",
    role="member",
    status="active",
    created_at=NOW,
    updated_at=NOW,
    expires_at=None,
    last_used_at=None,
)


def principal(**limits: object) -> Principal:
    return principal_of(replace(BASE, **limits))  # type: ignore[arg-type]


def test_a_key_without_limits_allows_every_address_and_model() -> None:
    key = principal()
    assert check_access(key, "203.0.113.9", "openai/gpt-4o") is None
    assert check_access(key, None, "anything/at-all") is None


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (("10.0.0.0/8",), "10.200.3.4", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("192.168.1.7",), "192.168.1.7", True),
        (("192.168.1.7",), "192.168.1.8", False),
        (("2001:db8::/32",), "2001:db8:1::5", True),
        (("2001:db8::/32",), "2001:db9::1", False),
        (("::1",), "::1", True),
        (("10.0.0.0/8",), "::ffff:10.1.2.3", True),  # IPv4-mapped IPv6 is the IPv4 address
        (("::ffff:0:0/96",), "10.1.2.3", False),  # a v6 block never matches a v4 client
        (("10.0.0.0/8", "2001:db8::/32"), "2001:db8::1", True),
        (("10.0.0.0/8",), "fe80::1%eth0", False),
        (("10.0.0.0/8",), "not-an-ip", False),
        (("10.0.0.0/8",), None, False),
        ((), None, True),
    ],
)
def test_ip_allow_list(allow: tuple[str, ...], address: str | None, allowed: bool) -> None:
    assert ip_allowed(principal(allow_ips=allow), address) is allowed


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        (("openai/gpt-4o",), "openai/gpt-4o", True),
        (("openai/gpt-4o",), "openai/gpt-4o-mini", False),
        (("openai/*",), "openai/gpt-4o-mini", True),
        (("openai/*",), "anthropic/claude-sonnet-4-5", False),
        (("*/claude-*",), "anthropic/claude-opus-4", True),
        (("*",), "whatever/model", True),
        (("openai/gpt-4.1",), "openai/gpt-4x1", False),  # '.' is literal, not a regex dot
        (("openai/gpt-?",), "openai/gpt-4", False),  # only '*' is a wildcard
        ((), "openai/gpt-4o", False),  # the switch on with an empty list: no models at all
    ],
)
def test_model_allow_list(patterns: tuple[str, ...], model: str, allowed: bool) -> None:
    key = principal(model_limits_enabled=True, model_limits=patterns)
    assert model_allowed(key, model) is allowed


def test_what_a_key_may_reach_through_a_router() -> None:
    # None: every model (no list, or the router itself listed); else the compiled list.
    assert router_access(principal(model_limits_enabled=False), "orcarouter/auto") is None
    whole = principal(model_limits_enabled=True, model_limits=("orcarouter/*",))
    assert router_access(whole, "orcarouter/auto") is None
    some = principal(model_limits_enabled=True, model_limits=("openai/*",))
    access = router_access(some, "orcarouter/auto")
    assert access is not None and access.fullmatch("openai/gpt-4o")
    assert not access.fullmatch("anthropic/claude-opus-4")
    nothing = router_access(principal(model_limits_enabled=True, model_limits=()), "orcarouter/a")
    assert nothing is not None and not nothing.fullmatch("openai/gpt-4o")


def test_the_switch_off_ignores_the_list() -> None:
    key = principal(model_limits_enabled=False, model_limits=("openai/gpt-4o",))
    assert model_allowed(key, "anthropic/claude-opus-4")


def test_the_address_is_checked_before_the_model() -> None:
    key = principal(allow_ips=("10.0.0.0/8",), model_limits_enabled=True, model_limits=())
    error = check_access(key, "8.8.8.8", "openai/gpt-4o")
    assert isinstance(error, AccessDenied)
    assert (error.status, error.code) == (403, "access_denied")
    assert "8.8.8.8" in error.message
    error = check_access(key, "10.0.0.1", "openai/gpt-4o")
    assert isinstance(error, ModelNotAllowed)
    assert (error.status, error.code, error.param) == (403, "model_not_allowed", "model")
    assert "openai/gpt-4o" in error.message
    assert check_access(key, "10.0.0.1", None) is None  # address only, before the body


def test_an_unreadable_stored_entry_fails_closed() -> None:
    key = principal(allow_ips=("garbage",))
    assert not ip_allowed(key, "10.0.0.1")
    assert not ip_allowed(key, "::1")


def test_the_principal_carries_cap_environment_and_expiry() -> None:
    key = principal(usd_cap_micros=2_500_000, environment="prod", expires_at=NOW)
    assert (key.usd_cap_micros, key.environment, key.expires_at) == (2_500_000, "prod", NOW)
