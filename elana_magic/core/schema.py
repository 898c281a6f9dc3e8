"""What a saved report must hold before it is read back: required fields and their types, per kind.

Each report class declares its ``schema`` (field name -> ``Field``); ``check`` applies the envelope's
and the kind's. A wrong field is named in the error, so a bad line in a saved history is refused
with one line instead of breaking every later ``%elana_history``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ElanaError


class SchemaError(ElanaError, ValueError):
    """A field is missing or of the wrong type; ``field`` names it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r} {problem}")
        self.field = field


@dataclass(frozen=True)
class Field:
    what: str                          # "a number": the message says "must be a number"
    test: Callable[[Any], bool]
    required: bool = True


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(test(x) for x in v)


NUMBER = Field("a number", _number)
INT = Field("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Field("a string", lambda v: isinstance(v, str))
FLAG = Field("true or false", lambda v: isinstance(v, bool))
OBJECT = Field("an object", lambda v: isinstance(v, dict))
LIST = Field("a list", lambda v: isinstance(v, list))
NUMBERS = Field("a list of numbers", _list_of(_number))
OBJECTS = Field("a list of objects", _list_of(lambda x: isinstance(x, dict)))
TEXTS = Field("a list of strings", _list_of(lambda x: isinstance(x, str)))
# a latency summary: {n, mean, median, std, p90, p99, ...}, each a number or null (non-finite saved as null)
STATS = Field("an object of numbers (n, mean, median, ...)",
              lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()))


def optional(field: Field) -> Field:
    """May be missing or null; when given, of ``field``'s type."""
    return Field(f"{field.what} or null", lambda v: v is None or field.test(v), required=False)


ENVELOPE = {"kind": TEXT, "format_version": optional(INT), "label": optional(Field("a string or a number",
            lambda v: isinstance(v, (str, int, float)))), "created": optional(TEXT), "settings": optional(OBJECT),
            "fingerprint": optional(OBJECT), "environment": optional(OBJECT), "notes": optional(TEXTS),
            "warnings": optional(TEXTS)}


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 20 else text[:17] + '...'}"


def check(data: dict[str, Any], schema: dict[str, Field]) -> None:
    """Raise ``SchemaError`` for the first field of ``schema`` that ``data`` lacks or holds wrongly."""
    for name, field in schema.items():
        if name not in data:
            if field.required:
                raise SchemaError(name, "is missing")
            continue
        if not field.test(data[name]):
            raise SchemaError(name, f"must be {field.what}, got {_describe(data[name])}")
