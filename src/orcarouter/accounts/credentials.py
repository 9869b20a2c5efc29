"""Provider credentials per workspace (BYOK): encrypted at rest, served decrypted from memory.

A workspace admin stores the workspace's own API key for a configured provider; requests from
that workspace to that provider then carry it instead of the operator's key.

Encryption is AES-256-GCM (``cryptography``'s ``AESGCM``) under a secret key held outside the
database (``ORCAROUTER_SECRET_KEY`` or ``ORCAROUTER_SECRET_KEY_FILE``), with a random 96-bit
nonce per value. The associated data names the row (credential id, workspace, provider), so a
ciphertext copied onto another row, say another workspace's, fails to decrypt instead of
lending that workspace the key. Each row records the id of the key that sealed it
(``key_version``, a fingerprint of the key), so a rotation can read rows under the old key and
the new (``ORCAROUTER_SECRET_KEY_PREVIOUS``) while ``orcarouter credentials rotate`` re-seals
them. Fernet was the alternative; it takes no associated data and is AES-128-CBC plus HMAC.

Decrypted keys live only in ``CredentialCache`` and in the ``Provider`` copies it hands to the
request path, in fields left out of every ``repr``; no API returns them after the write (only a
hint such as ``sk-...abcd``), and nothing here logs them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orcarouter.accounts.keys import new_id
from orcarouter.errors import CredentialUnavailable
from orcarouter.settings import (
    SECRET_KEY_BYTES,
    SECRET_KEY_ENV,
    Provider,
    Settings,
    decode_secret_key,
)
from orcarouter.state.snapshot import Snapshot
from orcarouter.store.credentials import (
    CredentialConflict,
    CredentialRepository,
    CredentialRow,
)
from orcarouter.store.ids import utcnow

log = logging.getLogger(__name__)

NONCE_BYTES = 12  # 96 bits, the size GCM is specified for
_FORMAT = b"\x01"  # first byte of every sealed value: this layout, this algorithm
_PURPOSE = "orcarouter/provider-credential/1"
_KEY_ID_CONTEXT = b"orcarouter/secret-key-id\x00"

BYOK_DISABLED = (
    "provider credentials (BYOK) are disabled on this gateway: the operator must set "
    f"{SECRET_KEY_ENV} (or {SECRET_KEY_ENV}_FILE) to a urlsafe-base64 {SECRET_KEY_BYTES}-byte "
    "key, for example from 'orcarouter credentials new-key', and restart it"
)


class CredentialError(Exception):
    """A stored credential cannot be decrypted: unknown key, wrong key, or altered data."""


class ByokDisabled(Exception):
    """No secret key is configured, so no credential can be stored."""


class UnknownProvider(Exception):
    """The provider id is not one the gateway has configured."""


def new_secret_key() -> str:
    """A fresh secret key, urlsafe base64 of 32 random bytes (``ORCAROUTER_SECRET_KEY``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode("ascii")


def key_id_of(material: bytes) -> str:
    """The key's id, stored beside each ciphertext: a fingerprint that reveals nothing of it."""
    return "k" + hashlib.sha256(_KEY_ID_CONTEXT + material).hexdigest()[:16]


def hint_of(secret: str) -> str:
    """What lists show of a key (``sk-...abcd``); short keys show less, tiny ones nothing."""
    head = secret[:3] if len(secret) >= 20 else ""
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{head}...{tail}"


@dataclass(frozen=True, slots=True)
class CredentialBinding:
    """The row a ciphertext belongs to; authenticated as GCM's associated data."""

    credential_id: str
    workspace_id: str
    provider_id: str

    def associated_data(self) -> bytes:
        """An unambiguous encoding of the purpose and the row."""
        return orjson.dumps([_PURPOSE, self.credential_id, self.workspace_id, self.provider_id])


def binding_of(row: CredentialRow) -> CredentialBinding:
    """The binding of a stored row."""
    return CredentialBinding(row.id, row.workspace_id, row.provider_id)


class Sealed(NamedTuple):
    """An encrypted value as stored: base64 text and the id of the key that sealed it."""

    ciphertext: str
    key_version: str


class Keyring:
    """The current secret key, which seals, and older ones, which only open.

    ``repr`` shows key ids only; the key bytes are held by the ``AESGCM`` objects alone.
    """

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self.current_id = key_id_of(current)
        self._ciphers: dict[str, AESGCM] = {}
        for material in (*previous, current):  # the current key wins any (impossible) clash
            self._ciphers[key_id_of(material)] = AESGCM(material)

    @classmethod
    def from_texts(cls, current: str, previous: Iterable[str] = ()) -> Keyring:
        """A keyring from urlsafe-base64 keys (``ValueError`` for a malformed one)."""
        return cls(decode_secret_key(current), [decode_secret_key(p) for p in previous])

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this keyring can open, the current one first."""
        return (self.current_id, *(k for k in self._ciphers if k != self.current_id))

    def can_open(self, key_version: str) -> bool:
        """Whether this keyring holds the key ``key_version`` names."""
        return key_version in self._ciphers

    def seal(self, secret: str, binding: CredentialBinding) -> Sealed:
        """Encrypt ``secret`` for the row ``binding`` names, under the current key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = self._ciphers[self.current_id]
        sealed = cipher.encrypt(nonce, secret.encode("utf-8"), binding.associated_data())
        text = base64.urlsafe_b64encode(_FORMAT + nonce + sealed).decode("ascii")
        return Sealed(text, self.current_id)

    def open(self, ciphertext: str, key_version: str, binding: CredentialBinding) -> str:
        """Decrypt a value sealed for ``binding``; ``CredentialError`` if that fails."""
        cipher = self._ciphers.get(key_version)
        if cipher is None:
            raise CredentialError(f"sealed under key {key_version}, which is not configured")
        try:
            raw = base64.urlsafe_b64decode(ciphertext.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError):
            raise CredentialError("the stored ciphertext is not valid base64") from None
        if len(raw) < 1 + NONCE_BYTES or raw[:1] != _FORMAT:
            raise CredentialError("the stored ciphertext has an unknown format")
        nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
        try:
            plain = cipher.decrypt(nonce, sealed, binding.associated_data())
        except InvalidTag:
            raise CredentialError(
                f"does not decrypt with key {key_version} for this row (wrong key or altered)"
            ) from None
        return plain.decode("utf-8")

    def open_row(self, row: CredentialRow) -> str:
        """The plaintext key of a stored row."""
        return self.open(row.ciphertext, row.key_version, binding_of(row))

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, keys={list(self.key_ids)!r})"


