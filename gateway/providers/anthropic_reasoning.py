"""Reasoning on the Anthropic provider: canonical effort/budget -> ``thinking``, and the
thinking blocks of an answer or of the history.

Request. Thinking is on when ``reasoning_budget`` > 0, or, without a budget, when
``reasoning_effort`` is given and not ``none``; otherwise no ``thinking`` is sent (``none``
and a budget of 0 mean off: ``thinking`` is omitted, which every model accepts, where
``{"type": "disabled"}`` is refused by the always-thinking ones). Two styles, chosen by the
deployment's ``reasoning_style``:

- ``adaptive``: ``{"type": "adaptive"}`` and ``output_config.effort`` (low|medium|high|max):
  minimal and low -> low, medium -> medium, high -> high, xhigh -> max. Without an effort,
  a budget's effort is :func:`gateway.canonical.budget_to_effort`.
- ``budget``: ``{"type": "enabled", "budget_tokens": n}``, ``n`` = ``reasoning_budget`` or
  the effort's ``EFFORT_BUDGETS`` entry, at least 1024 (Anthropic's minimum). Anthropic
  wants ``max_tokens`` above the budget: when it is not, the budget is added to it, so the
  answer keeps the room the client asked for (this may pass a deployment's
  ``params.max_tokens_cap``).
- ``auto`` (the default) reads the model name (``claude-<family>-<major>[-<minor>]``, the
  older ``claude-<major>[-<minor>]-<family>``, dots or dashes, any prefix or date suffix):
  adaptive from version 4.6 on (Opus and Sonnet 4.6 take both and deprecate budgets;
  4.7, 4.8, 5.x and later take only adaptive; ``messages_adaptive_thinking*.json``,
  ``messages_effort_low_without_thinking.json``), and for the ``mythos`` and ``fable``
  families; budget for older models (3.x, 4.0-4.5, Haiku 4.5) and names it cannot read.

``include_reasoning`` sets an adaptive ``thinking.display`` (true: ``summarized``, false:
``omitted``). Absent, models from 4.7 on (which omit the text by default) and names with no
version to read (a deployment set to ``adaptive``) get ``summarized``, so reasoning the
gateway asked for is shown, as with Gemini's ``includeThoughts``; 4.6 keeps its default.
Budget-style models show their thinking summarized anyway and get no ``display``.

A conversation whose last assistant turn calls a tool but does not open on a signed
thinking block (the history came from another provider, or without its
``thinking_blocks``) is sent without ``thinking``: Anthropic refuses thinking there
("a final assistant message must start with a thinking block"), so that turn is answered
without reasoning rather than refused.

With thinking on, Anthropic refuses a ``temperature`` other than 1, ``top_k``, a ``top_p``
below 0.95 and a forced tool choice: ``temperature`` and ``top_k`` are dropped, ``top_p``
below 0.95 is dropped, ``tool_choice`` required / a named function becomes ``auto``
(``disable_parallel_tool_use`` kept). The models that take only adaptive thinking (4.7 on,
``mythos``, ``fable``) refuse ``temperature``, ``top_p`` and ``top_k`` altogether ("temperature
is deprecated for this model", ``opus_4_7_temperature_unsupported_live_vercel.json``): on
those they are always dropped.

History. An assistant message's ``thinking_blocks`` go back first in its turn, verbatim
(signatures byte for byte): ``thinking`` blocks with a non-empty string ``signature`` and
``redacted_thinking`` blocks with their ``data``. Unsigned blocks, other entries and a bare
``reasoning_content`` are dropped: Anthropic refuses unsigned thinking.

Answer. ``thinking`` blocks -> message ``reasoning_content`` (their texts joined by a blank
line) and ``thinking_blocks`` (verbatim, ``redacted_thinking`` included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON, REASONING_EFFORTS, budget_to_effort, effort_to_budget
from gateway.errors import InvalidRequest

MIN_BUDGET = 1024
"""Anthropic's smallest ``budget_tokens``."""
ADAPTIVE_EFFORTS: Mapping[str, str] = MappingProxyType(
    {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "max"}
)
"""Canonical ``reasoning_effort`` -> Anthropic ``output_config.effort``."""
THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
_ADAPTIVE_FROM = (4, 6)
_ADAPTIVE_ONLY_FROM = (4, 7)
_NEW_FAMILIES = ("mythos", "fable")
_VERSION = re.compile(r"claude-(?:[a-z]+-)?(\d+)(?:[-.](\d{1,2})(?!\d))?")
_FORCED_CHOICES = frozenset({"any", "tool"})
_MIN_TOP_P = 0.95


@dataclass(frozen=True, slots=True)
class Reasoning:
    """The canonical request's reasoning settings, checked."""

    effort: str | None = None
    budget: int | None = None
    display: bool | None = None

    @property
    def on(self) -> bool:
        if self.budget is not None:
            return self.budget > 0
        return self.effort not in (None, "none")

    @property
    def adaptive_effort(self) -> str:
        effort = self.effort if self.effort not in (None, "none") else budget_to_effort(self.budget or 0)
        return ADAPTIVE_EFFORTS.get(effort or "medium", "medium")

    @property
    def budget_tokens(self) -> int:
        tokens = self.budget if self.budget else effort_to_budget(self.effort or "medium")
        return max(MIN_BUDGET, tokens)


