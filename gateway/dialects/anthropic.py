"""The Anthropic Messages ingress dialect (``POST /v1/messages``,
``/v1/messages/count_tokens``, ``GET /v1/models``), for the anthropic SDKs and
Claude Code.

Requests are validated and parsed into the canonical chat request (messages and
content blocks: :mod:`gateway.dialects.anthropic_content`); answers, errors and
the model list are rendered by :mod:`gateway.dialects.anthropic_render`, streams
by :class:`gateway.dialects.anthropic_stream.MessagesStream`. Every name the
server uses is importable from here.

Top-level fields:

- ``model`` kept as sent; ``stream`` (bool); ``max_tokens`` (required for
  messages, an integer >= 1) -> ``max_tokens``.
- ``temperature`` (0..1), ``top_p`` (0..1), ``top_k`` (>= 0) kept;
  ``stop_sequences`` -> ``stop``; ``metadata.user_id`` -> ``user``.
- ``thinking`` and ``output_config.effort`` -> ``reasoning_effort``,
  ``reasoning_budget`` and ``include_reasoning``
  (:mod:`gateway.dialects.anthropic_reasoning`). The original ``thinking`` is kept
  under canonical ``thinking`` (an extension key: gateway/canonical.py ``EXTENSIONS``),
  for the same-format path.
- ``cache_control`` (top level) -> canonical ``cache_control``; on tools -> the
  function tool's ``cache_control``; on content blocks: see
  :mod:`gateway.dialects.anthropic_content`.
- ``output_config.format`` (and the older beta ``output_format``) json_schema ->
  ``response_format`` json_schema named ``output``.
- ``tools``: custom tools -> function tools (``strict`` and ``cache_control`` kept;
  ``defer_loading``, ``input_examples``, ``eager_input_streaming`` and
  ``allowed_callers`` dropped). Server tools (``web_search_*``, ``bash_*``,
  ``text_editor_*``, ``code_execution_*``, ...) run inside Anthropic's API and
  are refused, naming the tool. ``tool_choice`` auto / any / none / tool ->
  auto / required / none / function; ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls: false``. Without tools, auto and none are dropped and
  any / tool are refused.
- Dropped (no canonical equivalent): :data:`DROPPED` and any field not named here.

Same-format pass-through (:func:`apply_native`) keeps the client's body as is
apart from the model and the deployment's policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects.anthropic_content import conversation, required_str, system_messages
from gateway.dialects.anthropic_reasoning import cache_control, reasoning_fields, with_cache_control
from gateway.dialects.anthropic_render import (
    count_tokens_body,
    model_card,
    model_list,
    render_error,
    render_message,
)
from gateway.dialects.anthropic_stream import MessagesStream
from gateway.dialects.checks import bad, expect, required
from gateway.errors import Untranslatable

__all__ = [
    "DROPPED",
    "MessagesStream",
    "apply_native",
    "count_tokens_body",
    "model_card",
    "model_list",
    "parse_count_tokens",
    "parse_messages",
    "render_error",
    "render_message",
]

DROPPED = frozenset(
    {
        "container",
        "context_management",
        "diagnostics",
        "inference_geo",
        "mcp_servers",
        "service_tier",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
"""Messages fields with no canonical equivalent, dropped by :func:`parse_messages`."""

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_CHOICES: Mapping[str, str] = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})
_CUSTOM_TOOL_TYPES = (None, "custom")

WIRE_NAMES: Mapping[str, str] = MappingProxyType({"stop": "stop_sequences", "max_completion_tokens": "max_tokens"})
"""Canonical parameter names that Anthropic spells differently (others are the same)."""
NATIVE_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "system",
        "thinking",
        "output_config",
        "tool_choice",
        "cache_control",
        *DROPPED,
    }
)
"""Messages fields a deployment's ``params.defaults`` may add to a pass-through body."""
_NATIVE_KEEP = frozenset({"model", "messages", "max_tokens"})


