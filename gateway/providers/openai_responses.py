"""OpenAI Responses API (``POST {base_url}/responses``) as an upstream.

Request, canonical chat -> Responses:

- ``system`` and ``developer`` messages, wherever they appear, are joined
  (blank line between) into ``instructions``; a mid-conversation instruction
  loses its position. ``user`` messages become input messages (string content
  stays a string; parts: ``text`` -> ``input_text``, ``image_url`` ->
  ``input_image`` with its ``detail``, default ``auto``; ``file`` ->
  ``input_file`` with ``file_data`` / ``file_id`` / ``filename``;
  ``input_audio`` is refused). Assistant text and refusals become an
  assistant ``message`` item of ``output_text`` / ``refusal`` parts, its
  ``tool_calls`` ``function_call`` items (``call_id`` = the tool call id), and
  ``tool`` messages ``function_call_output`` items (text joined into a string;
  parts with images or files kept as input parts). An assistant's
  ``reasoning_content`` and ``thinking_blocks`` and a message's ``name`` are
  dropped: Responses can only replay reasoning items it produced (with their ids
  and encrypted content, which a translation does not have), and has no names.
- Tools -> flat ``{type: "function", name, description, parameters, strict}``.
  ``strict`` is always written (false unless the request says true): chat
  completions' default is non-strict, and the Responses API's is not. ``tool_choice``: the strings pass,
  ``{type: function, function: {name}}`` -> ``{type: function, name}``,
  ``allowed_tools`` is flattened the same way.
- ``response_format``, ``verbosity`` -> ``text``; ``reasoning_effort`` ->
  ``reasoning.effort``, ``include_reasoning: true`` -> ``reasoning.summary: auto``
  (:mod:`gateway.providers.openai_responses_options`); ``reasoning_budget`` dropped.
- ``max_completion_tokens`` (else ``max_tokens``) -> ``max_output_tokens``;
  ``temperature``, ``top_p``, ``user``, ``metadata``, ``parallel_tool_calls``,
  ``service_tier``, ``safety_identifier``, ``prompt_cache_key`` and
  ``prompt_cache_retention`` pass as they are.
- ``n`` > 1 is refused. Dropped, the Responses API has no such parameter:
  ``stop``, ``logprobs``, ``top_logprobs``, ``presence_penalty``,
  ``frequency_penalty``, ``seed``, ``logit_bias``, ``modalities``, ``audio``,
  ``prediction``, ``web_search_options``, ``stream_options``, legacy
  ``functions`` / ``function_call`` and any unknown parameter.
- ``store`` is always false (the gateway keeps no state at the upstream) and
  ``stream`` is true for streams. ``Target.drop_params`` names are removed from
  the canonical request before translation *and* from the wire body after it
  (``max_tokens`` or ``max_output_tokens`` both work), except ``model``,
  ``input``, ``store`` and ``stream``.

Answers, streams and errors: :mod:`gateway.providers.openai_responses_stream`.
Embeddings (not a Responses endpoint) go to the base URL's ``/embeddings`` as OpenAI's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.canonical import JSON, WIRE_OPENAI_RESPONSES
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.base import Target, WireRequest, auth_headers, join_url
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.providers.openai_responses_options import reasoning_config, text_config
from gateway.providers.openai_responses_stream import ResponsesStreamDecoder, completion_from_response, responses_error

_KEEP = frozenset({"model", "input", "store", "stream"})
_PASSED = (
    "temperature",
    "top_p",
    "user",
    "metadata",
    "parallel_tool_calls",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
)
_TOOL_CHOICES = frozenset({"auto", "none", "required"})
_DELIVERY_ONLY = ("stream", "stream_options", "store", "background")
FORWARDED_HEADERS = ("openai-beta",)
"""Client headers a same-format request forwards."""


class OpenAIResponsesProvider:
    kind = "openai_responses"
    wire = WIRE_OPENAI_RESPONSES

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        dropped = target.drop_params - _KEEP
        body = responses_body({k: v for k, v in req.items() if k not in dropped}, target.model)
        for key in dropped:
            body.pop(key, None)
        if stream:
            body["stream"] = True
        return self._post(target, "/responses", body)

    def native_request(
        self, body: JSON, target: Target, *, stream: bool, headers: Mapping[str, str] | None = None
    ) -> WireRequest:
        """A client's own Responses body (the server already replaced the model
        and set ``store: false``) -> the same body, ``stream`` set as given."""
        return self._post(target, "/responses", {**body, "stream": stream}, headers)

    def count_request(self, body: JSON, target: Target, headers: Mapping[str, str] | None = None) -> WireRequest:
        """A Responses body -> ``POST /responses/input_tokens``, without the
        delivery options (stream, store, background) that endpoint does not take."""
        counted = {k: v for k, v in body.items() if k not in _DELIVERY_ONLY}
        return self._post(target, "/responses/input_tokens", counted, headers)

    def chat_response(self, body: JSON, target: Target) -> JSON:
        return completion_from_response(body, target.model)

    def stream_decoder(self, target: Target) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder(target.model)

    def embed_request(self, req: JSON, target: Target) -> WireRequest:
        return OpenAICompatProvider().embed_request(req, target)

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        return OpenAICompatProvider().embed_response(body, target, req)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return responses_error(status, headers, body)

    @staticmethod
    def _post(target: Target, path: str, body: JSON, client: Mapping[str, str] | None = None) -> WireRequest:
        headers = auth_headers(target)
        headers.update({k: v for k in FORWARDED_HEADERS if (v := (client or {}).get(k))})
        return WireRequest("POST", join_url(target.base_url, path), headers, orjson.dumps(body))


# --- request translation ---------------------------------------------------------


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def responses_body(req: JSON, model: str) -> JSON:
    """A canonical chat request -> the Responses body (without ``stream``)."""
    n = req.get("n")
    if n is not None and n != 1:
        raise _bad("n > 1 is not supported by the Responses API", "n", "unsupported_value")
    instructions, items = input_items(req.get("messages"))
    body: JSON = {"model": model, "input": items, "store": False}
    if instructions:
        body["instructions"] = "\n\n".join(instructions)
    body.update({key: req[key] for key in _PASSED if req.get(key) is not None})
    max_output = _max_output_tokens(req)
    if max_output is not None:
        body["max_output_tokens"] = max_output
    text = text_config(req)
    if text:
        body["text"] = text
    reasoning = reasoning_config(req, model)
    if reasoning:
        body["reasoning"] = reasoning
    body.update(_tool_fields(req))
    return body


def input_items(messages: Any) -> tuple[list[str], list[JSON]]:
    """Canonical messages -> (instruction texts, Responses input items)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array", "messages", "invalid_type")
    instructions: list[str] = []
    items: list[JSON] = []
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{param} must be an object", param, "invalid_type")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _system_text(msg.get("content"), f"{param}.content")
            if text:
                instructions.append(text)
        elif role == "user":
            items.append({"role": "user", "content": _user_content(msg.get("content"), f"{param}.content")})
        elif role == "assistant":
            items.extend(_assistant_items(msg, param))
        elif role == "tool":
            items.append(_tool_output(msg, param))
        else:
            raise _bad(
                f"message role {role!r} is not supported by the Responses API", f"{param}.role", "unsupported_value"
            )
    return instructions, items


