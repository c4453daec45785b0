"""Anthropic Messages ``system`` and ``messages`` -> canonical chat messages.

Part of the Anthropic ingress dialect (:mod:`gateway.dialects.anthropic`). Every
problem is an :class:`InvalidRequest` whose ``param`` is the dotted path of the
field, the way Anthropic names it (``messages.1.content.0.type``).

- ``system`` (a string or text blocks) and ``{"role": "system"}`` turns -> system
  messages, in place.
- User blocks: ``text`` -> text part; ``image`` (base64 -> ``data:`` URL, url ->
  the URL) -> ``image_url`` part; ``document``: base64 PDF -> ``file`` part
  (``file_data`` a ``data:`` URL, ``filename`` the block's title or
  ``document.pdf``), text source -> text part, content source -> its parts.
- ``tool_result`` -> a ``tool`` message (its text; ``is_error`` prefixes it with
  ``Error: ``). Images and documents inside a result cannot go into a tool
  message, so they follow the results as one user message of their own; the
  turn's other blocks come after that, as another user message.
- Assistant blocks: texts -> ``content``; ``tool_use`` -> ``tool_calls``
  (``input`` serialised as the ``arguments`` string); ``thinking`` and
  ``redacted_thinking`` -> ``thinking_blocks``, verbatim (signatures included),
  and the thinking texts, joined by a blank line, -> ``reasoning_content``.
- ``cache_control`` (validated: :func:`gateway.dialects.anthropic_reasoning.cache_control`)
  stays where the block lands: on the text / ``image_url`` / ``file`` part (a
  document that gives several parts: on its last); a ``tool_use`` block's on the
  assistant message, a ``tool_result``'s (or a text block's inside it) on the ``tool``
  message. Thinking blocks keep whatever they hold, verbatim. A text that carries
  one stays a list of parts (a lone text is otherwise a string).
- ``citations`` are dropped. Refused: server-tool blocks
  (``server_tool_use``, ``*_tool_result``), ``search_result``,
  ``container_upload``, Files API sources and url documents (no canonical form),
  and blocks in a role that cannot hold them.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects.anthropic_reasoning import cache_control, with_cache_control
from gateway.dialects.checks import bad, expect, required
from gateway.errors import InvalidRequest, Untranslatable

ROLES = ("user", "assistant", "system")
USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
DEFAULT_FILENAME = "document.pdf"
REASONING_SEPARATOR = "\n\n"
"""Between the texts of an assistant turn's thinking blocks in its ``reasoning_content``."""
ERROR_PREFIX = "Error: "
"""Put before a ``tool_result`` marked ``is_error``: a tool message has no error flag."""


def required_str(obj: JSON, key: str, param: str, *, empty: bool = True) -> str:
    value = required(obj, key, param)
    expect(value, str, f"{param}.{key}", "a string")
    if not empty and not value:
        raise bad(f"{param}.{key} must not be empty", f"{param}.{key}")
    return str(value)


# --- system ------------------------------------------------------------------


def system_messages(system: Any, param: str = "system") -> list[JSON]:
    """``system`` (or a system turn's content) -> zero or one canonical system message."""
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    expect(system, list, param, "a string or an array of text blocks")
    parts: list[JSON] = []
    for i, block in enumerate(system):
        p = f"{param}.{i}"
        if block_type(block, p) != "text":
            raise bad(f"{p}.type must be 'text' in a system prompt", f"{p}.type", "unsupported_value")
        parts.append(with_cache_control(text_part(block, p), block, p))
    return [{"role": "system", "content": parts}] if parts else []


# --- turns -------------------------------------------------------------------


def conversation(messages: Any) -> list[JSON]:
    """``messages`` -> canonical messages (a user turn may become several)."""
    if messages is None:
        raise bad("messages is required", "messages", "missing_required_parameter")
    expect(messages, list, "messages", "an array")
    if not messages:
        raise bad("messages must contain at least one message", "messages")
    out: list[JSON] = []
    for i, msg in enumerate(messages):
        out.extend(_turn(msg, f"messages.{i}"))
    return out