def parse_messages(body: JSON) -> JSON:
    """A ``POST /v1/messages`` body -> the canonical chat request (InvalidRequest naming the bad field)."""
    return _parse(body, max_tokens_required=True)


def parse_count_tokens(body: JSON) -> JSON:
    """A ``POST /v1/messages/count_tokens`` body -> the canonical chat request (``max_tokens`` optional)."""
    return _parse(body, max_tokens_required=False)


def _parse(body: Any, *, max_tokens_required: bool) -> JSON:
    expect(body, dict, "body", "a JSON object")
    model = body.get("model")
    if model is None:
        raise bad("model is required", "model", "missing_required_parameter")
    expect(model, str, "model", "a string")
    if not model:
        raise bad("model must not be empty", "model")
    tools = _tool_fields(body)  # first: a server tool explains the server-tool blocks in messages
    req: JSON = {"model": model, "messages": system_messages(body.get("system")) + conversation(body.get("messages"))}
    req["stream"] = _flag(body, "stream")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and max_tokens_required:
        raise bad("max_tokens is required", "max_tokens", "missing_required_parameter")
    if max_tokens is not None:
        req["max_tokens"] = _number(body, "max_tokens", 1, None, integer=True)
    req.update(_sampling(body))
    req.update(_reasoning(body))
    req.update(tools)
    return req