def _parts(content: Any, param: str) -> list[Any]:
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string or an array of content parts", param, "invalid_type")
    return content


def _part_type(part: Any, param: str) -> Any:
    if not isinstance(part, dict):
        raise _bad(f"{param} must be an object", param, "invalid_type")
    return part.get("type")


def _part_text(part: JSON, key: str, param: str) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        raise _bad(f"{param}.{key} must be a string", f"{param}.{key}", "invalid_type")
    return value


def _system_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(_parts(content, param)):
        if _part_type(part, f"{param}[{j}]") != "text":
            raise _bad("system messages may only hold text parts", f"{param}[{j}].type", "unsupported_value")
        texts.append(_part_text(part, "text", f"{param}[{j}]"))
    return "".join(texts)


def _user_content(content: Any, param: str) -> str | list[JSON]:
    if content is None:
        raise _bad(f"{param} is required for a user message", param, "missing_required_parameter")
    if isinstance(content, str):
        return content
    return [_input_part(part, f"{param}[{j}]") for j, part in enumerate(_parts(content, param))]


def _input_part(part: Any, param: str) -> JSON:
    kind = _part_type(part, param)
    if kind == "text":
        return {"type": "input_text", "text": _part_text(part, "text", param)}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
            raise _bad("image_url.url must be an http(s) or data: URL", f"{param}.image_url.url")
        detail = image.get("detail") if isinstance(image, dict) else None
        return {"type": "input_image", "image_url": url, "detail": detail if isinstance(detail, str) else "auto"}
    if kind == "file":
        file = part.get("file")
        fields = {k: file[k] for k in ("file_data", "file_id", "filename") if isinstance(file, dict) and file.get(k)}
        if not fields.get("file_data") and not fields.get("file_id"):
            raise _bad("a file part needs file_data or file_id", f"{param}.file", "missing_required_parameter")
        if not all(isinstance(v, str) for v in fields.values()):
            raise _bad("file_data, file_id and filename must be strings", f"{param}.file", "invalid_type")
        return {"type": "input_file", **fields}
    raise _bad(
        f"content part type {kind!r} is not supported by the Responses API", f"{param}.type", "unsupported_value"
    )


