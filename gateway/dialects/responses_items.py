"""Input items of the OpenAI Responses dialect: normalised, checked, and turned
into canonical chat messages.

:func:`input_items` gives a request's ``input`` as a list of items, the form the
gateway stores and replays: a string becomes one user message, an item written
as ``{"role", "content"}`` gets ``type: "message"``; every item is checked and
returned as a new dict (the client's body is not modified).

Accepted item types and their canonical form (:func:`append_item`):

- ``message`` (roles user, assistant, system, developer; content a string or
  parts) -> a message of that role. Parts: ``input_text``/``output_text`` ->
  ``text``; ``refusal`` -> ``refusal``; ``input_image`` with ``image_url`` ->
  ``image_url`` (``detail`` kept); ``input_file`` with ``file_data`` -> ``file``.
  User, system and developer messages take ``input_*`` parts, assistant
  messages ``output_text`` and ``refusal`` (as the API itself requires). An
  assistant message whose parts are all text becomes one string.
- ``function_call`` -> a ``tool_calls`` entry (id = ``call_id``) of an assistant
  message: consecutive calls share one, and a call directly after an assistant
  message joins it.
- ``function_call_output`` -> a ``tool`` message (output a string, or parts:
  all-text parts are joined into one string).
- ``reasoning`` whose ``encrypted_content`` the gateway made (``gwr1.``,
  gateway/dialects/responses_reasoning.py) -> ``thinking_blocks`` (decoded) and
  ``reasoning_content`` (the summary texts, joined by a blank line) of the
  assistant turn it opens: the following ``message`` and ``function_call`` items
  join that message. Reasoning items a gateway answer ends on (no answer after
  them) are dropped. Any other ``reasoning`` item -> nothing: its encrypted
  content only means something to OpenAI (see ``apply_native`` for a Responses
  upstream, which gets it back).

Refused (InvalidRequest, ``param`` naming the field): ``file_id`` images and
files and ``file_url`` files (the gateway has no file store and does not fetch
URLs for the client), ``item_reference`` (items are stored by the gateway, not
referenced), and items of built-in tools and every other type.
"""

from __future__ import annotations

from typing import Any

from gateway.canonical import JSON
from gateway.dialects.checks import bad, expect, required
from gateway.dialects.responses_reasoning import decode_blocks, is_gateway_content, summary_texts
from gateway.errors import Untranslatable

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
INPUT_PARTS = frozenset({"input_text", "input_image", "input_file"})
ASSISTANT_PARTS = frozenset({"output_text", "refusal"})
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")


def input_items(body: JSON, *, lenient: bool = False) -> list[JSON]:
    """The request's ``input`` as a list of checked items (new dicts). ``lenient`` (the
    same-format path, a Responses upstream): items no translation can carry (built-in
    tools' calls, item references) are kept as they are instead of refused."""
    raw = body.get("input")
    if raw is None:
        raise bad("you must provide an input parameter", "input", "missing_required_parameter")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    expect(raw, list, "input", "a string or an array of input items")
    items = []
    for i, item in enumerate(raw):
        try:
            items.append(check_item(item, f"input.{i}"))
        except Untranslatable:
            if not lenient:
                raise
            items.append(dict(item))
    return items


def check_item(item: Any, param: str) -> JSON:
    """One input item checked, as a new dict with its ``type``."""
    expect(item, dict, param, "an object")
    kind = item.get("type")
    if kind is None:
        if "role" not in item:
            raise bad(f"{param}.type is required", f"{param}.type", "missing_required_parameter")
        kind = "message"
    expect(kind, str, f"{param}.type", "a string")
    out = {**item, "type": kind}
    if kind == "message":
        _check_message(out, param)
    elif kind == "function_call":
        _check_call(out, param)
    elif kind == "function_call_output":
        _check_call_output(out, param)
    elif kind == "reasoning":
        _check_reasoning(out, param)
    elif kind == "item_reference":
        raise bad(
            "item_reference items are not supported: send the items themselves, or previous_response_id",
            f"{param}.type",
            "unsupported_value",
        )
    else:
        raise Untranslatable(
            f"input items of type {kind!r} cannot be translated (supported: {', '.join(ITEM_TYPES)}); "
            "built-in tools work only with a deployment speaking the Responses API (api: responses)",
            param=f"{param}.type",
        )
    return out


def _check_message(item: JSON, param: str) -> None:
    role = required(item, "role", param)
    if role not in MESSAGE_ROLES:
        raise bad(f"{param}.role must be one of {', '.join(MESSAGE_ROLES)}, got {role!r}", f"{param}.role")
    content = required(item, "content", param)
    if isinstance(content, str):
        return
    expect(content, list, f"{param}.content", "a string or an array of content parts")
    allowed = ASSISTANT_PARTS if role == "assistant" else INPUT_PARTS
    for j, part in enumerate(content):
        check_part(part, f"{param}.content.{j}", allowed)


