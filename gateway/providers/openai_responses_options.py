"""The option objects of a Responses body made from a canonical request: ``text``
(``response_format`` and ``verbosity``) and ``reasoning``.

- ``response_format``: ``json_schema`` -> ``text.format {type: json_schema, name,
  schema, strict, description}``, ``json_object`` -> ``text.format {type:
  json_object}``, ``text`` -> nothing; ``verbosity`` -> ``text.verbosity``.
- ``reasoning_effort`` -> ``reasoning.effort`` (as it is: the API judges the value);
  ``include_reasoning: true`` (the client wants the reasoning shown) ->
  ``reasoning.summary: "auto"``, without which the API returns no reasoning text
  (only its encrypted form); ``reasoning_budget`` has no Responses form and is
  dropped (the effort a dialect sets beside it is what counts). A deployment whose
  model or organisation takes no summaries drops ``include_reasoning`` with
  ``drop_params``.
"""

from __future__ import annotations

from typing import Any

from gateway.canonical import JSON, REASONING_TRANSLATED
from gateway.errors import InvalidRequest
from gateway.providers.openai_compat import reasoning_model


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def reasoning_config(req: JSON, model: str = "") -> JSON:
    """The ``reasoning`` object of the Responses body (empty: none)."""
    reasoning: JSON = {}
    effort = req.get("reasoning_effort")
    if req.get(REASONING_TRANSLATED) and not reasoning_model(model):
        effort = None  # another dialect's setting, translated: only for a model that reasons
    if effort is not None:
        if not isinstance(effort, str):
            raise _bad("reasoning_effort must be a string", "reasoning_effort", "invalid_type")
        reasoning["effort"] = effort
    shown = req.get("include_reasoning")
    if shown is not None and not isinstance(shown, bool):
        raise _bad("include_reasoning must be a boolean", "include_reasoning", "invalid_type")
    if shown:
        reasoning["summary"] = "auto"
    return reasoning


def text_config(req: JSON) -> JSON:
    """The ``text`` object of the Responses body (empty: none)."""
    text: JSON = {}
    fmt = req.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else fmt
    if kind == "json_object":
        text["format"] = {"type": "json_object"}
    elif kind == "json_schema":
        text["format"] = _json_schema_format(fmt.get("json_schema") if isinstance(fmt, dict) else None)
    elif kind not in (None, "text"):
        raise _bad("response_format.type must be text, json_object or json_schema", "response_format.type")
    verbosity = req.get("verbosity")
    if verbosity is not None:
        text["verbosity"] = verbosity
    return text


def _json_schema_format(spec: Any) -> JSON:
    param = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise _bad(f"{param} must be an object", param, "missing_required_parameter")
    name, schema = spec.get("name"), spec.get("schema")
    if not isinstance(name, str) or not name:
        raise _bad(f"{param}.name is required", f"{param}.name", "missing_required_parameter")
    if not isinstance(schema, dict):
        raise _bad(f"{param}.schema must be an object", f"{param}.schema", "missing_required_parameter")
    out: JSON = {"type": "json_schema", "name": name, "schema": schema}
    if spec.get("strict") is not None:
        out["strict"] = spec["strict"]
    if isinstance(spec.get("description"), str):
        out["description"] = spec["description"]
    return out
