"""Gemini thinking in the mock: the ``generationConfig.thinkingConfig`` rules of each model
generation, thought parts, thought signatures, and the check of replayed signatures.

The generation comes from the model name (:func:`gateway.mock.models.gemini_thinking`);
other models do not think and ignore ``thinkingConfig``. Both spellings the API accepts
are read (``thinkingConfig``/``thinking_config``, ``thinkingBudget``/``thinking_budget``,
``thinkingLevel``/``thinking_level``, ``includeThoughts``/``include_thoughts``,
``thoughtSignature``/``thought_signature``). Refusals, with the real API's messages:

- Gemini 2.5: ``thinkingLevel`` -> "Thinking level is not supported for this model."
  (RooCodeInc/Roo-Code#10700; Google's thinking guide: a level on a model before Gemini 3
  is an error); ``thinkingBudget`` outside the documented range (Pro 128..32768, Flash-Lite
  0 or 512..24576, other 2.5 models 0..24576; -1 = dynamic everywhere) -> "The thinking
  budget (N) is invalid." (RooCodeInc/Roo-Code#4399; the real text for 0 on Pro may differ);
- Gemini 3: ``thinkingBudget`` and ``thinkingLevel`` together -> "You can only set only one
  of thinking budget and thinking level."; ``MINIMAL`` on a Pro model -> "Thinking level
  MINIMAL is not supported for this model. Please retry with other thinking level." (both
  recorded: ``shared/fixtures/gemini/error_400_invalid_argument_live_vercel.json``);
- Gemini 3: in the current turn (the contents after the last user content with a text
  part), the first ``functionCall`` part of each model content must carry a
  ``thoughtSignature`` -> "Function call is missing a thought_signature in functionCall
  parts. ..." (the message quoted in many public reports, e.g. google-gemini/gemini-cli#26682;
  ``position`` is the 1-based index of the model content in ``contents``, inferred from
  reports where ``[user, model, user]`` gives ``position 2``). Only presence is checked.
- a level that is not ``MINIMAL``/``LOW``/``MEDIUM``/``HIGH`` (any case) or a budget that
  is not an integer -> Google's "Invalid value at ..." parse error (format, not a recording).

Answers: thinking is on by default (dynamic) and off with ``thinkingBudget: 0`` (Gemini 2.5;
Gemini 3 cannot turn it off). ``usageMetadata.thoughtsTokenCount`` = the ``thinking_tokens``
knob (at most a positive budget), not part of ``candidatesTokenCount``, part of
``totalTokenCount``; ``includeThoughts: true`` adds a ``{"text", "thought": true}`` part
first; with thinking on (always on Gemini 3) a function call part carries
``thoughtSignature`` (:func:`gateway.mock.reasoning.sign_thought`), and on Gemini 3 so does
the first text part (as the recordings show: ``cross_provider/reasoning/cross_the_street/gemini.json``
signs its text on Gemini 3, the Gemini 2.5 ones in ``gemini/`` sign only function calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.mock.content import as_dict
from gateway.mock.errors import BadRequest
from gateway.mock.models import gemini_thinking
from gateway.mock.reasoning import sign_thought, thinking_budget, thinking_words

LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
DYNAMIC = -1
LEVEL_REFUSED = "Thinking level is not supported for this model."
BOTH_REFUSED = "You can only set only one of thinking budget and thinking level."
MINIMAL_REFUSED = "Thinking level MINIMAL is not supported for this model. Please retry with other thinking level."
SIGNATURE_MISSING = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
    "correctly, and missing thought_signature may lead to degraded model performance. Additional data, function "
    "call `default_api:{name}` , position {position}. Please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
_FIELD = "generation_config.thinking_config"
_LEVEL_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel"


@dataclass(frozen=True, slots=True)
class ThoughtPlan:
    """How an answer thinks: ``tokens`` (``thoughtsTokenCount``, 0 = none), ``text`` (the
    thought part, ``None`` when not asked for) and which answer parts are signed."""

    tokens: int = 0
    text: str | None = None
    sign_calls: bool = False
    sign_text: bool = False


def _pick(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj[camel] if camel in obj else obj.get(snake)


def _config(body: dict[str, Any]) -> dict[str, Any]:
    generation = as_dict(_pick(body, "generationConfig", "generation_config"))
    return as_dict(_pick(generation, "thinkingConfig", "thinking_config"))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def check_thinking(body: dict[str, Any], model: str) -> None:
    """Refuse what ``model``'s generation refuses (see the module doc)."""
    family = gemini_thinking(model)
    if family is None:
        return
    config = _config(body)
    level = _pick(config, "thinkingLevel", "thinking_level")
    budget = _pick(config, "thinkingBudget", "thinking_budget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)):
        raise BadRequest(f"Invalid value at '{_FIELD}.thinking_budget' (TYPE_INT32), {_json(budget)}")
    if level is not None:
        if family == "gemini25":
            raise BadRequest(LEVEL_REFUSED)
        if budget is not None:
            raise BadRequest(BOTH_REFUSED)
        name = level.upper() if isinstance(level, str) else None
        if name not in LEVELS:
            raise BadRequest(f"Invalid value at '{_FIELD}.thinking_level' ({_LEVEL_TYPE}), {_json(level)}")
        if name == "MINIMAL" and "pro" in model.lower():
            raise BadRequest(MINIMAL_REFUSED)
    if family == "gemini25" and budget is not None and not _budget_ok(model.lower(), budget):
        raise BadRequest(f"The thinking budget ({budget}) is invalid.")
    if family == "gemini3":
        contents = body.get("contents")
        check_signatures(contents if isinstance(contents, list) else [])


def _budget_ok(name: str, budget: int) -> bool:
    if budget == DYNAMIC:
        return True
    if "pro" in name:
        return 128 <= budget <= 32768
    low = 512 if "lite" in name else 1
    return budget == 0 or low <= budget <= 24576


def _parts(content: Any) -> list[Any]:
    parts = as_dict(content).get("parts")
    return parts if isinstance(parts, list) else []


def _call_of(part: Any) -> dict[str, Any] | None:
    part = as_dict(part)
    call = _pick(part, "functionCall", "function_call")
    return as_dict(call) if call is not None else None


def current_turn_start(contents: list[Any]) -> int:
    """The index after the last user content that has a text part (0 when there is none)."""
    for index in range(len(contents) - 1, -1, -1):
        content = as_dict(contents[index])
        if content.get("role", "user") == "user" and any("text" in as_dict(p) for p in _parts(content)):
            return index + 1
    return 0


def check_signatures(contents: list[Any]) -> None:
    """Gemini 3: the first function call of each model content in the current turn is signed."""
    for index in range(current_turn_start(contents), len(contents)):
        content = as_dict(contents[index])
        if content.get("role") != "model":
            continue
        first = next((as_dict(p) for p in _parts(content) if _call_of(p) is not None), None)
        if first is None:
            continue
        signature = _pick(first, "thoughtSignature", "thought_signature")
        if not isinstance(signature, str) or not signature:
            name = str((_call_of(first) or {}).get("name"))
            raise BadRequest(SIGNATURE_MISSING.format(name=name, position=index + 1))


def thought_plan(body: dict[str, Any], model: str, wanted: int, last_user: str) -> ThoughtPlan:
    """How the answer to ``body`` thinks (call :func:`check_thinking` first)."""
    family = gemini_thinking(model)
    if family is None:
        return ThoughtPlan()
    config = _config(body)
    budget = _pick(config, "thinkingBudget", "thinking_budget")
    newest = family == "gemini3"
    if budget == 0:
        return ThoughtPlan(sign_calls=newest, sign_text=newest)
    tokens = thinking_budget(wanted, budget if isinstance(budget, int) and budget > 0 else None, None)
    include = _pick(config, "includeThoughts", "include_thoughts") is True
    text = " ".join(thinking_words(last_user, tokens)) if include else None
    return ThoughtPlan(tokens, text, True, newest)


def sign_parts(parts: list[dict[str, Any]], plan: ThoughtPlan) -> list[dict[str, Any]]:
    """``parts`` with a ``thoughtSignature`` on the first one when ``plan`` signs its kind."""
    if not parts:
        return parts
    first = parts[0]
    call = _call_of(first)
    if not (plan.sign_text if call is None else plan.sign_calls):
        return parts
    data = str(first.get("text", "")) if call is None else f"{call.get('name')}\x00{_json(call.get('args'))}"
    return [{**first, "thoughtSignature": sign_thought(data)}, *parts[1:]]


def thought_parts(plan: ThoughtPlan) -> list[dict[str, Any]]:
    """The thought part (``[]`` when thoughts are not asked for)."""
    return [] if plan.text is None else [{"text": plan.text, "thought": True}]