def keyring_from(settings: Settings) -> Keyring | None:
    """The gateway's keyring, None when no secret key is configured (BYOK off)."""
    if settings.secret_key is None:
        return None
    return Keyring.from_texts(settings.secret_key, settings.previous_secret_keys)


class CredentialAdmin:
    """Store, list and delete a workspace's credentials (the management API's service)."""

    def __init__(
        self, repo: CredentialRepository, keyring: Keyring | None, providers: Iterable[str]
    ) -> None:
        self._repo = repo
        self._keyring = keyring
        self._providers = frozenset(providers)

    @property
    def enabled(self) -> bool:
        """Whether a secret key is configured, so credentials can be stored."""
        return self._keyring is not None

    def configured(self, provider_id: str) -> bool:
        """Whether the gateway has a provider of this id."""
        return provider_id in self._providers

    async def list(self, workspace_id: str) -> list[CredentialRow]:
        """The workspace's credentials (ciphertext and hint; never a plaintext key)."""
        return await self._repo.list(workspace_id)

    async def put(
        self, workspace_id: str, provider_id: str, api_key: str, actor: str | None
    ) -> CredentialRow:
        """Encrypt and store the workspace's key for the provider, replacing any before it."""
        keyring = self._keyring
        if keyring is None:
            raise ByokDisabled(BYOK_DISABLED)
        if provider_id not in self._providers:
            raise UnknownProvider(provider_id)
        for _ in range(3):  # a concurrent first write of the same pair: seal for its id
            existing = await self._repo.get(workspace_id, provider_id)
            now = utcnow()
            credential_id = existing.id if existing is not None else new_id("cred")
            sealed = keyring.seal(
                api_key, CredentialBinding(credential_id, workspace_id, provider_id)
            )
            row = CredentialRow(
                id=credential_id,
                workspace_id=workspace_id,
                provider_id=provider_id,
                ciphertext=sealed.ciphertext,
                key_version=sealed.key_version,
                hint=hint_of(api_key),
                created_at=existing.created_at if existing is not None else now,
                updated_at=now,
                created_by=existing.created_by if existing is not None else actor,
            )
            try:
                await self._repo.save(row)
            except CredentialConflict:
                continue
            return row
        raise CredentialConflict(provider_id)

    async def delete(self, workspace_id: str, provider_id: str) -> bool:
        """Delete the workspace's credential for the provider (works with BYOK off, too)."""
        return await self._repo.delete(workspace_id, provider_id)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``rotate`` did: rows re-sealed, rows in all, and the key they are under now."""

    changed: int
    total: int
    key_version: str


async def rotate(repo: CredentialRepository, readable: Keyring | None, target: Keyring) -> Rotation:
    """Re-seal every stored credential under ``target``'s current key, in one transaction.

    ``readable`` opens the rows (the configured key and the previous ones); rows already under
    the target key are left alone, so running it twice is harmless. If any row cannot be
    opened, nothing changes and ``CredentialError`` says which.
    """

    def reseal(row: CredentialRow) -> Sealed | None:
        if row.key_version == target.current_id:
            return None
        if readable is None:
            raise CredentialError(f"credential {row.id}: no secret key is configured to read it")
        try:
            secret = readable.open_row(row)
        except CredentialError as exc:
            raise CredentialError(f"credential {row.id}: {exc}") from None
        return target.seal(secret, binding_of(row))

    changed, total = await repo.reseal_all(reseal)
    return Rotation(changed, total, target.current_id)


class CredentialSource(Protocol):
    """Where credentials are stored (``store.credentials.CredentialRepository`` fits)."""

    async def all(self) -> Sequence[CredentialRow]: ...
    async def version(self) -> tuple[int, datetime | None]: ...


@dataclass(frozen=True, slots=True)
class _Held:
    """One credential in memory; ``api_key`` None: stored, but this process cannot open it."""

    row_id: str
    updated_at: datetime
    api_key: str | None = field(repr=False)


def _still_held(before: _Held | None, row: CredentialRow) -> _Held | None:
    """The plaintext already held for ``row`` if it is the same row, unchanged since."""
    if before is None or before.api_key is None:
        return None
    return before if (before.row_id, before.updated_at) == (row.id, row.updated_at) else None


class CredentialCache(Snapshot[CredentialRow]):
    """Every workspace's decrypted provider keys by (workspace id, provider id), in memory.

    Like the router table: a background task asks the database once a second for the count and
    newest change of the credentials and reloads them all when that pair moves, so a key stored
    or deleted through any process takes effect within about a second. When the database cannot
    be read, the keys already loaded keep working.

    Fail closed: a workspace whose stored key this process cannot decrypt (no secret key, or
    not the one it was sealed under) gets ``CredentialUnavailable``, never the operator's key.
    A row re-sealed by a rotation keeps its plaintext here (same row, same ``updated_at``) until
    the process restarts with the new key.
    """

    what = "credential"

    def __init__(
        self, source: CredentialSource, keyring: Keyring | None, *, interval: float = 1.0
    ) -> None:
        super().__init__(source, interval=interval)
        self._keyring = keyring
        self._held: dict[tuple[str, str], _Held] = {}
        self._resolved: dict[tuple[str, str], tuple[Provider, Provider]] = {}
        self.loaded = False

    def __repr__(self) -> str:
        return f"CredentialCache(credentials={len(self._held)}, keyring={self._keyring!r})"

    @property
    def enabled(self) -> bool:
        """Whether a secret key is configured."""
        return self._keyring is not None

    def holds(self, workspace_id: str, provider_id: str) -> bool:
        """Whether the workspace stored its own key for the provider."""
        return (workspace_id, provider_id) in self._held

    def provider_for(self, workspace_id: str | None, provider: Provider) -> Provider:
        """``provider`` carrying the workspace's own key when it stored one, else unchanged."""
        held = self._held.get((workspace_id, provider.id)) if workspace_id is not None else None
        if held is None:
            if self.loaded:
                return provider
            raise CredentialUnavailable("provider credentials are not loaded yet; retry shortly")
        if held.api_key is None:
            raise CredentialUnavailable(
                f"this workspace's own key for provider '{provider.id}' cannot be decrypted "
                "by the gateway; the operator must configure the secret key it was stored with"
            )
        key = (held.row_id, provider.id)
        resolved = self._resolved.get(key)
        if resolved is None or resolved[0] is not provider:
            resolved = (provider, replace(provider, api_key=held.api_key))
            self._resolved[key] = resolved
        return resolved[1]

    def has(self, workspace_id: str, provider_id: str) -> bool:
        """Whether the workspace stored a key for the provider (readable or not)."""
        return (workspace_id, provider_id) in self._held

    def _loaded(self) -> None:
        self.loaded = True

    def _apply(self, rows: Sequence[CredentialRow]) -> None:
        held: dict[tuple[str, str], _Held] = {}
        for row in rows:
            pair = (row.workspace_id, row.provider_id)
            held[pair] = self._open(row, self._held.get(pair))
        self._held = held
        self._resolved = {}

    def _open(self, row: CredentialRow, before: _Held | None) -> _Held:
        problem = "no secret key is configured"
        if self._keyring is not None:
            try:
                return _Held(row.id, row.updated_at, self._keyring.open_row(row))
            except CredentialError as exc:
                problem = str(exc)
        kept = _still_held(before, row)
        if kept is not None:
            return kept  # re-sealed (a rotation) under a key this process does not hold yet
        log.warning(
            "credential %s (workspace %s, provider %s) cannot be decrypted: %s; requests from "
            "that workspace to that provider fail until the secret key is configured",
            row.id,
            row.workspace_id,
            row.provider_id,
            problem,
        )
        return _Held(row.id, row.updated_at, None)
