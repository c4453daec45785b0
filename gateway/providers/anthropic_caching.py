"""Prompt caching on the Anthropic provider: canonical ``cache_control`` -> Anthropic breakpoints.

Where a breakpoint comes from (canonical -> Anthropic):

- a content part's ``cache_control`` (``text``, ``refusal``, ``image_url``, ``file``) -> the
  block built from that part (a part that builds no block, an empty text, carries none);
- a tool definition's top-level ``cache_control`` -> that tool;
- a message's ``cache_control`` -> the last block built from that message (its last text,
  image, document, ``tool_use`` or ``tool_result``; never a thinking block, which Anthropic
  does not let carry one); a part's own marker on that block wins;
- the request's top-level ``cache_control`` -> Anthropic's top-level ``cache_control``
  (automatic caching: the breakpoint follows the last cacheable block).

Each value is checked (``{"type": "ephemeral"}`` with an optional ``ttl`` of ``5m`` or
``1h``; anything else is an InvalidRequest) and rebuilt with those keys only (other keys are
dropped: Anthropic refuses unknown ones).

Then the body is made acceptable, so caching never earns a 400 from the upstream:

- At most :data:`MAX_BREAKPOINTS` (Anthropic's limit). Counted in Anthropic's prefix order
  (tools, system, messages, then the top-level one, which takes a slot), the earliest
  extra ones are dropped: the breakpoints that cover the longest prefixes stay.
- Anthropic wants 1-hour breakpoints before 5-minute ones: a ``1h`` breakpoint after a
  5-minute one is sent as ``5m`` (the cheaper write; a later ``1h`` could not be honoured).

Automatic breakpoints (the deployment's ``auto_cache``, off by default): a request that
marks none gets ``{"type": "ephemeral"}`` on its last system block and its last tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.canonical import JSON
from gateway.errors import InvalidRequest

MAX_BREAKPOINTS = 4
"""Anthropic's limit of ``cache_control`` breakpoints in one request."""
CACHE_TTLS = ("5m", "1h")
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})


def cache_control(value: Any, param: str) -> JSON:
    """A canonical ``cache_control`` -> Anthropic's (``type`` and ``ttl`` only), or InvalidRequest."""
    if not isinstance(value, dict):
        raise InvalidRequest("cache_control must be an object", param=param, code="invalid_type")
    if value.get("type") != "ephemeral":
        raise InvalidRequest("cache_control.type must be 'ephemeral'", param=f"{param}.type", code="invalid_value")
    out: JSON = {"type": "ephemeral"}
    ttl = value.get("ttl")
    if ttl is not None:
        if ttl not in CACHE_TTLS:
            raise InvalidRequest("cache_control.ttl must be '5m' or '1h'", param=f"{param}.ttl", code="invalid_value")
        out["ttl"] = ttl
    return out


def mark(block: JSON, source: JSON, param: str) -> JSON:
    """``block`` with the ``cache_control`` of ``source`` (a canonical part or tool), if it has one."""
    value = source.get("cache_control")
    if value is not None:
        block["cache_control"] = cache_control(value, f"{param}.cache_control")
    return block


def mark_last(blocks: list[JSON], message: JSON, param: str) -> None:
    """A message-level ``cache_control`` onto the last block built from the message."""
    value = message.get("cache_control")
    if value is None:
        return
    control = cache_control(value, f"{param}.cache_control")
    markable = [b for b in blocks if b.get("type") not in _UNMARKABLE]
    if markable:
        markable[-1].setdefault("cache_control", control)


def settle_breakpoints(body: JSON, *, auto: bool) -> None:
    """Add the automatic breakpoints (``auto`` and none marked), then keep at most
    :data:`MAX_BREAKPOINTS` and put the TTLs in the order Anthropic accepts.

    ``body["system"]`` must still be a list of blocks here."""
    holders = list(_holders(body))
    if auto and not holders:
        holders = _auto_breakpoints(body)
    extra = len(holders) - MAX_BREAKPOINTS
    for holder in holders[: max(0, extra)]:
        del holder["cache_control"]
    _order_ttls(holders[max(0, extra) :])


def _auto_breakpoints(body: JSON) -> list[JSON]:
    added: list[JSON] = []
    for key in ("tools", "system"):
        blocks = body.get(key)
        if isinstance(blocks, list) and blocks:
            blocks[-1]["cache_control"] = {"type": "ephemeral"}
            added.append(blocks[-1])
    return added


def _order_ttls(holders: list[JSON]) -> None:
    short_seen = False
    for holder in holders:
        control = holder["cache_control"]
        if control.get("ttl") == "1h":
            if short_seen:
                control["ttl"] = "5m"
        else:
            short_seen = True


def _holders(body: JSON) -> Iterator[JSON]:
    """Every object of ``body`` that carries a ``cache_control``, in Anthropic's prefix order."""
    for key in ("tools", "system"):
        yield from _marked(body.get(key))
    for turn in body.get("messages") or ():
        for block in turn.get("content") or ():
            if block.get("type") == "tool_result":
                yield from _marked(block.get("content"))
            if "cache_control" in block:
                yield block
    if "cache_control" in body:
        yield body


def _marked(blocks: Any) -> Iterator[JSON]:
    if isinstance(blocks, list):
        yield from (b for b in blocks if isinstance(b, dict) and "cache_control" in b)
