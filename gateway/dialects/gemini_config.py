"""Gemini ``generationConfig`` -> canonical parameters, and the deployment policy
applied to a Gemini body that is passed through (:func:`apply_native`).

| generationConfig | canonical |
|---|---|
| temperature, topP, topK | temperature, top_p, top_k |
| maxOutputTokens | max_tokens |
| stopSequences | stop |
| presencePenalty, frequencyPenalty, seed | the same, snake_case |
| candidateCount | n (1 dropped; above 1 refused on a stream: streams carry one candidate) |
| responseMimeType application/json | response_format json_object, json_schema with a schema |
| responseSchema (converted), responseJsonSchema | response_format.json_schema.schema |
| responseLogprobs, logprobs | logprobs, top_logprobs |
| thinkingConfig | reasoning_effort, reasoning_budget, include_reasoning (below); itself as ``thinking_config`` |
| responseModalities [TEXT], mediaResolution, enableEnhancedCivicAnswers | dropped |
| other responseModalities, speechConfig, imageConfig, routingConfig, ... | refused |

thinkingConfig (the contract of issue 12, gateway/canonical.py):

- ``thinkingBudget`` N >= 0 -> ``reasoning_budget`` N and ``reasoning_effort``
  ``budget_to_effort(N)`` (0 -> ``none``, below 1024 ``minimal``, then the largest
  effort of EFFORT_BUDGETS that fits); -1 (dynamic: the model decides) -> no budget,
  ``reasoning_effort`` ``medium``.
- ``thinkingLevel`` MINIMAL / LOW / MEDIUM / HIGH / XHIGH -> ``reasoning_effort`` by name
  (THINKING_LEVEL_UNSPECIFIED: nothing set).
- ``includeThoughts`` -> ``include_reasoning``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.canonical import JSON, REASONING_TRANSLATED, budget_to_effort
from gateway.config.settings import Params
from gateway.dialects.checks import bad
from gateway.dialects.gemini_fields import array, at, boolean, camel, fields, integer, number, obj, string
from gateway.dialects.gemini_tools import json_schema

Check = Callable[[Any, str], Any]

# generationConfig name -> (canonical name, check)
_PLAIN: dict[str, tuple[str, Check]] = {
    "temperature": ("temperature", lambda v, p: number(v, p, 0, 2)),
    "topP": ("top_p", lambda v, p: number(v, p, 0, 1)),
    "topK": ("top_k", lambda v, p: integer(v, p, 1)),
    "maxOutputTokens": ("max_tokens", lambda v, p: integer(v, p, 1)),
    "presencePenalty": ("presence_penalty", lambda v, p: number(v, p, -2, 2)),
    "frequencyPenalty": ("frequency_penalty", lambda v, p: number(v, p, -2, 2)),
    "seed": ("seed", lambda v, p: integer(v, p, -(2**63), 2**63 - 1)),
    "logprobs": ("top_logprobs", lambda v, p: integer(v, p, 0, 20)),
}
_DROPPED = frozenset({"mediaResolution", "enableEnhancedCivicAnswers"})
_REFUSED = frozenset(
    {
        "speechConfig",
        "imageConfig",
        "audioTimestamp",
        "routingConfig",
        "modelSelectionConfig",
        "modelArmorConfig",
        "audioTranscriptionConfig",
        "enableAffectiveDialog",
        "responseVoice",
    }
)
_OWN = frozenset(
    {
        "candidateCount",
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseLogprobs",
        "responseModalities",
        "thinkingConfig",
    }
)
_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high", "XHIGH": "xhigh"}
DYNAMIC_BUDGET = -1
"""``thinkingBudget: -1``: the model sizes its thinking itself."""
DYNAMIC_EFFORT = "medium"
"""The ``reasoning_effort`` of a dynamic budget (no ``reasoning_budget`` is set)."""

# canonical name -> the generationConfig field it stands for in a passed-through body
NATIVE_NAMES: dict[str, str] = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "stop": "stopSequences",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
    "n": "candidateCount",
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
    "reasoning_effort": "thinkingConfig",
}


def parse_generation_config(value: Any, *, stream: bool, param: str = "generationConfig") -> JSON:
    config = fields(value, param, {*_PLAIN, *_DROPPED, *_REFUSED, *_OWN})
    out: JSON = {}
    for key, item in config.items():
        where = at(param, key)
        if key in _PLAIN:
            name, check = _PLAIN[key]
            out[name] = check(item, where)
        elif key in _REFUSED:
            raise bad(f"{where} cannot be sent to another provider", where, "unsupported_value")
    count = integer(config.get("candidateCount", 1), at(param, "candidateCount"), 1, 8)
    if count > 1:
        if stream:
            raise bad("a stream carries one candidate: candidateCount must be 1", at(param, "candidateCount"))
        out["n"] = count
    if "stopSequences" in config:
        where = at(param, "stopSequences")
        out["stop"] = [string(s, at(where, k)) for k, s in enumerate(array(config["stopSequences"], where))]
    if config.get("responseLogprobs") is not None and boolean(
        config["responseLogprobs"], at(param, "responseLogprobs")
    ):
        out["logprobs"] = True
    elif "top_logprobs" in out:
        raise bad("logprobs needs responseLogprobs: true", at(param, "logprobs"))
    _modalities(config.get("responseModalities"), at(param, "responseModalities"))
    fmt = _response_format(config, param)
    if fmt is not None:
        out["response_format"] = fmt
    if "thinkingConfig" in config:
        out.update(_thinking(config["thinkingConfig"], at(param, "thinkingConfig")))
    return out


def _modalities(value: Any, param: str) -> None:
    for k, item in enumerate(array(value, param) if value is not None else []):
        if string(item, at(param, k)).upper() != "TEXT":
            raise bad(f"{param}: only TEXT output can come from another provider", at(param, k), "unsupported_value")


def _response_format(config: JSON, param: str) -> JSON | None:
    mime = string(config.get("responseMimeType", "text/plain"), at(param, "responseMimeType")).lower()
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise bad("set responseSchema or responseJsonSchema, not both", at(param, "responseJsonSchema"))
    if "responseSchema" in config:
        schema: JSON | None = json_schema(config["responseSchema"], at(param, "responseSchema"))
    elif "responseJsonSchema" in config:
        schema = obj(config["responseJsonSchema"], at(param, "responseJsonSchema"))
    else:
        schema = None
    if mime == "application/json":
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    if mime != "text/plain":
        where = at(param, "responseMimeType")
        raise bad(f"{where} {mime!r} cannot be sent to another provider", where, "unsupported_value")
    if schema is not None:
        raise bad("a response schema needs responseMimeType application/json", at(param, "responseMimeType"))
    return None


def _thinking(value: Any, param: str) -> JSON:
    config = fields(value, param, ("includeThoughts", "thinkingBudget", "thinkingLevel"))
    out: JSON = {"thinking_config": config}
    if "includeThoughts" in config:
        out["include_reasoning"] = boolean(config["includeThoughts"], at(param, "includeThoughts"))
    if "thinkingBudget" in config and "thinkingLevel" in config:
        raise bad("set thinkingBudget or thinkingLevel, not both", at(param, "thinkingLevel"))
    if "thinkingBudget" in config:
        budget = integer(config["thinkingBudget"], at(param, "thinkingBudget"), DYNAMIC_BUDGET)
        if budget == DYNAMIC_BUDGET:
            out["reasoning_effort"] = DYNAMIC_EFFORT
        else:
            out["reasoning_budget"] = budget
            out["reasoning_effort"] = budget_to_effort(budget)
    elif "thinkingLevel" in config:
        level = string(config["thinkingLevel"], at(param, "thinkingLevel")).upper()
        if level not in _LEVELS and level != "THINKING_LEVEL_UNSPECIFIED":
            where = at(param, "thinkingLevel")
            raise bad(f"{where} must be one of {sorted(_LEVELS)}, got {level!r}", where, "unsupported_value")
        if level in _LEVELS:
            out["reasoning_effort"] = _LEVELS[level]
    if "reasoning_effort" in out:
        out[REASONING_TRANSLATED] = True
    return out


# --- pass-through ---------------------------------------------------------------


def apply_native(body: JSON, params: Params, drop: frozenset[str]) -> JSON:
    """A new body with the deployment's defaults, ranges, max-tokens cap and dropped
    parameters applied to ``generationConfig``, as the server's ``apply_params``
    does for canonical names (see :data:`NATIVE_NAMES`); a drop name may also be a
    generationConfig field itself. The rest of the body is kept as sent, and so is
    the client's spelling of each field."""
    key = next((k for k in body if camel(k) == "generationConfig"), "generationConfig")
    original = body.get(key)
    # null is "unset" in proto JSON: leaving nulls out keeps one spelling per field
    config: JSON = {k: v for k, v in original.items() if v is not None} if isinstance(original, dict) else {}
    _fill_defaults(config, params.defaults)
    for name, (low, high) in params.ranges.items():
        for spelled in _spellings(config, NATIVE_NAMES.get(name)):
            value = config[spelled]
            if isinstance(value, int | float) and not isinstance(value, bool):
                config[spelled] = min(max(value, low), high)
    if params.max_tokens_cap is not None:
        _cap(config, params.max_tokens_cap)
    for name in drop:
        for spelled in [*_spellings(config, NATIVE_NAMES.get(name)), *_spellings(config, camel(name))]:
            config.pop(spelled, None)
    out = dict(body)
    if config or isinstance(original, dict):
        out[key] = config
    return out


def _fill_defaults(config: JSON, defaults: JSON) -> None:
    for name, value in defaults.items():
        field = NATIVE_NAMES.get(name)
        if field is not None and field != "thinkingConfig" and not _spellings(config, field):
            config[field] = [value] if field == "stopSequences" and isinstance(value, str) else value


def _cap(config: JSON, cap: int) -> None:
    spelled_max = _spellings(config, "maxOutputTokens")
    for spelled in spelled_max:
        if isinstance(config[spelled], int) and config[spelled] > cap:
            config[spelled] = cap
    if not spelled_max:
        config["maxOutputTokens"] = cap


def _spellings(config: JSON, field: str | None) -> list[str]:
    """The keys of ``config`` that spell ``field`` (camelCase or snake_case)."""
    return [k for k in config if camel(k) == field] if field is not None else []
