"""JSON Schema ⇄ Gemini's OpenAPI-subset ``Schema`` (tool ``parameters``, ``responseSchema``).

The classic ``parameters`` field rejects keywords outside its subset ("Invalid JSON payload
received. Unknown name "additionalProperties"": https://github.com/BerriAI/litellm/issues/14330);
``parametersJsonSchema`` takes full JSON Schema instead. Supported fields:
https://ai.google.dev/api/caching#Schema
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from orcarouter.translate.common import JsonDict

_COPIED: Final = (
    "description",
    "nullable",
    "maxItems",
    "minItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
)
_FORMATS: Final = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_MAX_DEPTH: Final = 32


def sanitize_schema(schema: Mapping[str, Any]) -> JsonDict:
    """A JSON Schema reduced to what Gemini's ``Schema`` accepts.

    ``$ref`` is inlined from ``$defs``/``definitions`` (a recursive reference is cut to a
    plain object), ``type: [t, "null"]`` and ``anyOf`` with a null branch become ``nullable``,
    ``oneOf`` becomes ``anyOf``, ``const`` a one-value ``enum``, and keywords Gemini rejects
    (``additionalProperties``, ``$schema``, ``default``, ``title``, ``propertyNames`` …) go.
    """
    defs = {**_mapping(schema.get("definitions")), **_mapping(schema.get("$defs"))}
    return _clean(schema, defs, frozenset(), 0)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _clean(node: Any, defs: Mapping[str, Any], seen: frozenset[str], depth: int) -> JsonDict:
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name)
        if name in seen or not isinstance(target, Mapping):
            return {"type": "object"}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs, seen | {name}, depth + 1)
    variants = node.get("anyOf") or node.get("oneOf")
    if isinstance(variants, list):
        return _any_of(node, variants, defs, seen, depth)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        merged = {**_mapping(all_of[0]), **{k: v for k, v in node.items() if k != "allOf"}}
        return _clean(merged, defs, seen, depth + 1)
    return _object(node, defs, seen, depth)


def _any_of(
    node: Mapping[str, Any],
    variants: list[Any],
    defs: Mapping[str, Any],
    seen: frozenset[str],
    depth: int,
) -> JsonDict:
    rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
    kept = [v for v in variants if not (isinstance(v, Mapping) and v.get("type") == "null")]
    nullable = len(kept) != len(variants)
    if len(kept) == 1:
        out = _clean({**_mapping(kept[0]), **rest}, defs, seen, depth + 1)
    else:
        out = _object(rest, defs, seen, depth)
        out["anyOf"] = [_clean(v, defs, seen, depth + 1) for v in kept]
    if nullable:
        out["nullable"] = True
    return out


def _object(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: frozenset[str], depth: int
) -> JsonDict:
    out: JsonDict = {}
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != len(kind):
            out["nullable"] = True
        kind = kinds[0] if len(kinds) == 1 else None
    if isinstance(kind, str):
        out["type"] = kind
    for key in _COPIED:
        if key in node:
            out[key] = node[key]
    _enum(node, out)
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(kind).lower(), frozenset()):
        out["format"] = fmt
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {
            str(name): _clean(spec, defs, seen, depth + 1) for name, spec in properties.items()
        }
        required = node.get("required")
        if isinstance(required, list):
            out["required"] = [r for r in required if r in properties]
    if "items" in node:
        out["items"] = _clean(node["items"], defs, seen, depth + 1)
    return out


def _enum(node: Mapping[str, Any], out: JsonDict) -> None:
    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    # Gemini enums are string-only; other enums are left to the description.
    if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        out["enum"] = list(values)
        out.setdefault("type", node.get("type") if isinstance(node.get("type"), str) else "string")


def schema_to_json(schema: Any) -> Any:
    """A Gemini ``Schema`` (upper-case types, ``nullable``, snake_case keys) as JSON Schema."""
    if isinstance(schema, list):
        return [schema_to_json(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: JsonDict = {}
    for key, value in schema.items():
        name = _camel(str(key))
        if name in ("nullable", "propertyOrdering"):
            continue
        if name == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif name == "properties" and isinstance(value, Mapping):
            out["properties"] = {str(k): schema_to_json(v) for k, v in value.items()}
        else:
            out[name] = schema_to_json(value)
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