def check_part(part: Any, param: str, allowed: frozenset[str]) -> None:
    expect(part, dict, param, "an object")
    kind = part.get("type")
    if kind not in allowed:
        raise bad(
            f"{param}.type must be one of {', '.join(sorted(allowed))}, got {kind!r}",
            f"{param}.type",
            "unsupported_value" if isinstance(kind, str) else "invalid_value",
        )
    if kind in ("input_text", "output_text"):
        expect(part.get("text"), str, f"{param}.text", "a string")
    elif kind == "refusal":
        expect(part.get("refusal"), str, f"{param}.refusal", "a string")
    elif kind == "input_image":
        _check_image(part, param)
    else:
        _check_file(part, param)


def _check_image(part: JSON, param: str) -> None:
    if part.get("file_id") is not None:
        raise bad("images given by file_id are not supported: send image_url", f"{param}.file_id", "unsupported_value")
    url = required(part, "image_url", param)
    expect(url, str, f"{param}.image_url", "a string")
    if not url.startswith(("http://", "https://", "data:")):
        raise bad(f"{param}.image_url must be an http(s) or data: URL", f"{param}.image_url")


def _check_file(part: JSON, param: str) -> None:
    for key in ("file_id", "file_url"):
        if part.get(key) is not None:
            raise bad(f"files given by {key} are not supported: send file_data", f"{param}.{key}", "unsupported_value")
    expect(required(part, "file_data", param), str, f"{param}.file_data", "a string")
    if part.get("filename") is not None:
        expect(part["filename"], str, f"{param}.filename", "a string")


def _check_call(item: JSON, param: str) -> None:
    for key in ("call_id", "name", "arguments"):
        expect(required(item, key, param), str, f"{param}.{key}", "a string")


def _check_call_output(item: JSON, param: str) -> None:
    expect(required(item, "call_id", param), str, f"{param}.call_id", "a string")
    output = required(item, "output", param)
    if isinstance(output, str):
        return
    expect(output, list, f"{param}.output", "a string or an array of content parts")
    for j, part in enumerate(output):
        check_part(part, f"{param}.output.{j}", INPUT_PARTS)


def _check_reasoning(item: JSON, param: str) -> None:
    summary = item.get("summary")
    if summary is not None:
        expect(summary, list, f"{param}.summary", "an array")
        for j, part in enumerate(summary):
            where = f"{param}.summary.{j}"
            expect(part, dict, where, "an object")
            if part.get("type") != "summary_text":
                raise bad(f"{where}.type must be summary_text, got {part.get('type')!r}", f"{where}.type")
            expect(part.get("text"), str, f"{where}.text", "a string")
    encrypted = item.get("encrypted_content")
    if encrypted is not None:
        expect(encrypted, str, f"{param}.encrypted_content", "a string")
        if is_gateway_content(encrypted):
            decode_blocks(encrypted, f"{param}.encrypted_content")


def append_item(messages: list[JSON], item: JSON) -> None:
    """Add a checked item to a canonical conversation."""
    kind = item["type"]
    if kind == "message":
        message = _message(item)
        last = messages[-1] if messages else None
        if message["role"] == "assistant" and last is not None and _reasoning_only(last):
            last["content"] = message["content"]  # the answer its reasoning item opened
        else:
            messages.append(message)
    elif kind == "function_call":
        call = {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item["output"]
        content = output if isinstance(output, str) else _joined([_part(p) for p in output])
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
    elif kind == "reasoning" and is_gateway_content(item.get("encrypted_content")):
        _append_reasoning(messages, item)


def _append_reasoning(messages: list[JSON], item: JSON) -> None:
    """A gateway reasoning item -> ``thinking_blocks`` and ``reasoning_content`` of the
    assistant turn it belongs to (the last message when that is the assistant's, else
    a new one that the following message or function call items fill)."""
    blocks = decode_blocks(item["encrypted_content"], "encrypted_content")
    text = "\n\n".join(summary_texts(item))
    if not blocks and not text:
        return
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant":
        last = {"role": "assistant", "content": None}
        messages.append(last)
    if blocks:
        last["thinking_blocks"] = [*last.get("thinking_blocks", ()), *blocks]
    if text:
        before = last.get("reasoning_content")
        last["reasoning_content"] = f"{before}\n\n{text}" if before else text


def _reasoning_only(message: JSON) -> bool:
    """An assistant message that holds only a reasoning item's content, so far."""
    return (
        message["role"] == "assistant"
        and message.get("content") is None
        and not message.get("tool_calls")
        and ("thinking_blocks" in message or "reasoning_content" in message)
    )


def drop_reasoning_only(messages: list[JSON]) -> list[JSON]:
    """``messages`` less assistant messages that hold nothing but reasoning (a reasoning
    item no answer followed): no provider takes an empty assistant turn."""
    for message in messages:
        if _reasoning_only(message):
            return [m for m in messages if not _reasoning_only(m)]
    return messages


def _message(item: JSON) -> JSON:
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [_part(p) for p in content]
    if role == "assistant":
        joined = _joined(parts)
        return {"role": role, "content": joined if joined != "" else None}
    return {"role": role, "content": parts}


def _joined(parts: list[JSON]) -> str | list[JSON]:
    """All-text parts as one string; anything else stays a list of parts."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _part(part: JSON) -> JSON:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "input_image":
        image: JSON = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    file: JSON = {"file_data": part["file_data"]}
    if part.get("filename") is not None:
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}