def _turn(msg: Any, param: str) -> list[JSON]:
    expect(msg, dict, param, "an object")
    role = required(msg, "role", param)
    if role not in ROLES:
        raise bad(f"{param}.role must be one of {list(ROLES)}, got {role!r}", f"{param}.role", "unsupported_value")
    content = required(msg, "content", param)
    if role == "system":
        return system_messages(content, f"{param}.content")
    if role == "assistant":
        return [_assistant(content, f"{param}.content")]
    return _user(content, f"{param}.content")


def block_type(block: Any, param: str) -> str:
    expect(block, dict, param, "an object")
    t = required(block, "type", param)
    expect(t, str, f"{param}.type", "a string")
    return str(t)


def _refuse(t: str, role: str, param: str) -> InvalidRequest:
    known = USER_BLOCKS | ASSISTANT_BLOCKS
    if t in known:
        return bad(f"content block type {t!r} is not allowed in {role} messages", f"{param}.type", "unsupported_value")
    return Untranslatable(
        f"content block type {t!r} has no equivalent the gateway can translate", param=f"{param}.type"
    )


def _user(content: Any, param: str) -> list[JSON]:
    if isinstance(content, str):
        if not content:
            raise bad(f"{param} must not be empty", param)
        return [{"role": "user", "content": content}]
    expect(content, list, param, "a string or an array of content blocks")
    if not content:
        raise bad(f"{param} must contain at least one content block", param)
    results: list[JSON] = []
    attached: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(content):
        p = f"{param}.{j}"
        t = block_type(block, p)
        if t == "tool_result":
            message, extra = _tool_result(block, p)
            results.append(message)
            attached.extend(extra)
        elif t in USER_BLOCKS:
            parts.extend(_media_part(t, block, p))
        else:
            raise _refuse(t, "user", p)
    if attached:
        results.append({"role": "user", "content": attached})
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _assistant(content: Any, param: str) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    expect(content, list, param, "a string or an array of content blocks")
    texts: list[JSON] = []
    calls: list[JSON] = []
    thinking: list[JSON] = []
    marker: JSON | None = None
    for j, block in enumerate(content):
        p = f"{param}.{j}"
        t = block_type(block, p)
        if t == "text":
            texts.append(with_cache_control(text_part(block, p), block, p))
        elif t == "tool_use":
            calls.append(_tool_call(block, p))
            marker = cache_control(block, p) or marker
        elif t in THINKING_BLOCKS:
            thinking.append(_thinking(t, block, p))
        else:
            raise _refuse(t, "assistant", p)
    message: JSON = {"role": "assistant", "content": _assistant_content(texts, bool(calls))}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
        reasoning = REASONING_SEPARATOR.join(str(b["thinking"]) for b in thinking if b["type"] == "thinking")
        if reasoning:
            message["reasoning_content"] = reasoning
    if marker is not None:
        message["cache_control"] = marker
    return message


def _assistant_content(texts: list[JSON], has_calls: bool) -> str | list[JSON] | None:
    if not texts:
        return None if has_calls else ""
    if len(texts) == 1 and "cache_control" not in texts[0]:
        return str(texts[0]["text"])
    return texts


# --- blocks ------------------------------------------------------------------


def text_part(block: JSON, param: str) -> JSON:
    return {"type": "text", "text": required_str(block, "text", param)}


def _media_part(t: str, block: JSON, param: str) -> list[JSON]:
    """A text, image or document block of a user turn (or a tool result) -> parts."""
    if t == "text":
        parts = [text_part(block, param)]
    elif t == "image":
        parts = [_image(block, param)]
    else:
        parts = _document(block, param)
    marker = cache_control(block, param)
    if marker is not None and parts:
        parts[-1]["cache_control"] = marker
    return parts


