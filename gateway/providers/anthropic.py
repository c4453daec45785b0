"""Anthropic Messages API (``POST {base_url}/messages``): the translated path (a
Messages client to an Anthropic deployment goes through :mod:`anthropic_native`).

Request, canonical -> Anthropic:

- Messages, parts and history (system hoisting, turn merging, tool results,
  thinking blocks sent back): :mod:`gateway.providers.anthropic_request`.
- ``max_tokens`` is required: ``max_completion_tokens``, else ``max_tokens``,
  else 4096. ``temperature`` is clamped to Anthropic's 0..1; ``top_p`` and
  ``top_k`` pass through; ``stop`` -> ``stop_sequences``; ``user`` (or
  ``safety_identifier``) -> ``metadata.user_id``; ``n`` > 1 is refused.
- ``reasoning_effort`` / ``reasoning_budget`` / ``include_reasoning`` ->
  ``thinking`` (adaptive or budget, per deployment), which may raise
  ``max_tokens`` and drop sampling parameters and a forced tool choice:
  :mod:`gateway.providers.anthropic_reasoning`.
- ``cache_control`` on parts, tools, messages and the request -> Anthropic
  breakpoints (at most 4; automatic ones per deployment):
  :mod:`gateway.providers.anthropic_caching`.
- Tools -> ``{name, description, input_schema}``; OpenAI's ``strict`` flag is
  dropped (older Claude models reject it). ``tool_choice`` auto / required /
  none / {function} -> ``{type: auto | any | none | tool}``;
  ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use``.
  ``tool_choice`` is omitted when there are no tools (Anthropic refuses it).
- ``response_format``: ``json_schema`` -> ``output_config.format``
  ``{"type": "json_schema", "schema"}`` (structured outputs, generally
  available without a beta header; it replaced the beta ``output_format``).
  ``json_object`` carries no schema, which that field needs, so it is emulated
  with a system instruction.
- Dropped silently, no Anthropic equivalent: ``seed``, ``logit_bias``,
  ``logprobs``, ``top_logprobs``, ``frequency_penalty``, ``presence_penalty``,
  ``verbosity``, ``service_tier``, ``store``, ``metadata`` (OpenAI's
  stored-completion tags), ``modalities``, ``audio``, ``prediction``,
  ``prompt_cache_key``, ``web_search_options``, ``stream_options``,
  ``functions`` / ``function_call``, message ``name`` and an assistant
  message's bare ``reasoning_content``.
- ``Target.drop_params`` names are removed from the canonical request before
  translation *and* from the wire body after it (so both ``stop`` and
  ``stop_sequences`` work), except ``model``, ``messages`` and ``max_tokens``.

Answer: text blocks joined into ``content``, ``tool_use`` -> ``tool_calls``,
``thinking`` / ``redacted_thinking`` -> ``reasoning_content`` and
``thinking_blocks``; server tool blocks are skipped. Stop reasons, usage,
error envelopes and the stream decoder live in
:mod:`gateway.providers.anthropic_stream`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from gateway.canonical import JSON, WIRE_ANTHROPIC, make_completion
from gateway.errors import InvalidRequest, UpstreamBadResponse, UpstreamError
from gateway.providers.anthropic_caching import cache_control, mark, settle_breakpoints
from gateway.providers.anthropic_native import DEFAULT_API_VERSION, count_request, native_request
from gateway.providers.anthropic_reasoning import THINKING_TYPES, apply_reasoning, reasoning_fields
from gateway.providers.anthropic_request import conversation, system_value
from gateway.providers.anthropic_stream import (
    AnthropicStreamDecoder,
    anthropic_error,
    canonical_usage,
    finish_reason,
)
from gateway.providers.base import Target, WireRequest, auth_headers, join_url

DEFAULT_MAX_TOKENS = 4096
_KEEP = frozenset({"model", "messages", "max_tokens"})
_JSON_OBJECT_INSTRUCTION = "Respond with one valid JSON object and nothing else: no prose, no code fences."
_TOOL_CHOICES: Mapping[str, str] = MappingProxyType({"auto": "auto", "required": "any", "none": "none"})


class AnthropicProvider:
    kind = "anthropic"
    wire = WIRE_ANTHROPIC
    native_request = staticmethod(native_request)
    count_request = staticmethod(count_request)

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        dropped = target.drop_params - _KEEP
        kept = {k: v for k, v in req.items() if k not in dropped}
        body = messages_body(kept, target.model, reasoning_style=target.reasoning_style, auto_cache=target.auto_cache)
        for key in dropped:
            body.pop(key, None)
        if stream:
            body["stream"] = True
        headers = auth_headers(target)
        if target.api_version:
            headers["anthropic-version"] = target.api_version
        else:
            headers.setdefault("anthropic-version", DEFAULT_API_VERSION)
        return WireRequest("POST", join_url(target.base_url, "/messages"), headers, orjson.dumps(body))

    def chat_response(self, body: JSON, target: Target) -> JSON:
        content = body.get("content")
        if not isinstance(content, list):
            raise UpstreamBadResponse("anthropic response has no content list")
        texts: list[str] = []
        calls: list[JSON] = []
        thinking: list[JSON] = []
        for block in content:
            if not isinstance(block, dict):
                raise UpstreamBadResponse("anthropic response has a content block that is not an object")
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                calls.append(_tool_call(block))
            elif block.get("type") in THINKING_TYPES:
                thinking.append(block)
        message: JSON = {"role": "assistant", "content": "".join(texts) or None, **reasoning_fields(thinking)}
        if calls:
            message["tool_calls"] = calls
        usage = body.get("usage")
        return make_completion(
            id=str(body.get("id") or ""),
            model=str(body.get("model") or target.model),
            message=message,
            finish_reason=finish_reason(body.get("stop_reason")),
            usage=canonical_usage(usage) if isinstance(usage, dict) else None,
        )

    def stream_decoder(self, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(target.model)

    def embed_request(self, req: JSON, target: Target) -> WireRequest:
        raise InvalidRequest("anthropic has no embeddings API", param="model", code="unsupported_value")

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        raise InvalidRequest("anthropic has no embeddings API", param="model", code="unsupported_value")

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return anthropic_error(status, headers, body)


def _tool_call(block: JSON) -> JSON:
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(args, dict):
        raise UpstreamBadResponse("anthropic tool_use block lacks an id, a name or an input object")
    arguments = orjson.dumps(args).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- request translation ---------------------------------------------------


def messages_body(req: JSON, model: str, *, reasoning_style: str = "auto", auto_cache: bool = False) -> JSON:
    """A canonical chat request -> the Messages API body (without ``stream``).
    ``reasoning_style`` and ``auto_cache`` are the deployment's settings."""
    n = req.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("n > 1 is not supported by anthropic", param="n", code="unsupported_value")
    system, messages = conversation(req.get("messages"))
    body: JSON = {"model": model, "max_tokens": _max_tokens(req), "messages": messages}
    output_config = _output_config(req.get("response_format"), system)
    if system:
        body["system"] = system
    if output_config:
        body["output_config"] = output_config
    body.update(_sampling(req))
    body.update(_tool_fields(req))
    user = req.get("user") or req.get("safety_identifier")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    if req.get("cache_control") is not None:
        body["cache_control"] = cache_control(req["cache_control"], "cache_control")
    apply_reasoning(body, req, model, reasoning_style)
    settle_breakpoints(body, auto=auto_cache)
    if system:
        body["system"] = system_value(system)
    return body


