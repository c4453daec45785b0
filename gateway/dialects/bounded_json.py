"""JSON request bodies parsed with one nesting-depth limit.

orjson parses up to 1024 levels, but its encoder stops at 255 and ``copy.deepcopy``
recurses once per level: a body nested a few hundred levels deep would parse, pass
validation and then fail far from where it came in (a 500). So every route that
parses JSON checks the depth right after parsing, with ``server.max_json_depth``
(64 by default, at most 128, well under what the encoder, ``deepcopy`` and pydantic
take), and refuses a deeper body with ``400 json_too_deep`` naming the limit. The
check walks the parsed value with an explicit stack, never by recursion.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest

DEFAULT_MAX_DEPTH = 64
"""The default of ``server.max_json_depth`` (gateway/config/settings.py)."""
TOO_DEEP = "json_too_deep"
_CONTAINERS = frozenset({dict, list})
"""What orjson parses arrays and objects into (exactly these types)."""
_LONG = 16
"""Arrays longer than this are first checked for containers at C speed."""


def too_deep(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"the request body is nested more than {limit} levels deep (server.max_json_depth)",
        param="body",
        code=TOO_DEEP,
    )


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` holds arrays/objects nested more than ``limit`` levels deep
    (``{}`` and ``[]`` are one level; scalars none). Level by level, never recursive:
    any depth is safe, and it stops at the first level past ``limit``."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            if type(node) is list and len(node) > _LONG and _CONTAINERS.isdisjoint(map(type, node)):
                continue  # a long array of scalars (embedding inputs): checked without a Python loop
            for child in node.values() if type(node) is dict else node:
                if type(child) in _CONTAINERS:
                    below.append(child)
        level = below
    return False


def loads(raw: bytes, max_depth: int) -> Any:
    """``raw`` parsed, or ``InvalidRequest`` (param ``body``): ``invalid_json`` for text
    that is not JSON, ``json_too_deep`` past ``max_depth`` levels (also when orjson's own
    parser limit is hit first)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "depth limit" in text:
            raise too_deep(max_depth) from None
        what = "not valid UTF-8" if "utf-8" in text.lower() else f"not valid JSON ({text})"
        raise InvalidRequest(f"the request body is {what}", param="body", code="invalid_json") from None
    if depth_exceeds(value, max_depth):
        raise too_deep(max_depth)
    return value
