"""Model ids to targets: ``provider/model`` by prefix, bare aliases by configuration order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from orcarouter.errors import ModelNotFound
from orcarouter.routing.resolve import ModelResolver
from orcarouter.settings import Provider, TimeoutsConfig


def _provider(provider_id: str, models: Iterable[str] | None = None) -> Provider:
    return Provider(
        id=provider_id,
        protocol="openai",
        base_url=f"https://{provider_id}.test/v1",
        api_key=None,
        models=frozenset(models) if models is not None else None,
        headers={},
        timeouts=TimeoutsConfig(),
    )


OPENAI = _provider("openai")
OPENROUTER = _provider("openrouter")
AZURE = _provider("azure")
LOCAL = _provider("local", ["llama3.2", "qwen3:8b"])


def _resolver(
    providers: Iterable[Provider] = (OPENAI, OPENROUTER, LOCAL),
    served: Mapping[str, Iterable[str]] | None = None,
) -> ModelResolver:
    if served is None:
        served = {
            "openai": ["gpt-4o-mini", "gpt-4.1"],
            "openrouter": ["anthropic/claude-sonnet-4.6", "gpt-4o-mini"],
            "local": ["llama3.2", "qwen3:8b"],
        }
    return ModelResolver(providers, served)


def _not_found(resolver: ModelResolver, model: str) -> str:
    with pytest.raises(ModelNotFound) as info:
        resolver.resolve(model)
    return info.value.message


def test_provider_prefix_selects_the_provider() -> None:
    target = _resolver().resolve("openai/gpt-4.1")
    assert target.provider is OPENAI
    assert target.upstream_model == "gpt-4.1"
    assert target.model_id == "openai/gpt-4.1"


def test_the_model_part_keeps_its_slashes() -> None:
    target = _resolver().resolve("openrouter/anthropic/claude-sonnet-4.6")
    assert target.provider is OPENROUTER
    assert target.upstream_model == "anthropic/claude-sonnet-4.6"
    assert target.model_id == "openrouter/anthropic/claude-sonnet-4.6"


def test_a_prefixed_model_need_not_be_in_the_served_list_when_the_provider_lists_none() -> None:
    target = _resolver().resolve("openai/gpt-5-preview-unlisted")
    assert (target.provider, target.upstream_model) == (OPENAI, "gpt-5-preview-unlisted")


def test_a_provider_with_a_models_list_serves_its_models() -> None:
    target = _resolver().resolve("local/qwen3:8b")
    assert (target.provider, target.upstream_model) == (LOCAL, "qwen3:8b")


def test_a_provider_with_a_models_list_refuses_other_models() -> None:
    message = _not_found(_resolver(), "local/mistral-7b")
    assert "local/mistral-7b" in message
    assert "'local'" in message


def test_model_not_found_renders_as_404() -> None:
    with pytest.raises(ModelNotFound) as info:
        _resolver().resolve("local/unknown")
    assert info.value.status == 404


def test_a_bare_alias_served_by_one_provider() -> None:
    target = _resolver().resolve("gpt-4.1")
    assert (target.provider, target.upstream_model) == (OPENAI, "gpt-4.1")
    assert _resolver().resolve("llama3.2").provider is LOCAL


def test_a_bare_alias_served_by_two_providers_goes_to_the_first_configured() -> None:
    assert _resolver().resolve("gpt-4o-mini").provider is OPENAI
    reordered = _resolver(providers=(OPENROUTER, OPENAI, LOCAL))
    assert reordered.resolve("gpt-4o-mini").provider is OPENROUTER


def test_configuration_order_wins_over_name_order() -> None:
    served = {"zeta": ["m"], "alpha": ["m"]}
    resolver = ModelResolver([_provider("zeta"), _provider("alpha")], served)
    assert resolver.resolve("m").provider.id == "zeta"


def test_an_unknown_prefix_is_treated_as_a_bare_alias() -> None:
    # There is no provider "anthropic" here, so the whole id is a model OpenRouter serves.
    target = _resolver().resolve("anthropic/claude-sonnet-4.6")
    assert target.provider is OPENROUTER
    assert target.upstream_model == "anthropic/claude-sonnet-4.6"
    assert target.model_id == "openrouter/anthropic/claude-sonnet-4.6"


def test_a_configured_provider_prefix_wins_over_an_alias_with_the_same_text() -> None:
    anthropic = _provider("anthropic")
    resolver = _resolver(providers=(OPENROUTER, anthropic))
    target = resolver.resolve("anthropic/claude-sonnet-4.6")
    assert target.provider is anthropic
    assert target.upstream_model == "claude-sonnet-4.6"


def test_an_unknown_prefix_that_is_no_alias_is_not_found() -> None:
    message = _not_found(_resolver(), "mystery/model-x")
    assert "mystery/model-x" in message


@pytest.mark.parametrize("model", ["openai/", "local/", "", "/gpt-4.1"])
def test_an_empty_model_part_is_not_found(model: str) -> None:
    assert f"'{model}'" in _not_found(_resolver(), model)


def test_an_unknown_bare_model_is_not_found_naming_it() -> None:
    message = _not_found(_resolver(), "gpt-9")
    assert "'gpt-9'" in message


def test_a_served_list_for_an_unconfigured_provider_gives_no_alias() -> None:
    resolver = ModelResolver([OPENAI], {"openai": ["gpt-4.1"], "ghost": ["phantom-1"]})
    _not_found(resolver, "phantom-1")
    assert resolver.resolve("gpt-4.1").provider is OPENAI


def test_no_providers_resolves_nothing() -> None:
    resolver = ModelResolver([], {})
    _not_found(resolver, "gpt-4.1")
    _not_found(resolver, "openai/gpt-4.1")