def _max_tokens(req: JSON) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"{key} must be a positive integer", param=key, code="invalid_value")
        return value
    return DEFAULT_MAX_TOKENS


def _sampling(req: JSON) -> JSON:
    out: JSON = {}
    temperature = req.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise InvalidRequest("temperature must be a number", param="temperature", code="invalid_type")
        out["temperature"] = min(1.0, max(0.0, float(temperature)))
    for key in ("top_p", "top_k"):
        if req.get(key) is not None:
            out[key] = req[key]
    stop = req.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop
    if sequences:
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise InvalidRequest("stop must be a string or a list of strings", param="stop", code="invalid_type")
        out["stop_sequences"] = sequences
    return out


def _tool_fields(req: JSON) -> JSON:
    tools = req.get("tools")
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools", code="invalid_type")
    out: JSON = {"tools": [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]}
    choice = _tool_choice(req.get("tool_choice"))
    if req.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice:
        out["tool_choice"] = choice
    return out


def _tool(tool: Any, param: str) -> JSON:
    is_function = isinstance(tool, dict) and tool.get("type", "function") == "function"
    fn = tool.get("function") if is_function else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest("anthropic accepts only function tools with a name", param=param, code="unsupported_value")
    out: JSON = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return mark(out, tool, param)


def _tool_choice(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"type": "tool", "name": fn["name"]}
    message = "tool_choice must be auto, required, none or a function"
    raise InvalidRequest(message, param="tool_choice", code="invalid_value")


def _output_config(response_format: Any, system: list[JSON]) -> JSON | None:
    """``response_format`` -> ``output_config`` (json_schema), or a system
    instruction appended to ``system`` (json_object)."""
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        system.append({"type": "text", "text": _JSON_OBJECT_INSTRUCTION})
        return None
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if kind != "json_schema" or not isinstance(schema, dict):
        raise InvalidRequest(
            "response_format must be text, json_object or json_schema with a schema",
            param="response_format",
            code="invalid_value",
        )
    return {"format": {"type": "json_schema", "schema": schema}}
