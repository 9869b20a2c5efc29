"""Named routers: ``orcarouter/{name}`` per workspace, their rules, and how they are checked.

A router names a pool of models (allowed-model globs; empty means every chat model the
workspace can reach), a strategy that orders the pool for one request, an optional default
model (the safety net, tried last) and strategy parameters. Names follow the hosted product:
lowercase letters, digits, ``_`` and ``-``, 1-50 characters; ``orcarouter`` is reserved
(https://docs.orcarouter.ai/routing/named-routers). ``orcarouter/auto`` is seeded with every
workspace: cheapest, no default, every chat model
(https://docs.orcarouter.ai/routing/auto-router).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal, Protocol, get_args

ROUTER_PREFIX: Final = "orcarouter/"
AUTO_ROUTER: Final = "auto"
RESERVED_NAMES: Final = frozenset({"orcarouter"})
Strategy = Literal["cheapest", "quality", "balanced", "fastest", "priority", "weighted"]
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)
DEFAULT_STRATEGY: Final[Strategy] = "balanced"  # the hosted default for routers users create
DEFAULT_QUALITY_BAR: Final = 60
MAX_PATTERNS: Final = 100
MAX_ENTRIES: Final = 100

_NAME: Final = re.compile(r"^[a-z0-9_-]{1,50}$")
_MODEL_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:/@+\-*]{1,200}$")


class RouterError(ValueError):
    """A router's definition breaks a rule; the message says which."""


class StoredRouter(Protocol):
    """What the store hands back for one router (``store.routers.RouterRow`` fits)."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def allowed_models(self) -> tuple[str, ...]: ...
    @property
    def default_model(self) -> str | None: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def quality_bar(self) -> int | None: ...
    @property
    def priority(self) -> tuple[str, ...]: ...
    @property
    def weights(self) -> Mapping[str, int]: ...
    @property
    def quality_scores(self) -> Mapping[str, int]: ...
    @property
    def updated_at(self) -> datetime: ...


def check_name(name: str) -> str:
    """The name itself, or ``RouterError`` saying which rule it breaks."""
    if not _NAME.fullmatch(name):
        raise RouterError(
            f"router name must be 1-50 lowercase letters, digits, '_' or '-' (got {name[:60]!r})"
        )
    if name in RESERVED_NAMES:
        raise RouterError(f"router name {name!r} is reserved")
    return name


def check_pattern(pattern: str) -> str:
    """A model glob (``openai/*``): letters, digits, ``._:/@+-`` and ``*``."""
    if not _MODEL_PATTERN.fullmatch(pattern):
        raise RouterError(
            f"model pattern {pattern[:60]!r} may hold only letters, digits, '._:/@+-' and '*'"
        )
    return pattern


def compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any glob in full; None for an empty list (all)."""
    if not patterns:
        return None
    parts = [".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns]
    return re.compile("|".join(f"(?:{part})" for part in parts), re.IGNORECASE)


def glob_matches(pattern: str, model_id: str) -> bool:
    """Whether one glob matches ``model_id`` (case-insensitive)."""
    compiled = compile_globs([pattern])
    return compiled is not None and compiled.fullmatch(model_id) is not None


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """One router, validated, with its allowed-model globs compiled once."""

    workspace_id: str
    name: str
    strategy: Strategy
    allowed_models: tuple[str, ...] = ()
    default_model: str | None = None
    enabled: bool = True
    quality_bar: int | None = None
    priority: tuple[str, ...] = ()
    weights: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    quality_scores: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    matcher: re.Pattern[str] | None = field(default=None, compare=False)

    @property
    def model_id(self) -> str:
        """``orcarouter/{name}``: what clients send as ``model``."""
        return ROUTER_PREFIX + self.name

    @property
    def bar(self) -> int:
        """The quality bar ``balanced`` uses."""
        return DEFAULT_QUALITY_BAR if self.quality_bar is None else self.quality_bar

    def admits(self, model_id: str) -> bool:
        """Whether the allowed-model globs admit ``provider/model`` (empty list: all)."""
        return self.matcher is None or self.matcher.fullmatch(model_id) is not None


def router_spec(row: StoredRouter) -> RouterSpec:
    """A stored router as a ``RouterSpec`` (an unknown strategy falls back to cheapest)."""
    strategy = row.strategy if row.strategy in STRATEGIES else "cheapest"
    return RouterSpec(
        workspace_id=row.workspace_id,
        name=row.name,
        strategy=strategy,  # type: ignore[arg-type]
        allowed_models=tuple(row.allowed_models),
        default_model=row.default_model,
        enabled=row.enabled,
        quality_bar=row.quality_bar,
        priority=tuple(row.priority),
        weights=MappingProxyType(dict(row.weights)),
        quality_scores=MappingProxyType(dict(row.quality_scores)),
        matcher=compile_globs(row.allowed_models),
    )


def check_fields(values: Mapping[str, object]) -> None:
    """Validate the fields of a router being created or changed; ``RouterError`` names the bad one.

    Only the fields present are checked, so a partial update is validated as given.
    """
    if "name" in values:
        check_name(str(values["name"]))
    strategy = values.get("strategy")
    if "strategy" in values and strategy not in STRATEGIES:
        raise RouterError(f"strategy must be one of {', '.join(STRATEGIES)}")
    for name in ("allowed_models", "priority"):
        patterns = values.get(name)
        if isinstance(patterns, Sequence) and not isinstance(patterns, str):
            if len(patterns) > MAX_PATTERNS:
                raise RouterError(f"{name} holds at most {MAX_PATTERNS} entries")
            for pattern in patterns:
                check_pattern(str(pattern))
    default = values.get("default_model")
    if isinstance(default, str):
        check_pattern(default)
        if "*" in default:
            raise RouterError("default_model must be one model id, not a pattern")
    bar = values.get("quality_bar")
    if bar is not None and (not isinstance(bar, int) or not 0 <= bar <= 100):
        raise RouterError("quality_bar must be a whole number from 0 to 100")
    for name, low, high in (("weights", 0, 1_000_000), ("quality_scores", 0, 100)):
        entries = values.get(name)
        if isinstance(entries, Mapping):
            if len(entries) > MAX_ENTRIES:
                raise RouterError(f"{name} holds at most {MAX_ENTRIES} entries")
            for pattern, number in entries.items():
                check_pattern(str(pattern))
                if not isinstance(number, int) or not low <= number <= high:
                    raise RouterError(f"{name} values must be whole numbers from {low} to {high}")


def split_router_id(model: str) -> str | None:
    """The router name in ``orcarouter/{name}``, or None when ``model`` names no router."""
    if not model.startswith(ROUTER_PREFIX):
        return None
    return model[len(ROUTER_PREFIX) :]