def _source(block: JSON, param: str, allowed: tuple[str, ...]) -> tuple[JSON, str]:
    source = required(block, "source", param)
    expect(source, dict, f"{param}.source", "an object")
    stype = required_str(source, "type", f"{param}.source")
    if stype not in allowed:
        raise Untranslatable(
            f"{param}.source.type {stype!r} cannot be translated (supported: {', '.join(allowed)})",
            param=f"{param}.source.type",
        )
    return source, stype


def _image(block: JSON, param: str) -> JSON:
    source, stype = _source(block, param, ("base64", "url"))
    p = f"{param}.source"
    if stype == "url":
        url = required_str(source, "url", p)
        if not url.startswith(("http://", "https://")):
            raise bad(f"{p}.url must be an http(s) URL", f"{p}.url")
    else:
        url = _data_url(source, p)
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: JSON, param: str) -> list[JSON]:
    source, stype = _source(block, param, ("base64", "text", "content"))
    p = f"{param}.source"
    if stype == "text":
        return [{"type": "text", "text": required_str(source, "data", p)}]
    if stype == "content":
        inner = required(source, "content", p)
        if isinstance(inner, str):
            return [{"type": "text", "text": inner}]
        expect(inner, list, f"{p}.content", "a string or an array of content blocks")
        return [part for k, b in enumerate(inner) for part in _nested(b, f"{p}.content.{k}", ("text", "image"))]
    title = block.get("title")
    filename = title if isinstance(title, str) and title else DEFAULT_FILENAME
    return [{"type": "file", "file": {"file_data": _data_url(source, p), "filename": filename}}]


def _nested(block: Any, param: str, allowed: tuple[str, ...]) -> list[JSON]:
    t = block_type(block, param)
    if t not in allowed:
        raise bad(f"{param}.type must be one of {list(allowed)} here, got {t!r}", f"{param}.type", "unsupported_value")
    return _media_part(t, block, param)


def _data_url(source: JSON, param: str) -> str:
    media_type = required_str(source, "media_type", param, empty=False)
    data = required_str(source, "data", param, empty=False)
    return f"data:{media_type};base64,{data}"


def _tool_result(block: JSON, param: str) -> tuple[JSON, list[JSON]]:
    """A ``tool_result`` -> (the tool message, image/document parts for a following user message)."""
    tool_use_id = required_str(block, "tool_use_id", param, empty=False)
    is_error = block.get("is_error")
    if is_error is not None:
        expect(is_error, bool, f"{param}.is_error", "a boolean")
    content = block.get("content")
    texts: list[JSON] = []
    attached: list[JSON] = []
    marker = cache_control(block, param)
    if isinstance(content, str):
        texts.append({"type": "text", "text": content})
    elif content is not None:
        expect(content, list, f"{param}.content", "a string or an array of content blocks")
        for k, inner in enumerate(content):
            for part in _nested(inner, f"{param}.content.{k}", ("text", "image", "document")):
                if part["type"] == "text":
                    # a tool message's text carries no marker of its own: the message does
                    marker = part.pop("cache_control", None) or marker
                    texts.append(part)
                else:
                    attached.append(part)
    if is_error:
        texts = [{"type": "text", "text": ERROR_PREFIX + (str(texts[0]["text"]) if texts else "")}, *texts[1:]]
    value: str | list[JSON] = texts if len(texts) > 1 else (str(texts[0]["text"]) if texts else "")
    message: JSON = {"role": "tool", "tool_call_id": tool_use_id, "content": value}
    if marker is not None:
        message["cache_control"] = marker
    return message, attached


def _tool_call(block: JSON, param: str) -> JSON:
    call_id = required_str(block, "id", param, empty=False)
    name = required_str(block, "name", param, empty=False)
    args = required(block, "input", param)
    expect(args, dict, f"{param}.input", "an object")
    arguments = orjson.dumps(args).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _thinking(t: str, block: JSON, param: str) -> JSON:
    if t == "thinking":
        required_str(block, "thinking", param)
        required_str(block, "signature", param)
    else:
        required_str(block, "data", param)
    return dict(block)
