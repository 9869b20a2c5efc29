"""Which schema dialect each Gemini model gets, from the profile rows (providers/profiles.py).

Gemini 2.5 and later take full JSON Schema (``responseJsonSchema``, ``parametersJsonSchema``:
https://ai.google.dev/gemini-api/docs/structured-output#json-schema); older models only the
OpenAPI-subset ``Schema`` (``responseSchema``, ``parameters``).
"""

from __future__ import annotations

from typing import Any

import pytest

from orcarouter.catalog import Catalog
from orcarouter.providers.profiles import ProfileBook
from orcarouter.translate import openai_chat as oc
from orcarouter.translate.codecs import GeminiCodec, TargetOptions
from orcarouter.translate.gemini.schema import sanitize_schema

SCHEMA = {
    "type": "object",
    "title": "Answer",
    "additionalProperties": False,
    "$defs": {"City": {"type": "string", "description": "A city"}},
    "properties": {
        "city": {"$ref": "#/$defs/City"},
        "population": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
    "required": ["city", "population"],
}
FULL_SCHEMA_MODELS = [
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
]
SUBSET_MODELS = ["gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-1.5-pro"]


def _options(model: str) -> TargetOptions:
    return ProfileBook(Catalog([])).options("gemini", model, drop_params=False)


def _request(**extra: Any) -> Any:
    return oc.request_to_canonical(
        {"model": "m", "messages": [{"role": "user", "content": "Largest city?"}], **extra}
    )


def _structured(model: str) -> dict[str, Any]:
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    request = _request(response_format=response_format)
    return GeminiCodec().request_from_canonical(request, _options(model)).body


@pytest.mark.parametrize("model", FULL_SCHEMA_MODELS)
def test_gemini_2_5_and_3_get_the_full_json_schema(model: str) -> None:
    config = _structured(model)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


@pytest.mark.parametrize("model", SUBSET_MODELS)
def test_older_gemini_models_get_the_openapi_subset(model: str) -> None:
    config = _structured(model)["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": sanitize_schema(SCHEMA),
    }
    assert "additionalProperties" not in str(config) and "$defs" not in str(config)


def test_function_parameters_follow_the_same_dialect() -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}
    request = _request(tools=[tool])
    new = GeminiCodec().request_from_canonical(request, _options("gemini-2.5-flash")).body
    old = GeminiCodec().request_from_canonical(request, _options("gemini-2.0-flash")).body
    assert new["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == SCHEMA
    assert old["tools"][0]["functionDeclarations"][0]["parameters"] == sanitize_schema(SCHEMA)


def test_gemini_3_keeps_its_other_dialect_choices() -> None:
    """The 3.x row replaces the 2.5 row's ``GeminiTarget`` whole, so it must say json_schema."""
    target = _options("gemini-3-pro-preview").gemini
    assert target.json_schema and target.thinking == "level"
    assert target.signatures_required and target.function_response_media
    assert _options("gemini-2.5-flash").gemini.thinking == "budget"


def test_the_row_applies_behind_any_provider_id() -> None:
    book = ProfileBook(Catalog([]))
    assert book.options("vertex", "gemini-2.5-flash", drop_params=False).gemini.json_schema
    assert not book.options("vertex", "gemini-2.0-flash", drop_params=False).gemini.json_schema
