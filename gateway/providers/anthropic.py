"""Anthropic Messages API (``POST {base_url}/messages``).

Request, canonical -> Anthropic:

- ``system`` and ``developer`` messages, wherever they appear, are hoisted into
  the top-level ``system`` (a string when there is one plain text, else a list
  of text blocks). Most Claude models reject a system role inside ``messages``,
  so a mid-conversation instruction loses its position.
- Consecutive turns of one role are merged; ``tool`` messages become
  ``tool_result`` blocks of a user turn (so a run of them shares one turn, and
  a user message that follows lands after the results, as Anthropic requires).
- Assistant ``tool_calls`` become ``tool_use`` blocks (``arguments`` parsed
  into ``input``). Parts: ``text``, ``image_url`` (``data:`` URLs as base64
  sources, http(s) as url sources) and ``file`` with base64 ``file_data``
  (a ``document`` block); anything else is an InvalidRequest.
- ``max_tokens`` is required: ``max_completion_tokens``, else ``max_tokens``,
  else 4096. ``temperature`` is clamped to Anthropic's 0..1; ``top_p`` and
  ``top_k`` pass through; ``stop`` -> ``stop_sequences``; ``user`` (or
  ``safety_identifier``) -> ``metadata.user_id``; ``n`` > 1 is refused.
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
  ``reasoning_effort``, ``verbosity``, ``service_tier``, ``store``,
  ``metadata`` (OpenAI's stored-completion tags), ``modalities``, ``audio``,
  ``prediction``, ``prompt_cache_key``, ``web_search_options``,
  ``stream_options``, ``functions`` / ``function_call`` and message ``name``.
- ``Target.drop_params`` names are removed from the canonical request before
  translation *and* from the wire body after it (so both ``stop`` and
  ``stop_sequences`` work), except ``model``, ``messages`` and ``max_tokens``.

Stop reasons, usage, error envelopes and the stream decoder live in
:mod:`gateway.providers.anthropic_stream`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from gateway.canonical import JSON, WIRE_ANTHROPIC, make_completion
from gateway.errors import InvalidRequest, UpstreamBadResponse, UpstreamError
from gateway.providers.anthropic_native import DEFAULT_API_VERSION, count_request, native_request
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
        body = messages_body({k: v for k, v in req.items() if k not in dropped}, target.model)
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
        for block in content:
            if not isinstance(block, dict):
                raise UpstreamBadResponse("anthropic response has a content block that is not an object")
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                calls.append(_tool_call(block))
        message: JSON = {"role": "assistant", "content": "".join(texts) or None}
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
        raise InvalidRequest("anthropic has no embeddings API", param="model")

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        raise InvalidRequest("anthropic has no embeddings API", param="model")

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return anthropic_error(status, headers, body)


def _tool_call(block: JSON) -> JSON:
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(args, dict):
        raise UpstreamBadResponse("anthropic tool_use block lacks an id, a name or an input object")
    arguments = orjson.dumps(args).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- request translation ---------------------------------------------------


def messages_body(req: JSON, model: str) -> JSON:
    """A canonical chat request -> the Messages API body (without ``stream``)."""
    n = req.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("n > 1 is not supported by anthropic", param="n")
    system, messages = _conversation(req.get("messages"))
    body: JSON = {"model": model, "max_tokens": _max_tokens(req), "messages": messages}
    output_config = _output_config(req.get("response_format"), system)
    if system:
        body["system"] = _system_value(system)
    if output_config:
        body["output_config"] = output_config
    body.update(_sampling(req))
    body.update(_tool_fields(req))
    user = req.get("user") or req.get("safety_identifier")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    return body


def _conversation(messages: Any) -> tuple[list[JSON], list[JSON]]:
    """Canonical messages -> (system text blocks, alternating Anthropic turns)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InvalidRequest("each message must be an object", param=f"messages[{i}]")
        if msg.get("role") in ("system", "developer"):
            system.extend(_system_blocks(msg.get("content"), f"messages[{i}].content"))
            continue
        role, blocks = _turn(msg, f"messages[{i}]")
        if not blocks:
            continue  # Anthropic refuses empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _turn(msg: JSON, param: str) -> tuple[str, list[JSON]]:
    role = msg.get("role")
    if role == "user":
        return "user", _content_blocks(msg.get("content"), f"{param}.content")
    if role == "tool":
        return "user", [_tool_result(msg, param)]
    if role == "assistant":
        blocks = _content_blocks(msg.get("content"), f"{param}.content")
        return "assistant", blocks + _tool_uses(msg.get("tool_calls"), f"{param}.tool_calls")
    raise InvalidRequest(f"message role {role!r} is not supported by anthropic", param=f"{param}.role")