def model_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of a Claude model name, or None when it cannot be read."""
    found = _VERSION.search(model.lower())
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def adaptive_only(model: str) -> bool:
    """The model takes only adaptive thinking and refuses sampling parameters."""
    version = model_version(model)
    return any(f"claude-{family}" in model.lower() for family in _NEW_FAMILIES) or (
        version is not None and version >= _ADAPTIVE_ONLY_FROM
    )


def thinking_style(style: str, model: str) -> str:
    """``adaptive`` or ``budget`` for a deployment's ``reasoning_style`` and model."""
    if style in ("adaptive", "budget"):
        return style
    version = model_version(model)
    return "adaptive" if adaptive_only(model) or (version is not None and version >= _ADAPTIVE_FROM) else "budget"


def read_reasoning(req: JSON) -> Reasoning:
    """The reasoning keys of a canonical request, or InvalidRequest naming the bad one."""
    effort, budget, display = req.get("reasoning_effort"), req.get("reasoning_budget"), req.get("include_reasoning")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest("reasoning_effort must be a string", param="reasoning_effort", code="invalid_type")
    if effort is not None and effort not in REASONING_EFFORTS:
        message = f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}"
        raise InvalidRequest(message, param="reasoning_effort", code="invalid_value")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise InvalidRequest("reasoning_budget must be an integer", param="reasoning_budget", code="invalid_type")
    if budget is not None and budget < 0:
        raise InvalidRequest("reasoning_budget must be 0 or more", param="reasoning_budget", code="invalid_value")
    if display is not None and not isinstance(display, bool):
        raise InvalidRequest("include_reasoning must be a boolean", param="include_reasoning", code="invalid_type")
    return Reasoning(effort, budget, display)


def apply_reasoning(body: JSON, req: JSON, model: str, style: str) -> None:
    """Add ``thinking`` to a Messages body built from ``req`` and apply what it requires
    (see the module docstring). ``style`` is the deployment's ``reasoning_style``."""
    reasoning = read_reasoning(req)
    if adaptive_only(model):
        for key in ("temperature", "top_p", "top_k"):
            body.pop(key, None)
    if not reasoning.on or _continues_unsigned_tool_use(body["messages"]):
        return
    if thinking_style(style, model) == "adaptive":
        thinking: JSON = {"type": "adaptive"}
        body["output_config"] = {**body.get("output_config", {}), "effort": reasoning.adaptive_effort}
        if reasoning.display is not None:
            thinking["display"] = "summarized" if reasoning.display else "omitted"
        elif adaptive_only(model) or model_version(model) is None:
            # 4.7 on omit the text by default (and so may a model whose name says no version):
            # the gateway shows the reasoning it asked for
            thinking["display"] = "summarized"
    else:
        budget = reasoning.budget_tokens
        thinking = {"type": "enabled", "budget_tokens": budget}
        if body["max_tokens"] <= budget:
            body["max_tokens"] += budget
    body["thinking"] = thinking
    _thinking_restrictions(body)


def _continues_unsigned_tool_use(turns: list[JSON]) -> bool:
    """The last assistant turn calls a tool without opening on a thinking block: with
    thinking on, Anthropic refuses it ("a final assistant message must start with a
    thinking block")."""
    assistant: list[JSON] = next((t["content"] for t in reversed(turns) if t["role"] == "assistant"), [])
    calls = any(b.get("type") == "tool_use" for b in assistant)
    return calls and assistant[0].get("type") not in THINKING_TYPES


def _thinking_restrictions(body: JSON) -> None:
    body.pop("temperature", None)
    body.pop("top_k", None)
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and top_p < _MIN_TOP_P:
        del body["top_p"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in _FORCED_CHOICES:
        body["tool_choice"] = {"type": "auto", **{k: v for k, v in choice.items() if k == "disable_parallel_tool_use"}}


def replay_blocks(value: Any, param: str) -> list[JSON]:
    """An assistant message's ``thinking_blocks`` -> the blocks Anthropic accepts back, verbatim."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("thinking_blocks must be a list", param=param, code="invalid_type")
    return [dict(block) for block in value if _signed(block)]


def _signed(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("type") == "thinking":
        signature = block.get("signature")
        return isinstance(signature, str) and bool(signature) and isinstance(block.get("thinking"), str)
    data = block.get("data")
    return block.get("type") == "redacted_thinking" and isinstance(data, str) and bool(data)


def reasoning_fields(blocks: list[JSON]) -> JSON:
    """An answer's thinking blocks -> the message's ``reasoning_content`` and ``thinking_blocks``."""
    if not blocks:
        return {}
    texts = [b["thinking"] for b in blocks if b.get("type") == "thinking" and isinstance(b.get("thinking"), str)]
    out: JSON = {}
    if any(texts):
        out["reasoning_content"] = "\n\n".join(t for t in texts if t)
    out["thinking_blocks"] = blocks
    return out
