"""Provider credentials (BYOK) without a database: the cipher, its key ids, the in-memory
cache, the secret-key settings, and that no secret shows in a repr or a log line."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orcarouter.accounts.credentials import (
    CredentialBinding,
    CredentialCache,
    CredentialError,
    Keyring,
    binding_of,
    hint_of,
    key_id_of,
    keyring_from,
    new_secret_key,
)
from orcarouter.api.management.credential_routes import CredentialPut
from orcarouter.errors import CredentialUnavailable
from orcarouter.settings import (
    ConfigError,
    Provider,
    TimeoutsConfig,
    decode_secret_key,
    load_settings,
)
from orcarouter.store.credentials import CredentialRow
from orcarouter.store.ids import utcnow

SECRET = "sk-workspace-own-SECRET-0123456789abcdef"
OPERATOR = "sk-operator-SECRET-fedcba9876543210"
KEY_A = new_secret_key()
KEY_B = new_secret_key()
BINDING = CredentialBinding("cred_1", "ws_a", "openai")


def _keyring(current: str, *previous: str) -> Keyring:
    return Keyring.from_texts(current, previous)


def _provider(api_key: str | None = OPERATOR, provider_id: str = "openai") -> Provider:
    return Provider(
        id=provider_id,
        protocol="openai",
        base_url="https://api.example.com/v1",
        api_key=api_key,
        models=None,
        headers={},
        timeouts=TimeoutsConfig(),
    )


def _row(
    keyring: Keyring, binding: CredentialBinding = BINDING, secret: str = SECRET
) -> CredentialRow:
    sealed = keyring.seal(secret, binding)
    return CredentialRow(
        id=binding.credential_id,
        workspace_id=binding.workspace_id,
        provider_id=binding.provider_id,
        ciphertext=sealed.ciphertext,
        key_version=sealed.key_version,
        hint=hint_of(secret),
    )


# --- the cipher ------------------------------------------------------------------------------


def test_a_sealed_key_opens_to_itself_and_never_holds_it_in_clear() -> None:
    keyring = _keyring(KEY_A)
    sealed = keyring.seal(SECRET, BINDING)
    assert sealed.key_version == keyring.current_id == key_id_of(decode_secret_key(KEY_A))
    assert keyring.open(sealed.ciphertext, sealed.key_version, BINDING) == SECRET
    raw = base64.urlsafe_b64decode(sealed.ciphertext)
    assert SECRET.encode() not in raw and SECRET not in sealed.ciphertext
    assert len(raw) == 1 + 12 + len(SECRET) + 16  # format byte, nonce, ciphertext, GCM tag


def test_every_seal_uses_a_fresh_nonce() -> None:
    keyring = _keyring(KEY_A)
    first, second = keyring.seal(SECRET, BINDING), keyring.seal(SECRET, BINDING)
    assert first.ciphertext != second.ciphertext
    nonce = slice(1, 13)
    assert (
        base64.urlsafe_b64decode(first.ciphertext)[nonce]
        != base64.urlsafe_b64decode(second.ciphertext)[nonce]
    )


def test_the_wrong_key_fails_even_under_the_right_key_id() -> None:
    sealed = _keyring(KEY_A).seal(SECRET, BINDING)
    with pytest.raises(CredentialError, match="not configured"):
        _keyring(KEY_B).open(sealed.ciphertext, sealed.key_version, BINDING)
    impostor = _keyring(KEY_B)
    with pytest.raises(CredentialError, match="wrong key or altered"):
        impostor.open(sealed.ciphertext, impostor.current_id, BINDING)


@pytest.mark.parametrize(
    "other",
    [
        CredentialBinding("cred_1", "ws_b", "openai"),  # another workspace
        CredentialBinding("cred_1", "ws_a", "anthropic"),  # another provider
        CredentialBinding("cred_2", "ws_a", "openai"),  # another row
    ],
)
def test_the_associated_data_binds_a_ciphertext_to_its_row(other: CredentialBinding) -> None:
    keyring = _keyring(KEY_A)
    sealed = keyring.seal(SECRET, BINDING)
    with pytest.raises(CredentialError):
        keyring.open(sealed.ciphertext, sealed.key_version, other)


def test_the_associated_data_is_unambiguous() -> None:
    # "a|b" + "c" and "a" + "b|c" must not authenticate as one another.
    first = CredentialBinding("x", "ws:a", "b").associated_data()
    second = CredentialBinding("x", "ws", "a:b").associated_data()
    assert first != second


def test_altered_or_garbled_ciphertext_fails() -> None:
    keyring = _keyring(KEY_A)
    sealed = keyring.seal(SECRET, BINDING)
    raw = bytearray(base64.urlsafe_b64decode(sealed.ciphertext))
    raw[20] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in (flipped, "not base64!", "", base64.urlsafe_b64encode(b"\x02" + raw[1:]).decode()):
        with pytest.raises(CredentialError):
            keyring.open(bad, sealed.key_version, BINDING)


def test_a_keyring_with_a_previous_key_reads_both_and_writes_the_new() -> None:
    old = _keyring(KEY_A).seal(SECRET, BINDING)
    both = _keyring(KEY_B, KEY_A)
    assert both.open(old.ciphertext, old.key_version, BINDING) == SECRET
    fresh = both.seal("sk-another-0123456789", BINDING)
    assert fresh.key_version == key_id_of(decode_secret_key(KEY_B)) != old.key_version
    assert both.key_ids == (fresh.key_version, old.key_version)
    assert both.can_open(old.key_version) and not _keyring(KEY_B).can_open(old.key_version)


def test_key_ids_are_stable_fingerprints_that_do_not_reveal_the_key() -> None:
    material = decode_secret_key(KEY_A)
    assert key_id_of(material) == key_id_of(material)
    assert key_id_of(material) != key_id_of(decode_secret_key(KEY_B))
    assert len(key_id_of(material)) <= 32  # fits key_version
    assert KEY_A not in key_id_of(material) and material.hex()[:8] not in key_id_of(material)


@pytest.mark.parametrize(
    ("secret", "hint"),
    [
        ("sk-proj-0123456789abcdefWXYZ", "sk-...WXYZ"),
        ("AIzaSyA-0123456789abcd", "AIz...abcd"),
        ("short-key-12", "...y-12"),
        ("tiny-key", "..."),
    ],
)
def test_hints_show_little_and_less_of_short_keys(secret: str, hint: str) -> None:
    assert hint_of(secret) == hint


# --- the in-memory cache ---------------------------------------------------------------------


class FakeSource:
    """Rows in memory, with the repository's version pair."""

    def __init__(self, rows: Sequence[CredentialRow] = ()) -> None:
        self.rows = list(rows)
        self.fail = False

    async def all(self) -> Sequence[CredentialRow]:
        if self.fail:
            raise OSError("database is down")
        return list(self.rows)

    async def version(self) -> tuple[int, datetime | None]:
        if self.fail:
            raise OSError("database is down")
        return len(self.rows), max((r.updated_at for r in self.rows), default=None)


