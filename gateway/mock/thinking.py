"""Anthropic extended thinking in the mock: the request's ``thinking`` setting and the
rules the real Messages API enforces on thinking blocks sent back in the history.

Request setting (:func:`thinking_setting`):

- ``{"type": "enabled", "budget_tokens": n}``: ``n`` is required, an integer >= 1024 and
  (on generation) less than ``max_tokens``; ``{"type": "adaptive"}``: no budget;
  ``{"type": "disabled"}`` or absent: no thinking. Enabled thinking refuses a
  ``tool_choice`` that forces tool use (``any``/``tool``).

Model rules (:func:`gateway.mock.models.claude_thinking` picks them by model name), with
the real API's messages:

- adaptive-only models (``claude-opus-4-7`` and later, ``*adaptive*``) refuse
  ``type: enabled`` ("\"thinking.type.enabled\" is not supported for this model. ...") and
  any ``temperature`` ("`temperature` is deprecated for this model."); their thinking text
  is omitted (``""``, still signed) unless ``thinking.display`` is ``"summarized"``, and
  their usage has ``output_tokens_details.thinking_tokens``;
- budget-only models (4.5 and older, ``*budget*``) refuse
  ``type: adaptive`` ("adaptive thinking is not supported on this model");
- ``output_config.effort``: 4.6 models (and names without a version) take ``low``,
  ``medium``, ``high``, ``max`` (the recorded refusal of ``xhigh``), adaptive-only ones also
  ``xhigh``; budget-only models are not checked.

Sources: ``shared/fixtures/anthropic/error_400_invalid_request.json`` (effort), public
issue reports quoting the API for the other three messages (e.g. anomalyco/opencode#22863,
docker/docker-agent#3362, UKGovernmentBEIS/inspect_ai#3721; thinking display:
AAswordman/Operit#568).

History rules (:func:`check_history`), in this order:

1. every ``thinking`` block (any turn, thinking on or off) needs string ``thinking`` and
   ``signature`` fields;
2. with thinking on, when the last turn is a user turn with ``tool_result`` blocks and the
   assistant turn before it has ``tool_use``, that assistant turn must start with a
   ``thinking`` or ``redacted_thinking`` block;
3. with thinking on, every ``thinking`` block's signature must be one the mock issued
   (:func:`gateway.mock.reasoning.verify_thinking`). ``redacted_thinking`` is not verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.mock.content import as_dict
from gateway.mock.errors import BadRequest
from gateway.mock.models import claude_thinking
from gateway.mock.reasoning import verify_thinking

MIN_BUDGET = 1024
DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_THINKING = ("thinking", "redacted_thinking")


_EFFORTS_46 = ("high", "low", "max", "medium")
_EFFORTS_NEWEST = ("high", "low", "max", "medium", "xhigh")
ENABLED_REFUSED = (
    '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
    '"output_config.effort" to control thinking behavior.'
)
ADAPTIVE_REFUSED = "adaptive thinking is not supported on this model"
TEMPERATURE_REFUSED = "`temperature` is deprecated for this model."


@dataclass(frozen=True, slots=True)
class Thinking:
    """Thinking is on; ``budget`` is ``None`` for adaptive thinking; ``shown``: whether the
    thinking text is returned (``False``: omitted, the block's text is ``""``)."""

    budget: int | None
    shown: bool = True


def check_model_rules(body: dict[str, Any], model: str) -> None:
    """Refuse ``temperature`` and ``output_config.effort`` values ``model`` does not take."""
    rules = claude_thinking(model)
    if rules == "adaptive_only" and "temperature" in body:
        raise BadRequest(TEMPERATURE_REFUSED, "temperature")
    effort = as_dict(body.get("output_config")).get("effort")
    if effort is None or rules == "budget_only":
        return
    levels = _EFFORTS_NEWEST if rules == "adaptive_only" else _EFFORTS_46
    if effort not in levels:
        raise BadRequest(
            f"This model does not support effort level '{effort}'. Supported levels: {', '.join(levels)}.",
            "output_config.effort",
        )


def thinking_setting(body: dict[str, Any], max_tokens: int | None, model: str = "") -> Thinking | None:
    """The request's thinking setting (``max_tokens`` is ``None`` for token counting);
    ``model`` picks the model rules (see the module doc)."""
    raw = body.get("thinking")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("thinking: Input should be a valid dictionary", "thinking")
    kind, rules = raw.get("type"), claude_thinking(model)
    if kind == "disabled":
        return None
    if kind == "adaptive":
        if rules == "budget_only":
            raise BadRequest(ADAPTIVE_REFUSED, "thinking.type")
        shown = raw.get("display") == "summarized" or (rules != "adaptive_only" and raw.get("display") != "omitted")
        return Thinking(None, shown)
    if kind != "enabled":
        raise BadRequest(
            f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            "'disabled', 'enabled', 'adaptive'",
            "thinking.type",
        )
    if rules == "adaptive_only":
        raise BadRequest(ENABLED_REFUSED, "thinking.type")
    budget = raw.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise BadRequest("thinking.enabled.budget_tokens: Field required", "thinking.budget_tokens")
    if budget < MIN_BUDGET:
        raise BadRequest(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}",
            "thinking.budget_tokens",
        )
    if max_tokens is not None and budget >= max_tokens:
        raise BadRequest(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            f"{DOCS}#max-tokens-and-context-window-size",
            "max_tokens",
        )
    if as_dict(body.get("tool_choice")).get("type") in ("any", "tool") and max_tokens is not None:
        raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.", "tool_choice")
    return Thinking(budget)


def check_history(messages: list[Any], thinking: Thinking | None) -> None:
    """Refuse thinking blocks the real API would refuse (see the module doc)."""
    found = list(_thinking_blocks(messages))
    for i, j, block in found:
        for name in ("thinking", "signature"):
            if not isinstance(block.get(name), str):
                path = f"messages.{i}.content.{j}.thinking.{name}"
                raise BadRequest(f"{path}: Field required", path)
    if thinking is None:
        return
    _check_tool_loop(messages)
    for i, j, block in found:
        if not verify_thinking(block["thinking"], block["signature"]):
            raise BadRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block", f"messages.{i}")


def _thinking_blocks(messages: list[Any]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    for i, message in enumerate(messages):
        content = as_dict(message).get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            if as_dict(block).get("type") == "thinking":
                yield i, j, block


def _check_tool_loop(messages: list[Any]) -> None:
    if len(messages) < 2 or not _has(messages[-1], "tool_result", "user"):
        return
    index = len(messages) - 2
    if not _has(messages[index], "tool_use", "assistant"):
        return
    content = as_dict(messages[index]).get("content") or [None]
    first = as_dict(content[0]).get("type")
    if first not in _THINKING:
        path = f"messages.{index}.content.0.type"
        raise BadRequest(
            f"{path}: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, "
            "a final `assistant` message must start with a thinking block (preceeding the lastmost set of "
            "`tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. "
            f"To avoid this requirement, disable `thinking`. Please consult our documentation at {DOCS}",
            path,
        )


def _has(message: Any, block_type: str, role: str) -> bool:
    """Whether ``message`` is a ``role`` turn with a list content holding a ``block_type`` block."""
    message = as_dict(message)
    content = message.get("content")
    if message.get("role") != role or not isinstance(content, list):
        return False
    return any(as_dict(b).get("type") == block_type for b in content)
