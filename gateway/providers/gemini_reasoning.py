"""Canonical reasoning settings -> Gemini ``generationConfig.thinkingConfig``.

Read: ``reasoning_effort`` (OpenAI's values), ``reasoning_budget`` (exact thinking tokens,
0 = off) and ``include_reasoning`` (show the thinking); :func:`thinking_config` builds the
``thinkingConfig`` object, or None when there is nothing to send.

Which control a model takes is read off the deployment's model name (``gemini-<major>[.<minor>]``
anywhere after a ``/``, so Vertex paths work too), unless the deployment's
``reasoning_style`` names one (``adaptive`` -> levels, ``budget`` -> budgets):

- Gemini 3 and later: ``thinkingLevel``. Efforts ``none``/``minimal``/``low`` -> ``LOW``,
  ``medium``/``high``/``xhigh`` -> ``HIGH`` (a lone ``reasoning_budget`` is read as its effort,
  :func:`gateway.canonical.budget_to_effort`). Gemini 3 cannot turn thinking off, so ``none``
  is ``LOW``: the lowest level every Gemini 3 model takes (3 Flash's ``MINIMAL`` is refused by
  3.1 Pro, see ``fixtures/gemini/error_400_invalid_argument_live_vercel.json``). Only one of
  level and budget is ever sent (Gemini refuses both together).
- Gemini 2.5: ``thinkingBudget`` = ``reasoning_budget``, else
  :func:`gateway.canonical.effort_to_budget` of the effort, put into the model's documented
  range: Pro 128..32768 (thinking cannot be off: ``none``/0 -> 128), Flash 1..24576 and
  Flash-Lite 512..24576 (0 = off, kept).
- Gemini 1.x and 2.0 do not think: the three keys are dropped.
- A name without a version (``gemini-flash-latest``, a tuned model): ``thinkingBudget``
  as asked, unclamped (2.5 and 3 both take a budget); a deployment whose model refuses it
  sets ``reasoning_style`` or lists the keys in ``drop_params``.

``includeThoughts``: ``include_reasoning`` true/false is sent as is; when it is absent and
reasoning is asked for (an effort other than ``none``, or a budget above 0), it is set true,
so the thinking the request pays for comes back as ``reasoning_content``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from gateway.canonical import JSON, REASONING_EFFORTS, budget_to_effort, effort_to_budget
from gateway.errors import InvalidRequest

Family = Literal["level", "budget", "none"]

_VERSION = re.compile(r"(?:^|/)gemini-(\d+)(?:\.(\d+))?")
_LOW_EFFORTS = frozenset({"none", "minimal", "low"})


@dataclass(frozen=True, slots=True)
class BudgetRange:
    """A Gemini 2.5 model's documented ``thinkingBudget`` range."""

    low: int
    high: int
    can_disable: bool

    def clamp(self, budget: int) -> int:
        if budget == 0 and self.can_disable:
            return 0
        return max(self.low, min(self.high, budget))


PRO_RANGE = BudgetRange(128, 32768, can_disable=False)
FLASH_RANGE = BudgetRange(1, 24576, can_disable=True)
FLASH_LITE_RANGE = BudgetRange(512, 24576, can_disable=True)


def gemini_version(model: str) -> tuple[int, int] | None:
    """``gemini-2.5-flash`` -> (2, 5), ``models/gemini-3-pro-preview`` -> (3, 0); None without one."""
    match = _VERSION.search(model)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def thinking_family(model: str, style: str = "auto") -> Family:
    """How ``model`` takes its thinking setting (see the module docstring)."""
    if style == "adaptive":
        return "level"
    if style == "budget":
        return "budget"
    version = gemini_version(model)
    if version is None:
        return "budget"
    if version[0] >= 3:
        return "level"
    return "budget" if version >= (2, 5) else "none"


def budget_range(model: str) -> BudgetRange | None:
    """The documented budget range of a Gemini 2.5 model; None for any other name."""
    version = gemini_version(model)
    if version is None or version[0] != 2 or version[1] < 5:
        return None
    name = model.rsplit("/", 1)[-1]
    if "flash-lite" in name:
        return FLASH_LITE_RANGE
    return FLASH_RANGE if "flash" in name else PRO_RANGE


def thinking_config(params: JSON, model: str, style: str = "auto") -> JSON | None:
    """The ``thinkingConfig`` for a canonical request's reasoning keys, None when none apply."""
    effort = _effort(params)
    budget = _budget(params)
    include = params.get("include_reasoning")
    if include is not None and not isinstance(include, bool):
        raise InvalidRequest("include_reasoning must be a boolean", param="include_reasoning", code="invalid_type")
    family = thinking_family(model, style)
    if family == "none" or (effort is None and budget is None and include is None):
        return None
    config: JSON = {}
    if effort is not None or budget is not None:
        if family == "level":
            config["thinkingLevel"] = _level(effort if effort is not None else budget_to_effort(budget or 0))
        else:
            asked = budget if budget is not None else effort_to_budget(effort or "medium")
            limits = budget_range(model)
            config["thinkingBudget"] = limits.clamp(asked) if limits is not None else asked
        wanted = budget if budget is not None else effort_to_budget(effort or "medium")
        if include is None and wanted > 0:
            include = True
    if include is not None:
        config["includeThoughts"] = include
    return config


def _level(effort: str) -> str:
    return "LOW" if effort in _LOW_EFFORTS else "HIGH"


def _effort(params: JSON) -> str | None:
    effort = params.get("reasoning_effort")
    if effort is None:
        return None
    if not isinstance(effort, str):
        raise InvalidRequest("reasoning_effort must be a string", param="reasoning_effort", code="invalid_type")
    if effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}; got {effort!r}",
            param="reasoning_effort",
            code="invalid_value",
        )
    return effort


def _budget(params: JSON) -> int | None:
    budget: Any = params.get("reasoning_budget")
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise InvalidRequest("reasoning_budget must be an integer", param="reasoning_budget", code="invalid_type")
    if budget < 0:
        raise InvalidRequest("reasoning_budget must be 0 or more", param="reasoning_budget", code="invalid_value")
    return budget