def _flag(body: JSON, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    expect(value, bool, name, "a boolean")
    return bool(value)


def _number(body: JSON, name: str, low: float, high: float | None, *, integer: bool = False) -> Any:
    value = body[name]
    expect(value, int if integer else (int, float), name, "an integer" if integer else "a number")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise bad(f"{name} must be {bounds}, got {value}", name)
    return value


def _sampling(body: JSON) -> JSON:
    out: JSON = {}
    for name, low, high, integer in (("temperature", 0, 1, False), ("top_p", 0, 1, False), ("top_k", 0, None, True)):
        if body.get(name) is not None:
            out[name] = _number(body, name, low, high, integer=integer)
    stops = body.get("stop_sequences")
    if stops is not None:
        expect(stops, list, "stop_sequences", "an array of strings")
        for i, stop in enumerate(stops):
            expect(stop, str, f"stop_sequences.{i}", "a string")
        if stops:
            out["stop"] = list(stops)
    metadata = body.get("metadata")
    if metadata is not None:
        expect(metadata, dict, "metadata", "an object")
        user = metadata.get("user_id")
        if user is not None:
            expect(user, str, "metadata.user_id", "a string")
            if user:
                out["user"] = user
    return out


def _reasoning(body: JSON) -> JSON:
    out: JSON = {}
    thinking = body.get("thinking")
    effort = None
    config = body.get("output_config")
    if config is not None:
        expect(config, dict, "output_config", "an object")
        effort = config.get("effort")
        if config.get("format") is not None:
            out["response_format"] = _response_format(config["format"], "output_config.format")
    if body.get("output_format") is not None and "response_format" not in out:
        out["response_format"] = _response_format(body["output_format"], "output_format")
    out.update(reasoning_fields(thinking, effort))
    if thinking is not None:
        out["thinking"] = thinking
    marker = cache_control(body, "")
    if marker is not None:
        out["cache_control"] = marker
    return out


def _response_format(fmt: Any, param: str) -> JSON:
    expect(fmt, dict, param, "an object")
    if required_str(fmt, "type", param) != "json_schema":
        raise bad(f"{param}.type must be 'json_schema'", f"{param}.type", "unsupported_value")
    schema = required(fmt, "schema", param)
    expect(schema, dict, f"{param}.schema", "a JSON schema object")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _tool_fields(body: JSON) -> JSON:
    tools = body.get("tools")
    out: JSON = {}
    names: list[str] = []
    if tools is not None:
        expect(tools, list, "tools", "an array")
        out["tools"] = [_tool(tool, f"tools.{i}", names) for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is None:
        return out if names else {}
    expect(choice, dict, "tool_choice", "an object")
    t = required_str(choice, "type", "tool_choice")
    if t == "tool":
        name = required_str(choice, "name", "tool_choice")
        if name not in names:
            raise bad(f"tool_choice names {name!r}, which is not in tools", "tool_choice.name")
        mapped: Any = {"type": "function", "function": {"name": name}}
    elif t in _TOOL_CHOICES:
        if t == "any" and not names:
            raise bad("tool_choice 'any' needs tools", "tool_choice.type")
        mapped = _TOOL_CHOICES[t]
    else:
        raise bad("tool_choice.type must be auto, any, tool or none", "tool_choice.type", "unsupported_value")
    serial = choice.get("disable_parallel_tool_use")
    if serial is not None:
        expect(serial, bool, "tool_choice.disable_parallel_tool_use", "a boolean")
    if not names:
        return {}
    out["tool_choice"] = mapped
    if serial and t != "none":
        out["parallel_tool_calls"] = False
    return out


def _tool(tool: Any, param: str, names: list[str]) -> JSON:
    expect(tool, dict, param, "an object")
    t = tool.get("type")
    if t not in _CUSTOM_TOOL_TYPES:
        raise Untranslatable(
            f"{param} is the server tool {t!r} (name {tool.get('name')!r}): server tools run inside "
            "Anthropic's API and cannot be translated; only custom tools with an input_schema can",
            param=f"{param}.type",
        )
    name = required_str(tool, "name", param)
    if not TOOL_NAME.fullmatch(name):
        raise bad(f"{param}.name must match {TOOL_NAME.pattern}", f"{param}.name")
    if name in names:
        raise bad(f"tool names must be unique: {name!r} is given twice", f"{param}.name")
    names.append(name)
    schema = required(tool, "input_schema", param)
    expect(schema, dict, f"{param}.input_schema", "a JSON schema object")
    fn: JSON = {"name": name, "parameters": schema}
    description = tool.get("description")
    if description is not None:
        expect(description, str, f"{param}.description", "a string")
        if description:
            fn["description"] = description
    strict = tool.get("strict")
    if strict is not None:
        expect(strict, bool, f"{param}.strict", "a boolean")
        fn["strict"] = strict
    return with_cache_control({"type": "function", "function": fn}, tool, param)


def apply_native(body: JSON, model: str, params: Params, drop: frozenset[str]) -> JSON:
    """The client's Messages body as one Anthropic deployment gets it (``body`` is not modified):
    ``model`` replaced; ``params`` applied like ``apply_params`` does to canonical requests
    (defaults for missing fields, ranges clamped, ``max_tokens_cap``), with canonical names
    mapped (:data:`WIRE_NAMES`); then ``drop`` (canonical names, mapped the same way) removed,
    except ``model``, ``messages`` and ``max_tokens``. Defaults only add Messages fields
    (:data:`NATIVE_FIELDS`); a missing ``max_tokens`` is not added (count_tokens has none).
    Everything else, thinking blocks, signatures and ``cache_control`` included, is untouched."""
    out = {**body, "model": model}
    for name, value in params.defaults.items():
        wire = WIRE_NAMES.get(name, name)
        if wire in NATIVE_FIELDS and wire not in out:
            out[wire] = [value] if wire == "stop_sequences" and isinstance(value, str) else value
    for name, (low, high) in params.ranges.items():
        wire = WIRE_NAMES.get(name, name)
        value = out.get(wire)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            clamped = min(max(value, low), high)
            out[wire] = int(clamped) if isinstance(value, int) and float(clamped).is_integer() else clamped
    cap = params.max_tokens_cap
    current = out.get("max_tokens")
    if cap is not None and isinstance(current, int) and current > cap:
        out["max_tokens"] = cap
    for name in drop:
        wire = WIRE_NAMES.get(name, name)
        if wire not in _NATIVE_KEEP:
            out.pop(wire, None)
    return out
