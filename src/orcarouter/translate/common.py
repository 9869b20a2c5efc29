"""Helpers shared by every wire translator: errors, results, extras, data URLs, JSON args."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard, TypeVar

from orcarouter.canonical import Extras, WireName

T = TypeVar("T")
JsonDict = dict[str, Any]


class TranslationError(ValueError):
    """A request cannot be expressed in the target wire without changing its meaning."""

    def __init__(self, *, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class MalformedRequest(ValueError):
    """A field of the client's request has a type its own protocol does not allow (a number
    given as a string, say): the client's error, whatever the target."""

    def __init__(self, *, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(slots=True)
class RequestTranslation:
    """A rendered request body plus what had to be dropped or adjusted to render it."""

    body: JsonDict
    dropped: list[str] = field(default_factory=list)
    adjusted: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Policy:
    """What to do with parameters the target cannot express.

    Sampling-only parameters are always dropped and reported. Shape-changing ones raise
    ``TranslationError`` unless ``drop_params`` is set, in which case they are reported too.
    """

    drop_params: bool = False
    dropped: list[str] = field(default_factory=list)
    adjusted: list[str] = field(default_factory=list)

    def drop(self, param: str) -> None:
        """Record a silently droppable parameter."""
        self.dropped.append(param)

    def reject(self, param: str, message: str) -> None:
        """Raise for a shape-changing parameter unless ``drop_params`` is set."""
        if not self.drop_params:
            raise TranslationError(param=param, message=message)
        self.dropped.append(param)


def is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)`` without the abstract class's check for what decoded JSON
    mostly holds (a dict, or None for an absent field): that check costs about 1,800
    instructions in compiled code, the two tests a few."""
    if type(value) is dict:
        return True
    return value is not None and isinstance(value, Mapping)


def split_known(data: Mapping[str, Any], known: frozenset[str]) -> JsonDict:
    """Return the keys of ``data`` not in ``known``, plus known keys set to null.

    A known key that is null or empty carries no meaning, but writing it back keeps same-wire
    round trips exact.
    """
    return {
        key: value
        for key, value in data.items()
        if key not in known or value is None or (isinstance(value, (list, dict)) and not value)
    }


def extras_for(wire: WireName, leftover: Mapping[str, Any]) -> Extras:
    """Wrap a wire's unknown keys as canonical extras (empty when nothing is left over)."""
    return {wire: dict(leftover)} if leftover else {}


def wire_extra(extras: Extras, wire: WireName) -> Mapping[str, Any]:
    """The unknown keys a given wire left on a canonical object."""
    return extras.get(wire, {})


class _Absent:
    """Marks, in extras, a key the wire did not send although the renderer writes it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final[Any] = _Absent()


def deep_merge(base: JsonDict, overlay: Mapping[str, Any]) -> JsonDict:
    """Merge ``overlay`` into ``base`` (in place, recursively for dicts) and return ``base``.

    A value of ``ABSENT`` removes the key.
    """
    for key, value in overlay.items():
        current = base.get(key)
        if value is ABSENT:
            base.pop(key, None)
        elif isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        elif isinstance(value, Mapping):
            base[key] = deep_merge({}, value)
        else:
            base[key] = value
    return base


def with_extras(body: JsonDict, extras: Extras, wire: WireName) -> JsonDict:
    """Overlay the unknown keys ``wire`` left on an object onto its rendered ``body``."""
    extra = extras.get(wire)
    return deep_merge(body, extra) if extra else body


_DATA_URL: Final = re.compile(
    r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL
)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """Split a base64 ``data:`` URL into (media type, base64 data); ``None`` otherwise."""
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match.group("params"):
        return None
    return match.group("mime") or "application/octet-stream", match.group("data")


def data_url(media_type: str, data: str) -> str:
    """Build a base64 ``data:`` URL."""
    return f"data:{media_type};base64,{data}"


def parse_arguments(arguments: Any) -> Any:
    """Parse tool-call arguments; empty text means ``{}``, invalid JSON means ``{}``.

    Portkey fix for empty arguments: https://github.com/Portkey-AI/gateway/pull/1104
    """
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def dump_json(value: Any) -> str:
    """Compact JSON text as OpenAI emits tool arguments (non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_TOOL_ID_INVALID: Final = re.compile(r"[^A-Za-z0-9_-]")


def sanitize_tool_id(tool_id: str) -> str:
    """Map a tool-call id onto Anthropic's ``^[a-zA-Z0-9_-]+$`` (Kimi ids look like ``a.b:0``)."""
    cleaned = _TOOL_ID_INVALID.sub("_", tool_id)
    return cleaned or "toolu_empty"


def as_str_tuple(value: Any) -> tuple[str, ...] | None:
    """A list of strings as a tuple, ``None`` for anything else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def optional_int(value: Any) -> int | None:
    """An int (not a bool) or ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Checks of a client request's typed fields: the value, None for null (or an absent field),
# MalformedRequest when it has another JSON type. ``param`` names the field for the error.


def as_number(value: Any, param: str) -> float | None:
    """A JSON number (an int stays an int)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise MalformedRequest(param=param, message="must be a number")


def as_integer(value: Any, param: str) -> int | None:
    """A JSON integer; a number with no fraction counts (JSON has one number type: ``40.0``
    is how some clients write 40)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise MalformedRequest(param=param, message="must be an integer")


def as_bool(value: Any, param: str) -> bool | None:
    """A JSON boolean."""
    if value is None or isinstance(value, bool):
        return value
    raise MalformedRequest(param=param, message="must be a boolean")


def as_string(value: Any, param: str) -> str | None:
    """A JSON string."""
    if value is None or isinstance(value, str):
        return value
    raise MalformedRequest(param=param, message="must be a string")


def as_strings(
    value: Any, param: str, allowed: str = "an array of strings"
) -> tuple[str, ...] | None:
    """An array of JSON strings (``allowed``: what the error says the field must be)."""
    sequences = as_str_tuple(value)
    if value is None or sequences is not None:
        return sequences
    raise MalformedRequest(param=param, message=f"must be {allowed}")


def residual(original: Mapping[str, Any], rendered: Mapping[str, Any]) -> JsonDict:
    """What ``original`` has that ``rendered`` lacks or renders differently (recursive).

    Used to keep the unknown or vendor-specific parts of an object as extras, so that
    ``deep_merge(rendered, residual(original, rendered)) == original``.
    """
    return _residual(
        original if type(original) is dict else dict(original),
        rendered if type(rendered) is dict else dict(rendered),
    )


def _residual(original: dict[str, Any], rendered: dict[str, Any]) -> JsonDict:
    # On dicts (what JSON decodes to), which compiled code reads without generic calls.
    out: JsonDict = {key: ABSENT for key in rendered if key not in original}
    for key, value in original.items():
        if key not in rendered:
            out[key] = value
            continue
        mine = rendered[key]
        kind = type(value)
        if kind in _SCALARS and kind is type(mine):  # most keys: no abstract-class checks
            if value != mine:
                out[key] = value
        elif (kind is dict and type(mine) is dict) or (
            isinstance(value, Mapping) and isinstance(mine, Mapping)
        ):
            nested = residual(value, mine)
            if nested:
                out[key] = nested
        elif value != mine or not identical(value, mine):
            out[key] = value
    return out


def identical(a: Any, b: Any) -> bool:
    """JSON equality that tells ``false`` from ``0`` and ``1.0`` from ``1``, in lists too
    (Python's ``==`` does not)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(identical(v, b[k]) for k, v in a.items())
    return bool(a == b)


_SCALARS: Final = frozenset({int, float, str, bool, type(None)})  # JSON's, never a Mapping
