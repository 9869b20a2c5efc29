"""Validated configuration: a YAML file plus ``ORCAROUTER_*`` environment variables.

Everything is checked at startup; a bad value stops the gateway with a message naming it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orcarouter.catalog.providers import WELL_KNOWN_PROVIDERS

KEY_PREFIX = "sk-orca-"
_PROVIDER_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

# The key that encrypts workspace provider credentials (BYOK): urlsafe base64 of 32 bytes.
SECRET_KEY_ENV = "ORCAROUTER_SECRET_KEY"  # noqa: S105 - a variable's name, not a secret
PREVIOUS_SECRET_KEY_ENV = "ORCAROUTER_SECRET_KEY_PREVIOUS"  # noqa: S105
SECRET_KEY_BYTES = 32
_SECRET_KEY_TEXT = re.compile(r"^[A-Za-z0-9_-]{43}=?$")


class ConfigError(Exception):
    """The configuration is invalid; the message says which value and why."""


class TimeoutsConfig(BaseModel):
    """Per-provider timeouts in seconds (connect, first byte, idle between chunks, total)."""

    model_config = ConfigDict(extra="forbid")
    connect: float = Field(default=10.0, gt=0)
    first_byte: float = Field(default=120.0, gt=0)
    idle: float = Field(default=120.0, gt=0)
    total: float = Field(default=900.0, gt=0)


class HealthConfig(BaseModel):
    """The ``health:`` section of the configuration (seconds and counts)."""

    model_config = ConfigDict(extra="forbid")
    consecutive_failures: int = Field(default=3, ge=1)
    base_ejection: float = Field(default=10.0, gt=0)
    max_ejection: float = Field(default=300.0, gt=0)
    max_ejected_share: float = Field(default=0.5, ge=0, le=1)
    default_cooldown: float = Field(default=5.0, gt=0)
    max_cooldown: float = Field(default=300.0, gt=0)
    # Active probes of ejected targets: off unless an interval is set.
    probe_interval: float | None = Field(default=None, gt=0)
    # Retries (second and later attempts) in progress, as a share of requests in flight.
    retry_ratio: float = Field(default=0.2, ge=0, le=1)
    retry_floor: int = Field(default=3, ge=0)


class EgressConfig(BaseModel):
    """The ``egress:`` section: how the gateway fetches URLs that clients send (images)."""

    model_config = ConfigDict(extra="forbid")
    allow_private: bool = False  # let client URLs reach private addresses (never metadata)
    internal_hosts: list[str] = Field(default_factory=list)  # names allowed to be private
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    timeout: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0, le=10)
    max_images_per_request: int = Field(default=20, ge=0)


class UsageConfig(BaseModel):
    """The ``usage:`` section: how the usage ledger survives crashes.

    Every finished record is appended to a local journal (``data_dir/journal``, one segment
    file per process) before it is queued for the database, so neither a killed process nor a
    database outage loses it: the next start writes what the journal holds.

    ``open_rows``: where a request is stored before its upstream call, so a crash leaves a
    trace the next start settles as ``interrupted``. ``journal`` (default): one append to the
    journal, microseconds. ``database``: an ``open`` row committed first (a group commit shared
    by concurrent requests, milliseconds per request), settled by the sweep after
    ``sweep_after``. ``off``: nothing. ``open_before_upstream`` is the older switch, still
    read: ``false`` means ``off`` whatever ``open_rows`` says (``open_mode`` is the result).

    ``journal_fsync``: ``interval`` flushes the journal to disk 50 ms after a write, in a
    background thread, so a machine crash loses at most that; ``never`` leaves it to the OS (a
    killed process still loses nothing).

    ``write_interval``: seconds between the writer's database transactions while records
    arrive. Each transaction has a fixed cost (about half a millisecond of CPU on SQLite), so
    longer ticks cost less at low and moderate rates; records reach the database (and the
    dashboard) up to this late, and budgets count their charges meanwhile.
    """

    model_config = ConfigDict(extra="forbid")
    open_rows: Literal["journal", "database", "off"] = "journal"
    open_before_upstream: bool = True  # older switch: false means open_rows: off
    journal_fsync: Literal["interval", "never"] = "interval"
    write_interval: float = Field(default=0.2, gt=0, le=10)  # metering.writer.WRITE_INTERVAL
    # A database row still open this long after it was made belongs to a process that stopped
    # (default: the longest provider total timeout plus a minute); the sweep settles it as
    # interrupted.
    sweep_after: float | None = Field(default=None, gt=0)

    @property
    def open_mode(self) -> Literal["journal", "database", "off"]:
        """``open_rows`` with ``open_before_upstream: false`` taken into account."""
        return self.open_rows if self.open_before_upstream else "off"


class RedisConfig(BaseModel):
    """The ``redis:`` section: state shared by replicas (rate limits, budgets, health, caches)."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None  # ORCAROUTER_REDIS_URL overrides; None: every part is per process
    # Refuse to start when Redis is configured but does not answer (ORCAROUTER_REDIS_OPTIONAL=1
    # starts degraded instead).
    required_at_startup: bool = True
    key_prefix: str = Field(default="orca:", min_length=1, max_length=64)
    # Seconds a failed Redis call keeps the gateway on its per-process fallbacks.
    retry_interval: float = Field(default=1.0, gt=0, le=60)
    # While Redis is down each replica enforces this share of every rate limit on its own.
    fallback_limit_share: float = Field(default=0.5, gt=0, le=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class PricingConfig(BaseModel):
    """The ``pricing:`` section: what requests cost (catalog prices, plus an optional markup)."""

    model_config = ConfigDict(extra="forbid")
    markup_percent: Decimal = Field(default=Decimal(0), ge=0, le=1000)


class ProviderConfig(BaseModel):
    """One upstream provider as the operator declares it in YAML."""

    model_config = ConfigDict(extra="forbid")
    id: str
    protocol: Literal["openai", "anthropic", "gemini"]
    base_url: str
    api_key_env: str | None = None
    models: list[str] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    # Per-model timeouts (a slow reasoning model next to fast ones): replace the provider's.
    model_timeouts: dict[str, TimeoutsConfig] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _PROVIDER_ID.match(value):
            raise ValueError("must be lowercase letters, digits, '_', '-' or '.'")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.rstrip("/")


class FileConfig(BaseModel):
    """The YAML file's shape; environment variables override the scalar settings."""

    model_config = ConfigDict(extra="forbid")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    data_dir: str | None = None
    database_url: str | None = None
    max_body_bytes: int | None = Field(default=None, ge=1024)
    access_log: bool | None = None
    providers: list[ProviderConfig] | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)
    health: HealthConfig = Field(default_factory=HealthConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider the gateway will call, with its credential resolved."""

    id: str
    protocol: Literal["openai", "anthropic", "gemini"]
    base_url: str
    api_key: str | None = field(repr=False)
    models: frozenset[str] | None
    headers: Mapping[str, str]
    timeouts: TimeoutsConfig
    model_timeouts: Mapping[str, TimeoutsConfig] = field(default_factory=dict)

    def timeouts_for(self, model: str) -> TimeoutsConfig:
        """The timeouts of one target: the model's own, else the provider's."""
        return self.model_timeouts.get(model, self.timeouts)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway needs to start, validated."""

    host: str
    port: int
    data_dir: Path
    database_url: str
    admin_key: str | None = field(repr=False)
    max_body_bytes: int
    access_log: bool
    providers: tuple[Provider, ...]
    model_overrides: tuple[Mapping[str, Any], ...] = ()
    # Anyone may register (and get a workspace) through the management API; otherwise only
    # the first user may.
    open_registration: bool = False
    # ``GET /metrics`` for anyone (a scraper inside a private network); else the admin key only.
    metrics_public: bool = False
    health: HealthConfig = field(default_factory=HealthConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    # BYOK: the key that encrypts workspace provider credentials (None: BYOK is off), and
    # older keys still accepted for reading while a rotation is under way.
    secret_key: str | None = field(default=None, repr=False)
    previous_secret_keys: tuple[str, ...] = field(default=(), repr=False)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value the gateway holds, for log redaction."""
        values = [p.api_key for p in self.providers if p.api_key]
        if self.admin_key:
            values.append(self.admin_key)
        if self.secret_key:
            values.append(self.secret_key)
        redis_password = urlsplit(self.redis.url).password if self.redis.url else None
        if redis_password:
            values.append(redis_password)
        values.extend(self.previous_secret_keys)
        return tuple(values)


def load_settings(config_path: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any) and the environment; raise ``ConfigError`` on any problem."""
    env = dict(os.environ if environ is None else environ)
    path = config_path or env.get("ORCAROUTER_CONFIG")
    file_config = _read_file(Path(path)) if path else FileConfig()
    data_dir = Path(env.get("ORCAROUTER_DATA_DIR") or file_config.data_dir or "data")
    admin_key = env.get("ORCAROUTER_ADMIN_KEY") or None
    if admin_key is not None and not (
        admin_key.startswith(KEY_PREFIX) and len(admin_key) >= len(KEY_PREFIX) + 32
    ):
        raise ConfigError(
            f"ORCAROUTER_ADMIN_KEY must start with '{KEY_PREFIX}' "
            "and have at least 32 more characters"
        )
    if file_config.providers is not None:
        providers = tuple(_resolve_provider(p, env) for p in file_config.providers)
    else:
        providers = _providers_from_environment(env)
    _check_unique(providers)
    secret_keys = read_secret_keys(env, SECRET_KEY_ENV)
    if len(secret_keys) > 1:
        raise ConfigError(
            f"{SECRET_KEY_ENV} holds one key; older ones go in {PREVIOUS_SECRET_KEY_ENV}"
        )
    return Settings(
        host=env.get("ORCAROUTER_HOST") or file_config.host or "127.0.0.1",
        port=_int_env(env, "ORCAROUTER_PORT", file_config.port or 8080, 1, 65535),
        data_dir=data_dir,
        database_url=(
            env.get("ORCAROUTER_DATABASE_URL")
            or file_config.database_url
            or f"sqlite:///{(data_dir / 'orcarouter.db').as_posix()}"
        ),
        admin_key=admin_key,
        max_body_bytes=_int_env(
            env,
            "ORCAROUTER_MAX_BODY_BYTES",
            file_config.max_body_bytes or 20 * 1024 * 1024,
            1024,
            1 << 31,
        ),
        access_log=_bool_env(env, "ORCAROUTER_ACCESS_LOG", file_config.access_log is not False),
        providers=providers,
        model_overrides=tuple(file_config.models),
        open_registration=_bool_env(env, "ORCAROUTER_OPEN_REGISTRATION", False),
        metrics_public=_bool_env(env, "ORCAROUTER_METRICS_PUBLIC", False),
        health=file_config.health,
        egress=file_config.egress,
        pricing=file_config.pricing,
        usage=file_config.usage,
        redis=_redis_config(file_config.redis, env),
        secret_key=secret_keys[0] if secret_keys else None,
        previous_secret_keys=tuple(
            k for k in read_secret_keys(env, PREVIOUS_SECRET_KEY_ENV) if k not in secret_keys
        ),
    )


def _redis_config(config: RedisConfig, env: Mapping[str, str]) -> RedisConfig:
    """The file's ``redis:`` section with ``ORCAROUTER_REDIS_URL`` and ``_OPTIONAL`` applied."""
    changes: dict[str, Any] = {}
    if env.get("ORCAROUTER_REDIS_URL"):
        changes["url"] = env["ORCAROUTER_REDIS_URL"]
    if _bool_env(env, "ORCAROUTER_REDIS_OPTIONAL", False):
        changes["required_at_startup"] = False
    if not changes:
        return config
    try:
        return RedisConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as exc:
        raise ConfigError(f"ORCAROUTER_REDIS_URL: {exc.errors()[0]['msg']}") from None


def decode_secret_key(text: str) -> bytes:
    """The 32 key bytes of a urlsafe-base64 secret key; ``ValueError`` (never showing the
    value) when it is not one."""
    if not _SECRET_KEY_TEXT.match(text):
        raise ValueError(f"must be urlsafe base64 of {SECRET_KEY_BYTES} bytes (44 characters)")
    try:
        material = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except binascii.Error:
        raise ValueError("is not valid urlsafe base64") from None
    if len(material) != SECRET_KEY_BYTES:
        raise ValueError(f"must decode to {SECRET_KEY_BYTES} bytes")
    return material


def read_secret_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """The secret keys in the variable ``name``, or in the file named by ``name_FILE`` (one of
    the two): separated by commas or line breaks, each checked by ``decode_secret_key``."""
    value = env.get(name) or ""
    path = env.get(name + "_FILE") or ""
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {name}_FILE {path}: {exc.strerror}") from exc
    keys = tuple(dict.fromkeys(k for k in re.split(r"[\s,]+", value) if k))
    for key in keys:
        try:
            decode_secret_key(key)
        except ValueError as exc:
            source = f"{name}_FILE {path}" if path else name
            raise ConfigError(
                f"{source}: a key {exc}; make one with 'orcarouter credentials new-key'"
            ) from None
    return keys


def _read_file(path: Path) -> FileConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _resolve_provider(config: ProviderConfig, env: Mapping[str, str]) -> Provider:
    api_key = None
    if config.api_key_env:
        api_key = env.get(config.api_key_env)
        if not api_key:
            raise ConfigError(
                f"provider '{config.id}': environment variable {config.api_key_env} is not set"
            )
    return Provider(
        id=config.id,
        protocol=config.protocol,
        base_url=config.base_url,
        api_key=api_key,
        models=frozenset(config.models) if config.models is not None else None,
        headers=dict(config.headers),
        timeouts=config.timeouts,
        model_timeouts=dict(config.model_timeouts),
    )


def _providers_from_environment(env: Mapping[str, str]) -> tuple[Provider, ...]:
    return tuple(
        Provider(
            id=spec.id,
            protocol=spec.protocol,
            base_url=spec.base_url,
            api_key=env[spec.api_key_env],
            models=None,
            headers={},
            timeouts=TimeoutsConfig(),
        )
        for spec in WELL_KNOWN_PROVIDERS
        if env.get(spec.api_key_env)
    )


def _check_unique(providers: tuple[Provider, ...]) -> None:
    seen: set[str] = set()
    for provider in providers:
        if provider.id in seen:
            raise ConfigError(f"provider id '{provider.id}' is declared twice")
        seen.add(provider.id)


def _int_env(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool_env(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