def _system_blocks(content: Any, param: str) -> list[JSON]:
    blocks = _content_blocks(content, param)
    if any(b["type"] != "text" for b in blocks):
        raise InvalidRequest("system messages may only contain text for anthropic", param=param)
    return blocks


def _system_value(blocks: list[JSON]) -> str | list[JSON]:
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        return str(blocks[0]["text"])
    return blocks


def _content_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("message content must be a string or a list of parts", param=param)
    blocks = (_part_block(part, f"{param}[{j}]") for j, part in enumerate(content))
    return [b for b in blocks if b is not None]


def _part_block(part: Any, param: str) -> JSON | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequest(f"a {kind} part needs a string {kind!r}", param=param)
        if not text:
            return None  # Anthropic refuses empty text blocks
        block: JSON = {"type": "text", "text": text}
        if "cache_control" in part:  # Anthropic prompt caching, sent by some clients
            block["cache_control"] = part["cache_control"]
        return block
    if kind == "image_url":
        return _image_block(part.get("image_url"), f"{param}.image_url")
    if kind == "file":
        return _document_block(part.get("file"), f"{param}.file")
    raise InvalidRequest(f"content part type {kind!r} is not supported by anthropic", param=param)


def _image_block(image: Any, param: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("image_url needs a url", param=param)
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url must be an http(s) or a base64 data: URL", param=param)


def _document_block(file: Any, param: str) -> JSON:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest("anthropic accepts files only as base64 data: URLs in file_data", param=param)
    media_type, data = _data_url(data_url, f"{param}.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<media type>[;...];base64,<data>`` -> (media type, data)."""
    header, sep, data = url[5:].partition(",")
    media_type, *options = header.split(";")
    if not sep or not media_type or "base64" not in options or not data:
        raise InvalidRequest("data: URLs must be base64 encoded (data:<type>;base64,...)", param=param)
    return media_type, data


def _tool_result(msg: JSON, param: str) -> JSON:
    tool_use_id = msg.get("tool_call_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise InvalidRequest("a tool message needs a tool_call_id", param=f"{param}.tool_call_id")
    block: JSON = {"type": "tool_result", "tool_use_id": tool_use_id}
    content = msg.get("content")
    value = content if isinstance(content, str) else _content_blocks(content, f"{param}.content")
    if value:
        block["content"] = value
    return block


def _tool_uses(tool_calls: Any, param: str) -> list[JSON]:
    if not tool_calls:
        return []
    if not isinstance(tool_calls, list):
        raise InvalidRequest("tool_calls must be a list", param=param)
    return [_tool_use(call, f"{param}[{j}]") for j, call in enumerate(tool_calls)]


def _tool_use(call: Any, param: str) -> JSON:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest("a tool call needs function.name", param=f"{param}.function")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool call needs an id", param=f"{param}.id")
    args = _arguments(fn.get("arguments"), f"{param}.function.arguments")
    return {"type": "tool_use", "id": call_id, "name": fn["name"], "input": args}


def _arguments(arguments: Any, param: str) -> JSON:
    """Tool-call ``arguments`` (a JSON string) -> the ``input`` object Anthropic wants."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest("tool call arguments must be a JSON object string", param=param)
    return parsed


def _max_tokens(req: JSON) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"{key} must be a positive integer", param=key)
        return value
    return DEFAULT_MAX_TOKENS


def _sampling(req: JSON) -> JSON:
    out: JSON = {}
    temperature = req.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise InvalidRequest("temperature must be a number", param="temperature")
        out["temperature"] = min(1.0, max(0.0, float(temperature)))
    for key in ("top_p", "top_k"):
        if req.get(key) is not None:
            out[key] = req[key]
    stop = req.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop
    if sequences:
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise InvalidRequest("stop must be a string or a list of strings", param="stop")
        out["stop_sequences"] = sequences
    return out


def _tool_fields(req: JSON) -> JSON:
    tools = req.get("tools")
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
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
        raise InvalidRequest("anthropic accepts only function tools with a name", param=param)
    out: JSON = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"type": "tool", "name": fn["name"]}
    raise InvalidRequest("tool_choice must be auto, required, none or a function", param="tool_choice")


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
            "response_format must be text, json_object or json_schema with a schema", param="response_format"
        )
    return {"format": {"type": "json_schema", "schema": schema}}