async def test_the_cache_substitutes_the_workspace_key_and_leaves_others_alone() -> None:
    keyring = _keyring(KEY_A)
    cache = CredentialCache(FakeSource([_row(keyring)]), keyring)
    await cache.refresh()
    operator = _provider()
    own = cache.provider_for("ws_a", operator)
    assert own.api_key == SECRET and own.id == "openai" and own.base_url == operator.base_url
    assert cache.provider_for("ws_a", operator) is own  # built once, then reused
    assert cache.provider_for("ws_b", operator) is operator
    other = _provider(provider_id="anthropic")
    assert cache.provider_for("ws_a", other) is other
    assert cache.provider_for(None, operator) is operator
    assert cache.has("ws_a", "openai") and not cache.has("ws_b", "openai")


async def test_the_cache_fails_closed_before_its_first_load() -> None:
    source = FakeSource()
    source.fail = True
    cache = CredentialCache(source, _keyring(KEY_A))
    await cache.refresh()
    assert not cache.healthy
    with pytest.raises(CredentialUnavailable, match="not loaded"):
        cache.provider_for("ws_b", _provider())


async def test_a_key_the_gateway_cannot_decrypt_is_refused_not_replaced_by_the_operators(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FakeSource([_row(_keyring(KEY_B))])
    for keyring in (_keyring(KEY_A), None):  # the wrong key; no key at all (BYOK off)
        cache = CredentialCache(source, keyring)
        await cache.refresh()
        with pytest.raises(CredentialUnavailable) as refused:
            cache.provider_for("ws_a", _provider())
        assert refused.value.status == 503 and OPERATOR not in refused.value.message
        assert cache.provider_for("ws_b", _provider()).api_key == OPERATOR
    assert "cannot be decrypted" in caplog.text


async def test_changes_are_picked_up_and_a_failing_database_keeps_the_loaded_keys() -> None:
    keyring = _keyring(KEY_A)
    source = FakeSource()
    cache = CredentialCache(source, keyring)
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == OPERATOR
    source.rows = [_row(keyring)]
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == SECRET
    source.fail = True
    await cache.refresh()
    assert not cache.healthy and cache.provider_for("ws_a", _provider()).api_key == SECRET
    source.fail = False
    replaced = _row(keyring, secret="sk-replaced-0123456789abcdef")
    source.rows = [replace(replaced, updated_at=utcnow() + timedelta(seconds=1))]
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == "sk-replaced-0123456789abcdef"
    source.rows = []
    await cache.refresh()
    assert cache.provider_for("ws_a", _provider()).api_key == OPERATOR


async def test_a_rotation_keeps_running_caches_serving_until_they_restart() -> None:
    old, new = _keyring(KEY_A), _keyring(KEY_B)
    source = FakeSource([_row(old)])
    running = CredentialCache(source, old)
    await running.refresh()
    resealed = new.seal(SECRET, binding_of(source.rows[0]))
    source.rows = [replace(source.rows[0], ciphertext=resealed[0], key_version=resealed[1])]
    await running.refresh(force=True)  # the same row, unchanged since: its plaintext stays
    assert running.provider_for("ws_a", _provider()).api_key == SECRET
    restarted = CredentialCache(source, _keyring(KEY_B, KEY_A))
    await restarted.refresh()
    assert restarted.provider_for("ws_a", _provider()).api_key == SECRET
    # A key replaced under the new key, though, is not served stale by the old process.
    changed = _row(new, secret="sk-brand-new-0123456789abcdef")
    source.rows = [replace(changed, updated_at=utcnow() + timedelta(seconds=1))]
    await running.refresh()
    with pytest.raises(CredentialUnavailable):
        running.provider_for("ws_a", _provider())


# --- no secret in a repr or a log line ---------------------------------------------------------


async def test_no_repr_and_no_log_line_shows_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyring = _keyring(KEY_A)
    row = _row(keyring)
    source = FakeSource([row, _row(_keyring(KEY_B), CredentialBinding("cred_2", "ws_c", "openai"))])
    cache = CredentialCache(source, keyring)
    await cache.refresh()
    own = cache.provider_for("ws_a", _provider())
    source.fail = True
    await cache.refresh()
    # vars(cache) reaches the held entries and the substituted providers, too.
    shown = " ".join([repr(keyring), repr(cache), repr(vars(cache)), repr(row), repr(own)])
    shown += caplog.text
    for secret in (SECRET, KEY_A, KEY_B, row.ciphertext, OPERATOR):
        assert secret not in shown
    assert keyring.current_id in repr(keyring)


def test_the_request_body_holding_a_key_does_not_show_it() -> None:
    body = CredentialPut(api_key=SECRET)
    assert SECRET not in repr(body) and SECRET not in str(body)
    assert body.api_key == SECRET


def test_settings_read_the_secret_keys_and_never_show_them(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY_B + "\n")
    settings = load_settings(
        None,
        {
            "ORCAROUTER_SECRET_KEY_FILE": str(key_file),
            "ORCAROUTER_SECRET_KEY_PREVIOUS": f"{KEY_A},{KEY_B}",
        },
    )
    assert settings.secret_key == KEY_B and settings.previous_secret_keys == (KEY_A,)
    assert KEY_A not in repr(settings) and KEY_B not in repr(settings)
    assert {KEY_A, KEY_B} <= set(settings.secrets())  # redacted from logs
    keyring = keyring_from(settings)
    assert keyring is not None and keyring.current_id == key_id_of(decode_secret_key(KEY_B))
    assert keyring_from(load_settings(None, {})) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORCAROUTER_SECRET_KEY": "too-short-hunter2"}, "urlsafe base64 of 32 bytes"),
        ({"ORCAROUTER_SECRET_KEY": KEY_A[:-2] + "+/"}, "urlsafe base64"),
        ({"ORCAROUTER_SECRET_KEY": f"{KEY_A},{KEY_B}"}, "ORCAROUTER_SECRET_KEY_PREVIOUS"),
        ({"ORCAROUTER_SECRET_KEY": KEY_A, "ORCAROUTER_SECRET_KEY_FILE": "/x"}, "not both"),
        ({"ORCAROUTER_SECRET_KEY_FILE": "/nonexistent/secret.key"}, "cannot read"),
        ({"ORCAROUTER_SECRET_KEY_PREVIOUS": "hunter2hunter2"}, "_PREVIOUS"),
    ],
)
def test_a_malformed_secret_key_is_a_configuration_error_that_does_not_echo_it(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(None, env)
    assert "hunter2" not in str(raised.value) and KEY_A not in str(raised.value)
