"""Hosted-style model ids resolve through the shipped catalog's aliases."""

from __future__ import annotations

from orcarouter.app import load_catalog, served_models
from orcarouter.catalog import Catalog
from orcarouter.routing.resolve import ModelResolver
from orcarouter.settings import load_settings


def _resolver(env: dict[str, str]) -> ModelResolver:
    settings = load_settings(None, env)
    catalog = load_catalog(settings, Catalog.load_shipped())
    return ModelResolver(settings.providers, served_models(settings, catalog), catalog.aliases)


def test_dotted_anthropic_id_reaches_anthropics_own_model_id() -> None:
    resolver = _resolver({"ANTHROPIC_API_KEY": "k"})
    target = resolver.resolve("anthropic/claude-sonnet-4.6")
    assert (target.provider.id, target.upstream_model) == ("anthropic", "claude-sonnet-4-6")
    # the vendor's own id still works as it is
    assert resolver.resolve("anthropic/claude-sonnet-4-6").upstream_model == "claude-sonnet-4-6"


def test_bare_catalog_model_resolves_to_its_provider() -> None:
    resolver = _resolver({"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k"})
    assert resolver.resolve("gpt-4o-mini").model_id == "openai/gpt-4o-mini"


def test_openrouter_serves_vendor_prefixed_ids_when_the_vendor_is_not_enabled() -> None:
    resolver = _resolver({"OPENROUTER_API_KEY": "k"})
    target = resolver.resolve("openai/gpt-4o-mini")
    assert (target.provider.id, target.upstream_model) == ("openrouter", "openai/gpt-4o-mini")