def _assistant_items(msg: JSON, param: str) -> list[JSON]:
    content = msg.get("content")
    parts: list[JSON] = []
    if isinstance(content, str):
        parts = [{"type": "output_text", "text": content}] if content else []
    elif content is not None:
        for j, part in enumerate(_parts(content, f"{param}.content")):
            kind, where = _part_type(part, f"{param}.content[{j}]"), f"{param}.content[{j}]"
            if kind not in ("text", "refusal"):
                raise _bad(
                    "assistant content may only hold text and refusal parts", f"{where}.type", "unsupported_value"
                )
            text = _part_text(part, kind, where)
            if text:
                parts.append({"type": "output_text", "text": text} if kind == "text" else {"type": kind, kind: text})
    items: list[JSON] = [{"type": "message", "role": "assistant", "content": parts}] if parts else []
    calls = msg.get("tool_calls")
    if calls is None:
        return items
    if not isinstance(calls, list):
        raise _bad(f"{param}.tool_calls must be an array", f"{param}.tool_calls", "invalid_type")
    return items + [_function_call(call, f"{param}.tool_calls[{k}]") for k, call in enumerate(calls)]


def _function_call(call: Any, param: str) -> JSON:
    if not isinstance(call, dict):
        raise _bad(f"{param} must be an object", param, "invalid_type")
    call_id, fn = call.get("id"), call.get("function")
    if not isinstance(call_id, str) or not call_id:
        raise _bad("a tool call needs an id", f"{param}.id", "missing_required_parameter")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise _bad("a tool call needs function.name", f"{param}.function.name", "missing_required_parameter")
    arguments = fn.get("arguments")
    if isinstance(arguments, dict):
        arguments = orjson.dumps(arguments).decode()
    elif arguments is None or arguments == "":
        arguments = "{}"
    elif not isinstance(arguments, str):
        raise _bad("tool call arguments must be a JSON string", f"{param}.function.arguments", "invalid_type")
    return {"type": "function_call", "call_id": call_id, "name": fn["name"], "arguments": arguments}


def _tool_output(msg: JSON, param: str) -> JSON:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad("a tool message needs a tool_call_id", f"{param}.tool_call_id", "missing_required_parameter")
    content = msg.get("content")
    output: str | list[JSON] = ""
    if isinstance(content, str):
        output = content
    elif content is not None:
        parts = [
            _input_part(part, f"{param}.content[{j}]") for j, part in enumerate(_parts(content, f"{param}.content"))
        ]
        texts_only = all(p["type"] == "input_text" for p in parts)
        output = "".join(p["text"] for p in parts) if texts_only else parts
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def _max_output_tokens(req: JSON) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"{key} must be a positive integer", key, "invalid_type")
        return value
    return None


def _tool_fields(req: JSON) -> JSON:
    out: JSON = {}
    tools = req.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools must be an array", "tools", "invalid_type")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = req.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _tool_choice(choice)
    return out


def _function_name(fn: Any, param: str) -> str:
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise _bad("a function needs a name", f"{param}.function.name", "missing_required_parameter")
    return name


def _tool(tool: Any, param: str) -> JSON:
    if not isinstance(tool, dict):
        raise _bad(f"{param} must be an object", param, "invalid_type")
    if tool.get("type", "function") != "function":
        raise _bad("the Responses translation accepts only function tools", f"{param}.type", "unsupported_value")
    fn: JSON = tool["function"] if isinstance(tool.get("function"), dict) else {}
    out: JSON = {"type": "function", "name": _function_name(fn, param)}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = fn.get("strict") is True
    return out


def _tool_choice(choice: Any) -> str | JSON:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function":
        return {"type": "function", "name": _function_name(choice.get("function"), "tool_choice")}
    allowed = choice.get("allowed_tools") if isinstance(choice, dict) else None
    if kind == "allowed_tools" and isinstance(allowed, dict) and isinstance(allowed.get("tools"), list):
        param = "tool_choice.allowed_tools"
        tools = [
            {"type": "function", "name": _function_name(t.get("function") if isinstance(t, dict) else None, param)}
            for t in allowed["tools"]
        ]
        return {"type": "allowed_tools", "mode": allowed.get("mode", "auto"), "tools": tools}
    raise _bad("tool_choice must be auto, none, required, a function or allowed_tools", "tool_choice")
