"""Canonical messages -> Anthropic ``system`` blocks and ``messages`` turns.

- ``system`` and ``developer`` messages, wherever they appear, are hoisted into
  the top-level ``system``. Most Claude models reject a system role inside
  ``messages``, so a mid-conversation instruction loses its position.
- Consecutive turns of one role are merged; ``tool`` messages become
  ``tool_result`` blocks of a user turn (so a run of them shares one turn, and
  a user message that follows lands after the results, as Anthropic requires).
- Assistant turns: the message's signed ``thinking_blocks`` first
  (:mod:`gateway.providers.anthropic_reasoning`), then its content, then its
  ``tool_calls`` as ``tool_use`` blocks (``arguments`` parsed into ``input``).
- Parts: ``text`` (and ``refusal``), ``image_url`` (``data:`` URLs as base64
  sources, http(s) as url sources) and ``file`` with base64 ``file_data`` (a
  ``document`` block); anything else is an InvalidRequest. Empty texts are
  left out (Anthropic refuses empty text blocks).
- ``cache_control`` on parts and messages: :mod:`gateway.providers.anthropic_caching`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.errors import InvalidRequest
from gateway.providers.anthropic_caching import mark, mark_last
from gateway.providers.anthropic_reasoning import replay_blocks


def conversation(messages: Any) -> tuple[list[JSON], list[JSON]]:
    """Canonical messages -> (system text blocks, alternating Anthropic turns)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages", code="invalid_value")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest("each message must be an object", param=param, code="invalid_type")
        if msg.get("role") in ("system", "developer"):
            blocks = _system_blocks(msg.get("content"), f"{param}.content")
            mark_last(blocks, msg, param)
            system.extend(blocks)
            continue
        role, blocks = _turn(msg, param)
        mark_last(blocks, msg, param)
        if not blocks:
            continue  # Anthropic refuses empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def system_value(blocks: list[JSON]) -> str | list[JSON]:
    """The ``system`` field: a string for one plain text block, else the blocks."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        return str(blocks[0]["text"])
    return blocks


def _turn(msg: JSON, param: str) -> tuple[str, list[JSON]]:
    role = msg.get("role")
    if role == "user":
        return "user", _content_blocks(msg.get("content"), f"{param}.content")
    if role == "tool":
        return "user", [_tool_result(msg, param)]
    if role == "assistant":
        blocks = replay_blocks(msg.get("thinking_blocks"), f"{param}.thinking_blocks")
        blocks += _content_blocks(msg.get("content"), f"{param}.content")
        return "assistant", blocks + _tool_uses(msg.get("tool_calls"), f"{param}.tool_calls")
    message = f"message role {role!r} is not supported by anthropic"
    raise InvalidRequest(message, param=f"{param}.role", code="unsupported_value")


def _system_blocks(content: Any, param: str) -> list[JSON]:
    blocks = _content_blocks(content, param)
    if any(b["type"] != "text" for b in blocks):
        raise InvalidRequest(
            "system messages may only contain text for anthropic", param=param, code="unsupported_value"
        )
    return blocks


def _content_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("message content must be a string or a list of parts", param=param, code="invalid_type")
    blocks = (_part_block(part, f"{param}[{j}]") for j, part in enumerate(content))
    return [b for b in blocks if b is not None]


def _part_block(part: Any, param: str) -> JSON | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequest(f"a {kind} part needs a string {kind!r}", param=param, code="invalid_type")
        if not text:
            return None  # Anthropic refuses empty text blocks
        return mark({"type": "text", "text": text}, part, param)
    if kind == "image_url":
        return mark(_image_block(part.get("image_url"), f"{param}.image_url"), part, param)
    if kind == "file":
        return mark(_document_block(part.get("file"), f"{param}.file"), part, param)
    message = f"content part type {kind!r} is not supported by anthropic"
    raise InvalidRequest(message, param=param, code="unsupported_value")


def _image_block(image: Any, param: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("image_url needs a url", param=param, code="missing_required_parameter")
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url must be an http(s) or a base64 data: URL", param=param, code="invalid_value")


def _document_block(file: Any, param: str) -> JSON:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        message = "anthropic accepts files only as base64 data: URLs in file_data"
        raise InvalidRequest(message, param=param, code="unsupported_value")
    media_type, data = _data_url(data_url, f"{param}.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<media type>[;...];base64,<data>`` -> (media type, data)."""
    header, sep, data = url[5:].partition(",")
    media_type, *options = header.split(";")
    if not sep or not media_type or "base64" not in options or not data:
        message = "data: URLs must be base64 encoded (data:<type>;base64,...)"
        raise InvalidRequest(message, param=param, code="invalid_value")
    return media_type, data


def _tool_result(msg: JSON, param: str) -> JSON:
    tool_use_id = msg.get("tool_call_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        message = "a tool message needs a tool_call_id"
        raise InvalidRequest(message, param=f"{param}.tool_call_id", code="missing_required_parameter")
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
        raise InvalidRequest("tool_calls must be a list", param=param, code="invalid_type")
    return [_tool_use(call, f"{param}[{j}]") for j, call in enumerate(tool_calls)]


def _tool_use(call: Any, param: str) -> JSON:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        message = "a tool call needs function.name"
        raise InvalidRequest(message, param=f"{param}.function", code="missing_required_parameter")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool call needs an id", param=f"{param}.id", code="missing_required_parameter")
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
        raise InvalidRequest("tool call arguments must be a JSON object string", param=param, code="invalid_value")
    return parsed
