"""Reading Gemini request objects: both field spellings, strict types, exact paths.

Google's REST API parses proto JSON, which takes every field name in lowerCamelCase
or in its proto snake_case (the google-genai SDK sends a few snake_case names:
``thinking_budget``, ``parameters_json_schema``). :func:`fields` reads one object
into a dict keyed by the camelCase names, refusing a field it does not know (as
Google does: "Unknown name") and one given in both spellings; a ``null`` value is
an unset field, as in proto JSON.

Every problem is an :class:`InvalidRequest` whose ``param`` is the dotted path of
the field, camelCase (``contents.2.parts.0.inlineData.mimeType``), and whose
``code`` is ``invalid_type``, ``invalid_value``, ``missing_required_parameter`` or
``unsupported_value``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gateway.canonical import JSON
from gateway.dialects.checks import bad
from gateway.dialects.checks import kind_of as describe
from gateway.errors import InvalidRequest

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def at(param: str, *keys: str | int) -> str:
    """``param`` extended by ``keys``: ``at("contents", 2, "parts")`` -> ``contents.2.parts``."""
    return ".".join([param, *map(str, keys)] if param else map(str, keys))


def camel(name: str) -> str:
    """``thinking_budget`` -> ``thinkingBudget``; camelCase names stay as they are."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def wrong_type(value: Any, param: str, what: str) -> InvalidRequest:
    return bad(f"{param or 'the request body'} must be {what}, got {describe(value)}", param, "invalid_type")


def missing(param: str) -> InvalidRequest:
    return bad(f"{param} is required", param, "missing_required_parameter")


def obj(value: Any, param: str) -> JSON:
    if not isinstance(value, dict):
        raise wrong_type(value, param, "an object")
    return value


def array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type(value, param, "an array")
    return value


def string(value: Any, param: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise wrong_type(value, param, "a string")
    if not empty and not value:
        raise bad(f"{param} must not be empty", param)
    return value


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(value, param, "a boolean")
    return value


def number(value: Any, param: str, low: float | None = None, high: float | None = None) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(value, param, "a number")
    _within(value, param, low, high)
    return value


def integer(value: Any, param: str, low: int | None = None, high: int | None = None) -> int:
    """An integer; ``5.0`` counts (JSON does not tell them apart), ``5.5`` does not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(value, param, "an integer")
    _within(value, param, low, high)
    return value


def _within(value: float, param: str, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise bad(f"{param} must be at least {low}, got {value}", param)
    if high is not None and value > high:
        raise bad(f"{param} must be at most {high}, got {value}", param)


def fields(value: Any, param: str, known: Iterable[str]) -> JSON:
    """The object at ``param`` keyed by camelCase names, null members left out.
    A name outside ``known`` (camelCase) is refused, as is one given twice."""
    allowed = frozenset(known)
    out: JSON = {}
    seen: set[str] = set()
    for key, item in obj(value, param).items():
        name = camel(key)
        if name not in allowed:
            where = f" in {param}" if param else ""
            raise bad(f"unknown field {key!r}{where}", at(param, key), "unsupported_value")
        if name in seen:
            raise bad(f"{at(param, name)} is given twice (camelCase and snake_case)", at(param, name))
        seen.add(name)
        if item is not None:
            out[name] = item
    return out


def text_of(value: Any, param: str, *, empty: bool = True) -> str | None:
    """An optional string member (None when unset)."""
    return None if value is None else string(value, param, empty=empty)


def standard_base64(data: Any, param: str) -> str:
    """Base64 in the standard alphabet, padded. google-genai sends bytes in the
    URL-safe alphabet, which Google accepts and most other providers do not."""
    text = string(data, param, empty=False)
    if not _BASE64.fullmatch(text):
        raise bad(f"{param} must be base64-encoded bytes", param)
    plain = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(plain) % 4 == 1:
        raise bad(f"{param} is not valid base64 (its length is wrong)", param)
    return plain + "=" * (-len(plain) % 4)


def model_name(value: Any, param: str) -> str:
    """A model as named in a URL or a body: ``models/x`` or ``x`` -> ``x``."""
    name = string(value, param, empty=False)
    name = name.removeprefix("models/")
    if not name:
        raise bad(f"{param} names no model", param)
    return name
