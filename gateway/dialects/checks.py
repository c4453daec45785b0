"""The checks every dialect's validation is made of: each problem an
:class:`~gateway.errors.InvalidRequest` whose ``param`` names the field and whose
``code`` is stable (``invalid_type``, ``invalid_value``, ``missing_required_parameter``,
``unsupported_value``)."""

from __future__ import annotations

from typing import Any

from gateway.canonical import JSON
from gateway.errors import InvalidRequest


def bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    """The problem of field ``param`` (``""``: the body as a whole, named ``body``)."""
    return InvalidRequest(message, param=param or "body", code=code)


def kind_of(value: Any) -> str:
    """How a JSON value is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def expect(value: Any, typ: type | tuple[type, ...], param: str, what: str) -> None:
    """``value`` is of ``typ`` (a boolean is never a number), else ``invalid_type``."""
    if type(value) is typ:  # the common case, decided at once (``bool`` is only ever ``bool``)
        return
    types = typ if isinstance(typ, tuple) else (typ,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise bad(f"{param} must be {what}, got {kind_of(value)}", param, "invalid_type")


def required(obj: JSON, key: str, param: str) -> Any:
    """``obj[key]``, or ``missing_required_parameter`` when absent or null."""
    value = obj.get(key)
    if value is None:
        raise bad(f"{param}.{key} is required", f"{param}.{key}", "missing_required_parameter")
    return value
