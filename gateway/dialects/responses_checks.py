"""The top-level fields of a Responses body that are checked before translation
(gateway/dialects/responses.py): refused features, and the type of every field passed
on unchanged. Only the body's own fields are looked at, in its order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.canonical import JSON
from gateway.dialects.checks import bad, expect

REFUSED = ("conversation", "prompt", "context_management", "moderation")
PASSED_TYPES: tuple[tuple[str, type, str], ...] = (
    ("prompt_cache_key", str, "a string"),
    ("prompt_cache_retention", str, "a string"),
    ("prompt_cache_options", dict, "an object"),
    ("service_tier", str, "a string"),
)


def check_top_level(body: JSON) -> None:
    """Refused features and the type of every field passed on unchanged: the body's own
    fields are looked at, in its order (a body carries a handful of the dozens known)."""
    for name, value in body.items():
        check = _TOP_LEVEL.get(name)
        if check is not None and value is not None:
            check(value, name)


def _refused(value: Any, name: str) -> None:
    raise bad(f"{name} is not supported by this gateway", name, "unsupported_value")


def _background(value: Any, name: str) -> None:
    expect(value, bool, name, "a boolean")
    if value:
        raise bad("background responses are not supported by this gateway", name, "unsupported_value")


def _include(value: Any, name: str) -> None:
    expect(value, list, name, "an array of strings")
    for i, entry in enumerate(value):
        expect(entry, str, f"{name}.{i}", "a string")


def _truncation(value: Any, name: str) -> None:
    if value not in ("auto", "disabled"):
        raise bad("truncation must be 'auto' or 'disabled'", name)


def _metadata(value: Any, name: str) -> None:
    expect(value, dict, name, "an object")
    for key, entry in value.items():
        expect(entry, str, f"{name}.{key}", "a string")


def _typed(typ: type, what: str) -> Callable[[Any, str], None]:
    def check(value: Any, name: str) -> None:
        expect(value, typ, name, what)

    return check


_TOP_LEVEL: dict[str, Callable[[Any, str], None]] = {
    "background": _background,
    **{name: _refused for name in REFUSED},
    **{name: _typed(bool, "a boolean") for name in ("store", "stream", "parallel_tool_calls")},
    **{name: _typed(typ, what) for name, typ, what in PASSED_TYPES},
    "previous_response_id": _typed(str, "a string"),
    "include": _include,
    "truncation": _truncation,
    "metadata": _metadata,
}
"""Top-level fields checked before translation, with their check (value not null)."""
