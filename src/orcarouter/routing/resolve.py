"""Turn a requested model id into a target: ``provider/model`` or a bare alias.

``openai/gpt-4o-mini`` names the provider by its id prefix; the rest, slashes included, is the
upstream model (``openrouter/anthropic/claude-sonnet-4.6``). A bare id resolves when an enabled
provider serves it; when several do, the first in configuration order wins, so the choice is
stable and in the operator's hands. Catalog aliases (the hosted product's dotted names, such as
``anthropic/claude-sonnet-4.6`` for Anthropic's ``claude-sonnet-4-6``) are applied first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from orcarouter.errors import ModelNotFound
from orcarouter.settings import Provider


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes; ``model_id`` is the gateway-wide id: ``provider/model``."""

    provider: Provider
    upstream_model: str
    # Computed once: a request reads it for access, health, headers and its usage record.
    model_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_id", f"{self.provider.id}/{self.upstream_model}")


MAX_REMEMBERED: Final = 4096


class ModelResolver:
    """Resolves model ids against the enabled providers and the models each one serves."""

    def __init__(
        self,
        providers: Iterable[Provider],
        served: Mapping[str, Iterable[str]],
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self._providers = {p.id: p for p in providers}
        self._model_aliases = dict(aliases or {})
        self._bare: dict[str, Target] = {}
        for provider in self._providers.values():
            for model in sorted(served.get(provider.id, ())):
                self._bare.setdefault(model, Target(provider, model))
        self._prefixed: dict[str, Target] = {}  # provider/model ids resolved so far (immutable)

    def resolve(self, model: str) -> Target:
        """The target for ``model``; raises ``ModelNotFound`` naming what was asked."""
        aliased = self._model_aliases.get(model)
        if aliased is not None:
            try:
                return self._resolve(aliased)
            except ModelNotFound:
                pass
        return self._resolve(model)

    def _resolve(self, model: str) -> Target:
        prefix, slash, rest = model.partition("/")
        provider = self._providers.get(prefix) if slash else None
        if provider is not None and rest:
            if provider.models is not None and rest not in provider.models:
                raise ModelNotFound(
                    f"model '{model}' is not served: provider '{provider.id}' serves "
                    f"only the models its configuration lists"
                )
            target = self._prefixed.get(model)
            if target is None:
                if len(self._prefixed) >= MAX_REMEMBERED:  # clients choose these strings
                    self._prefixed.clear()
                target = self._prefixed[model] = Target(provider, rest)
            return target
        target = self._bare.get(model)
        if target is None:
            raise ModelNotFound(
                f"model '{model}' does not exist or no enabled provider serves it; "
                "use 'provider/model' (see GET /v1/models)"
            )
        return target
