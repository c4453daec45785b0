"""The OpenAI ingress dialect: validate client bodies, render answers.

Validation checks what the gateway and its translators rely on and the ranges
OpenAI's API documents (``temperature`` 0-2, penalties -2..2, at most 4 stop
sequences, ...). Every problem is an :class:`InvalidRequest` whose ``param``
names the offending field (``messages[2].content[0].type``) and whose ``code``
is stable (``invalid_type``, ``missing_required_parameter``, ``invalid_value``,
``unsupported_value``). Unknown top-level parameters pass through untouched:
OpenAI adds parameters often, and an OpenAI-compatible upstream may know them.

Reasoning (docs/dialects.md, "OpenAI chat completions"): ``reasoning_effort`` must
be a string (its values are the upstream's to judge: OpenAI's and, say, Groq's
differ). Assistant messages sent back may carry ``reasoning_content`` (a string) and
``thinking_blocks`` (Anthropic's blocks, as the gateway's answers give them: the
Anthropic provider replays the signed ones, every other provider drops both).
Answers are rendered as the canonical form is: ``reasoning_content`` on the message
and in stream deltas, ``thinking_blocks`` on the message, ``reasoning_signature`` and
``redacted_reasoning`` in deltas (keys the openai SDK ignores and LiteLLM-style
clients read).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects import bounded_json
from gateway.dialects.bounded_json import DEFAULT_MAX_DEPTH
from gateway.dialects.checks import bad as _bad
from gateway.dialects.checks import expect as _expect
from gateway.dialects.checks import kind_of as _kind
from gateway.dialects.responses_reasoning import check_block

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# name -> (low, high, integer?)
RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 2.0, False),
    "top_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "frequency_penalty": (-2.0, 2.0, False),
    "n": (1, 128, True),
    "max_tokens": (1, 10_000_000, True),
    "max_completion_tokens": (1, 10_000_000, True),
    "top_logprobs": (0, 20, True),
    "seed": (-(2**63), 2**63 - 1, True),
    "top_k": (1, 100_000, True),
}


def parse_json_body(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> JSON:
    """The body as a JSON object; ``json_too_deep`` past ``max_depth`` levels
    (``server.max_json_depth``: gateway/dialects/bounded_json.py)."""
    if not raw:
        raise _bad("the request body is empty; expected a JSON object", "body", "invalid_json")
    body = bounded_json.loads(raw, max_depth)
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, not {_kind(body)}", "body", "invalid_json")
    return body


def _model(body: JSON) -> str:
    model = body.get("model")
    if model is None:
        raise _bad("you must provide a model parameter", "model", "missing_required_parameter")
    _expect(model, str, "model", "a string")
    if not model:
        raise _bad("model must not be empty", "model")
    return str(model)


def validate_chat(body: JSON) -> JSON:
    """Check a chat-completions body in place; returns it (the canonical request)."""
    _model(body)
    messages = body.get("messages")
    if messages is None:
        raise _bad("you must provide a messages parameter", "messages", "missing_required_parameter")
    _expect(messages, list, "messages", "an array")
    if not messages:
        raise _bad("messages must contain at least one message", "messages")
    for i, msg in enumerate(messages):
        _message(msg, f"messages[{i}]")
    _numbers(body)
    _flag(body, "stream")
    _flag(body, "logprobs")
    _flag(body, "parallel_tool_calls")
    opts = body.get("stream_options")
    if opts is not None:
        _expect(opts, dict, "stream_options", "an object")
        if "include_usage" in opts:
            _expect(opts["include_usage"], bool, "stream_options.include_usage", "a boolean")
    _stop(body.get("stop"))
    names = _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"), names)
    _response_format(body.get("response_format"))
    if body.get("user") is not None:
        _expect(body["user"], str, "user", "a string")
    if body.get("reasoning_effort") is not None:
        _expect(body["reasoning_effort"], str, "reasoning_effort", "a string")
    return body


def _flag(body: JSON, name: str) -> None:
    if body.get(name) is not None:
        _expect(body[name], bool, name, "a boolean")


def _numbers(body: JSON) -> None:
    for name, (low, high, integer) in RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        _expect(value, int if integer else (int, float), name, "an integer" if integer else "a number")
        if not low <= value <= high:
            raise _bad(f"{name} must be between {_num(low)} and {_num(high)}, got {value}", name)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _message(msg: Any, param: str) -> None:
    _expect(msg, dict, param, "an object")
    role = msg.get("role")
    if role is None:
        raise _bad(f"{param}.role is required", f"{param}.role", "missing_required_parameter")
    if not isinstance(role, str) or role not in ROLES:
        raise _bad(f"{param}.role must be one of {sorted(ROLES)}, got {role!r}", f"{param}.role", "unsupported_value")
    content = msg.get("content")
    if content is None:
        if role != "assistant":
            raise _bad(f"{param}.content is required for role {role}", f"{param}.content", "missing_required_parameter")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _part(part, f"{param}.content[{j}]")
    else:
        _expect(content, str, f"{param}.content", "a string or an array of content parts")
    if role == "tool":
        if msg.get("tool_call_id") is None:
            raise _bad(
                f"{param}.tool_call_id is required for role tool", f"{param}.tool_call_id", "missing_required_parameter"
            )
        _expect(msg["tool_call_id"], str, f"{param}.tool_call_id", "a string")
    calls = msg.get("tool_calls")
    if calls is not None:
        _expect(calls, list, f"{param}.tool_calls", "an array")
        for k, call in enumerate(calls):
            _tool_call(call, f"{param}.tool_calls[{k}]")
    if role == "assistant":
        _reasoning(msg, param)


def _reasoning(msg: JSON, param: str) -> None:
    """An assistant message's reasoning as an answer gave it (``reasoning_content``,
    ``thinking_blocks``: gateway/canonical.py), sent back by the client."""
    if msg.get("reasoning_content") is not None:
        _expect(msg["reasoning_content"], str, f"{param}.reasoning_content", "a string")
    blocks = msg.get("thinking_blocks")
    if blocks is not None:
        _expect(blocks, list, f"{param}.thinking_blocks", "an array of thinking blocks")
        for k, block in enumerate(blocks):
            check_block(block, f"{param}.thinking_blocks[{k}]")


def _part(part: Any, param: str) -> None:
    _expect(part, dict, param, "an object")
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in PART_TYPES:
        raise _bad(
            f"{param}.type must be one of {sorted(PART_TYPES)}, got {kind!r}", f"{param}.type", "unsupported_value"
        )
    if kind == "text":
        _expect(part.get("text"), str, f"{param}.text", "a string")
    elif kind == "image_url":
        image = part.get("image_url")
        _expect(image, dict, f"{param}.image_url", "an object")
        url = image.get("url")
        _expect(url, str, f"{param}.image_url.url", "a string")
        if not url.startswith(("http://", "https://", "data:")):
            raise _bad(f"{param}.image_url.url must be an http(s) or data: URL", f"{param}.image_url.url")


def _tool_call(call: Any, param: str) -> None:
    _expect(call, dict, param, "an object")
    _expect(call.get("id"), str, f"{param}.id", "a string")
    fn = call.get("function")
    _expect(fn, dict, f"{param}.function", "an object")
    _expect(fn.get("name"), str, f"{param}.function.name", "a string")
    _expect(fn.get("arguments"), str, f"{param}.function.arguments", "a JSON string")


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    _expect(stop, list, "stop", "a string or an array of strings")
    if len(stop) > 4:
        raise _bad("stop may hold at most 4 sequences", "stop")
    for i, s in enumerate(stop):
        _expect(s, str, f"stop[{i}]", "a string")


def _tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    _expect(tools, list, "tools", "an array")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        _expect(tool, dict, param, "an object")
        if tool.get("type") != "function":
            raise _bad(f"{param}.type must be 'function'", f"{param}.type", "unsupported_value")
        fn = tool.get("function")
        _expect(fn, dict, f"{param}.function", "an object")
        name = fn.get("name")
        _expect(name, str, f"{param}.function.name", "a string")
        if not TOOL_NAME.fullmatch(name):
            raise _bad(f"{param}.function.name must match {TOOL_NAME.pattern}", f"{param}.function.name")
        if fn.get("parameters") is not None:
            _expect(fn["parameters"], dict, f"{param}.function.parameters", "a JSON schema object")
        names.add(name)
    return names


def _tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _bad(
                "tool_choice must be 'none', 'auto', 'required' or an object", "tool_choice", "unsupported_value"
            )
        if choice == "required" and not names:
            raise _bad("tool_choice 'required' needs tools", "tool_choice")
        return
    _expect(choice, dict, "tool_choice", "a string or an object")
    fn = choice.get("function")
    _expect(fn, dict, "tool_choice.function", "an object")
    name = fn.get("name")
    _expect(name, str, "tool_choice.function.name", "a string")
    if name not in names:
        raise _bad(f"tool_choice names {name!r}, which is not in tools", "tool_choice.function.name")


def _response_format(fmt: Any) -> None:
    if fmt is None:
        return
    _expect(fmt, dict, "response_format", "an object")
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad(
            "response_format.type must be text, json_object or json_schema", "response_format.type", "unsupported_value"
        )
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        _expect(schema, dict, "response_format.json_schema", "an object")
        _expect(schema.get("name"), str, "response_format.json_schema.name", "a string")


def validate_embeddings(body: JSON) -> JSON:
    _model(body)
    data = body.get("input")
    if data is None:
        raise _bad("you must provide an input parameter", "input", "missing_required_parameter")
    if isinstance(data, str):
        if not data:
            raise _bad("input must not be empty", "input")
    else:
        _expect(data, list, "input", "a string or an array")
        if not data:
            raise _bad("input must not be empty", "input")
        if len(data) > 2048:
            raise _bad("input may hold at most 2048 items", "input")
        for i, item in enumerate(data):
            if not isinstance(item, (str, int, list)) or isinstance(item, bool):
                raise _bad(f"input[{i}] must be a string or tokens, got {_kind(item)}", f"input[{i}]", "invalid_type")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad("encoding_format must be 'float' or 'base64'", "encoding_format", "unsupported_value")
    dims = body.get("dimensions")
    if dims is not None:
        _expect(dims, int, "dimensions", "an integer")
        if dims < 1:
            raise _bad("dimensions must be at least 1", "dimensions")
    return body


def encode_embeddings(body: JSON, encoding_format: str) -> JSON:
    """Make every ``data[].embedding`` the format the client asked for
    (the openai SDK asks for base64 little-endian float32 by default)."""
    for item in body.get("data", []):
        emb = item.get("embedding")
        if encoding_format == "base64" and isinstance(emb, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(emb)}f", *emb)).decode("ascii")
        elif encoding_format == "float" and isinstance(emb, str):
            raw = base64.b64decode(emb)
            item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return body


def estimate_prompt_tokens(req: JSON) -> int:
    """A rough count (4 characters a token) for context-window routing."""
    chars = 0
    for msg in req.get("messages", ()):
        content = msg.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return chars // 4 + 1


def sse_event(obj: JSON) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
