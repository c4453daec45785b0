"""Anthropic ``thinking``, ``output_config.effort`` and ``cache_control`` -> the canonical
reasoning and caching keys (issue 12; the contract is in gateway/canonical.py).

Part of the Anthropic ingress dialect (:mod:`gateway.dialects.anthropic`). Reasoning:

| Messages | ``reasoning_effort`` | ``reasoning_budget`` |
|---|---|---|
| ``thinking`` enabled, ``budget_tokens`` N | ``budget_to_effort(N)`` (EFFORT_BUDGETS) | N |
| ``thinking`` adaptive (or between_tools) with ``output_config.effort`` | that effort, ``max`` -> ``xhigh`` | - |
| ``thinking`` adaptive without an effort | ``high`` (Anthropic's default effort) | - |
| ``output_config.effort`` without ``thinking`` | that effort, ``max`` -> ``xhigh`` | - |
| ``thinking`` disabled (an effort is then ignored) | ``none`` | - |

``thinking.display`` summarized -> ``include_reasoning: true``, omitted -> ``false``.
With a budget the effort follows the budget (the contract: one documented mapping), so
``output_config.effort`` beside ``budget_tokens`` reaches only the same-format path.

``cache_control`` (:func:`cache_control`): an object ``{"type": "ephemeral"}`` with an
optional ``ttl`` of ``5m`` or ``1h``, as Anthropic takes it; anything else is refused
naming the field. The dialect puts it where the contract says (parts, messages, tools,
the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON, budget_to_effort
from gateway.canonical import REASONING_TRANSLATED as TRANSLATED
from gateway.dialects.checks import bad, expect, required

EFFORTS: Mapping[str, str] = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
)
"""``output_config.effort`` -> canonical ``reasoning_effort`` (Anthropic's ``max`` is OpenAI's ``xhigh``)."""
ADAPTIVE_EFFORT = "high"
"""The effort of adaptive thinking without ``output_config.effort``: Anthropic's default."""
THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
_ADAPTIVE = ("adaptive", "between_tools")
DISPLAYS: Mapping[str, bool] = MappingProxyType({"summarized": True, "omitted": False})
"""``thinking.display`` -> ``include_reasoning``."""
CACHE_TYPES = ("ephemeral",)
CACHE_TTLS = ("5m", "1h")


def reasoning_fields(thinking: Any, effort: Any) -> JSON:
    """``thinking`` and ``output_config.effort`` (each None when absent) -> the canonical
    ``reasoning_effort``, ``reasoning_budget`` and ``include_reasoning`` (see the module docstring)."""
    chosen = _effort(effort)
    if thinking is None:
        return {} if chosen is None else {"reasoning_effort": chosen, TRANSLATED: True}
    expect(thinking, dict, "thinking", "an object")
    kind = required(thinking, "type", "thinking")
    expect(kind, str, "thinking.type", "a string")
    out: JSON = {}
    if kind == "enabled":
        budget = required(thinking, "budget_tokens", "thinking")
        expect(budget, int, "thinking.budget_tokens", "an integer")
        if budget < 1:
            raise bad("thinking.budget_tokens must be at least 1", "thinking.budget_tokens")
        out["reasoning_budget"] = budget
        out["reasoning_effort"] = budget_to_effort(budget)
    elif kind in _ADAPTIVE:
        out["reasoning_effort"] = chosen or ADAPTIVE_EFFORT
    elif kind == "disabled":
        out["reasoning_effort"] = "none"
    else:
        raise bad(f"thinking.type must be one of {list(THINKING_TYPES)}", "thinking.type", "unsupported_value")
    out[TRANSLATED] = True
    display = thinking.get("display")
    if display is not None and kind != "disabled":
        expect(display, str, "thinking.display", "a string")
        if display not in DISPLAYS:
            raise bad(f"thinking.display must be one of {list(DISPLAYS)}", "thinking.display", "unsupported_value")
        out["include_reasoning"] = DISPLAYS[display]
    return out


def _effort(effort: Any) -> str | None:
    if effort is None:
        return None
    expect(effort, str, "output_config.effort", "a string")
    if effort not in EFFORTS:
        raise bad(f"output_config.effort must be one of {list(EFFORTS)}", "output_config.effort", "unsupported_value")
    return EFFORTS[effort]


def cache_control(block: JSON, param: str) -> JSON | None:
    """The validated ``cache_control`` of ``block`` (a new dict), or None when it has none."""
    marker = block.get("cache_control")
    if marker is None:
        return None
    where = f"{param}.cache_control" if param else "cache_control"
    expect(marker, dict, where, "an object")
    for key in marker:
        if key not in ("type", "ttl"):
            raise bad(f"{where}.{key} is not a cache_control field (type, ttl)", f"{where}.{key}", "unsupported_value")
    kind = required(marker, "type", where)
    expect(kind, str, f"{where}.type", "a string")
    if kind not in CACHE_TYPES:
        raise bad(f"{where}.type must be 'ephemeral'", f"{where}.type", "unsupported_value")
    out: JSON = {"type": kind}
    ttl = marker.get("ttl")
    if ttl is not None:
        expect(ttl, str, f"{where}.ttl", "a string")
        if ttl not in CACHE_TTLS:
            raise bad(f"{where}.ttl must be one of {list(CACHE_TTLS)}", f"{where}.ttl", "unsupported_value")
        out["ttl"] = ttl
    return out


def with_cache_control(part: JSON, block: JSON, param: str) -> JSON:
    """``part`` with the validated ``cache_control`` of ``block`` added when it has one."""
    marker = cache_control(block, param)
    if marker is not None:
        part["cache_control"] = marker
    return part
