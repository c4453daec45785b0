"""Deterministic generated content: replies, tool calls, JSON output, embeddings.

The format modules turn their request bodies into a :class:`Prompt`, call
:func:`generate`, and render the :class:`Reply` in their wire shape. Only ids
are random; text, arguments, token counts and vectors depend only on the input.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import string
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import cycle, islice
from types import MappingProxyType
from typing import Any, Literal

import orjson

from gateway.mock.behaviour import Behaviour

Finish = Literal["stop", "length", "tool"]
ToolMode = Literal["auto", "none", "required"]

_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_CHUNK = re.compile(r"\s*\S+")
_ALNUM = string.ascii_letters + string.digits
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
_KOREAN_FILLER = ("그리고", "계속해서", "답변을", "드립니다")
_MAX_SCHEMA_DEPTH = 8


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the generator needs from a request, whatever its format."""

    model: str
    prompt_tokens: int
    last_user: str = ""
    tools: tuple[ToolSpec, ...] = ()
    tool_mode: ToolMode = "auto"
    forced_tool: str | None = None
    after_tool_result: bool = False
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass(frozen=True, slots=True)
class Reply:
    """A generated answer: text, or one tool call (then ``text`` is ``""``)."""

    text: str
    tool_call: ToolCall | None
    finish: Finish
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def count_words(text: str) -> int:
    return len(text.split())


def chunks(text: str) -> list[str]:
    """Stream pieces, one word each with its leading whitespace (``"a b"`` -> ``["a", " b"]``)."""
    return _CHUNK.findall(text)


def fragments(text: str, size: int = 8) -> list[str]:
    """Fixed-size pieces of a JSON string, as tool arguments are streamed."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(_ALNUM[b % len(_ALNUM)] for b in os.urandom(length))


def generate(prompt: Prompt, behaviour: Behaviour) -> Reply:
    """The reply to ``prompt``: a tool call, a JSON object, or text."""
    tool = choose_tool(prompt)
    if tool is not None:
        call = ToolCall(tool.name, sample_object(tool.schema))
        used = max(count_words(call.arguments_json), 1)
        return Reply("", call, "tool", prompt.prompt_tokens, used)
    if prompt.json_mode:
        obj = sample_object(prompt.json_schema) if prompt.json_schema else {"result": "mock"}
        text = orjson.dumps(obj).decode()
        return Reply(text, None, "stop", prompt.prompt_tokens, count_words(text))
    return _text_reply(prompt, behaviour)


def choose_tool(prompt: Prompt) -> ToolSpec | None:
    """The tool to call, or ``None`` to answer in text.

    A forced tool is always called; with ``auto`` the first tool is called unless
    the conversation ends in a tool result (then the model answers in text).
    """
    if not prompt.tools or prompt.tool_mode == "none":
        return None
    if prompt.forced_tool is not None:
        return next((t for t in prompt.tools if t.name == prompt.forced_tool), ToolSpec(prompt.forced_tool, {}))
    if prompt.tool_mode == "auto" and prompt.after_tool_result:
        return None
    return prompt.tools[0]


def _text_reply(prompt: Prompt, behaviour: Behaviour) -> Reply:
    if behaviour.reply is not None:
        words = behaviour.reply.split()
        text = behaviour.reply
    else:
        words = reply_words(prompt.model, prompt.last_user, behaviour.output_tokens)
        text = " ".join(words)
    finish: Finish = "stop"
    if prompt.max_tokens is not None and len(words) > prompt.max_tokens:
        words = words[: prompt.max_tokens]
        text = " ".join(words)
        finish = "length"
    return Reply(text, None, finish, prompt.prompt_tokens, len(words))


def reply_words(model: str, last_user: str, count: int) -> list[str]:
    """``Mock reply from <model>:`` + the user's first words, padded/cut to ``count`` words.

    A user message with Hangul gets a Korean reply (``모의 응답입니다: ...``).
    """
    user_words = last_user.split()
    filler: tuple[str, ...]
    if has_hangul(last_user):
        head, filler = ["모의", "응답입니다:"], _KOREAN_FILLER
    else:
        head, filler = ["Mock", "reply", "from", f"{model}:"], _FILLER
    words = head + user_words
    if len(words) < count:
        words += islice(cycle(filler), count - len(words))
    return words[:count]


def sample_object(schema: dict[str, Any] | None) -> dict[str, Any]:
    """An object satisfying ``schema``'s required properties (see :func:`sample_value`)."""
    if not schema:
        return {}
    value = sample_value(schema, schema, 0)
    return value if isinstance(value, dict) else {}


def sample_value(schema: Any, root: dict[str, Any], depth: int) -> Any:
    """A type-appropriate value: strings ``"mock"``, numbers 1, booleans true,
    arrays ``[]``, objects with their required properties filled (``{}`` if none).

    Understands ``$ref`` to ``#/$defs``/``#/definitions``, ``const``, ``enum``,
    ``anyOf``/``oneOf``/``allOf``, nullable type lists and Gemini's upper-case types.
    """
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return "mock"
    if isinstance(schema.get("$ref"), str):
        return sample_value(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return sample_value(_first_non_null(options), root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        return {name: sample_value(props.get(name, {}), root, depth + 1) for name in required}
    if kind == "array":
        return []
    return _SCALARS.get(kind, "mock")


_SCALARS: Mapping[str, Any] = MappingProxyType(
    {"string": "mock", "integer": 1, "number": 1, "boolean": True, "null": None}
)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if kind is None:
        return "object" if "properties" in schema else "string"
    return str(kind).lower()


def _first_non_null(options: list[Any]) -> Any:
    return next((o for o in options if not (isinstance(o, dict) and o.get("type") == "null")), options[0])


def _resolve_ref(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict):
            return {}
        node = node.get(part, {})
    return node


def embedding(text: str, dims: int) -> list[float]:
    """A unit-length vector derived from a hash of ``text`` (same text, same vector)."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dims)
    values = [n / 2147483647.5 - 1.0 for n in struct.unpack(f"<{dims}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embedding_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what OpenAI sends for ``encoding_format: base64``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def text_of(value: Any) -> str:
    """All text in a message, content, part list or block: strings, and the ``text``,
    ``content`` and ``parts`` fields of objects, recursively (tool results included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(filter(None, (text_of(v) for v in value)))
    if isinstance(value, dict):
        return " ".join(filter(None, (text_of(value.get(k)) for k in ("text", "content", "parts"))))
    return ""


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for tolerant parsing)."""
    return value if isinstance(value, dict) else {}
