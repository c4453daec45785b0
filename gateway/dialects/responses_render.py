"""Canonical answers rendered as OpenAI ``Response`` objects.

:func:`response_object` builds the envelope the way the API does: the answer's
status, output and usage, and the request's parameters echoed with the API's
defaults (``temperature`` 1, ``tool_choice`` auto, ``store`` true, ...). It
serves both the non-stream answer (:func:`render_response`) and the lifecycle
events of a stream. Output items get gateway ids (``rs_``/``msg_``/``fc_`` + hex); a
function call's ``call_id`` is the canonical tool-call id, so the client's
``function_call_output`` finds its way back to the provider's call.

A canonical answer's reasoning (``reasoning_content``, ``thinking_blocks``) becomes a
``reasoning`` item before the others (gateway/dialects/responses_reasoning.py).

Statuses: finish reason ``length`` -> ``incomplete`` with reason
``max_output_tokens``, ``content_filter`` -> ``incomplete`` with reason
``content_filter``; anything else -> ``completed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from gateway.canonical import JSON, message_text
from gateway.dialects.responses_reasoning import encode_blocks, message_reasoning, reasoning_item, wants_encrypted

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """A fresh item id in OpenAI's style (prefix + 48 hex digits), from the system's random
    source: as cheap here as ``random`` formatted to hex (0.36 against 0.41 µs), and no
    client can learn from the ids it sees what the next ones will be."""
    return prefix + os.urandom(24).hex()


def response_id() -> str:
    """A fresh response id: ``resp_`` + 48 hex digits, the first 16 the time in ns (as the
    API's ids open with the time, so do ours: a store files them in order, the cheap way
    into an index) and 32 from the system's random source (see :func:`new_id`)."""
    return f"resp_{time.time_ns():016x}{os.urandom(16).hex()}"


def status_of(finish_reason: Any) -> tuple[str, str | None]:
    """(response status, incomplete reason) for a canonical finish reason."""
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", reason) if reason else ("completed", None)


def responses_usage(usage: Any) -> JSON | None:
    """Canonical usage -> the Responses ``usage`` object (None when unknown).
    The details the API always sends (cached, cache-write and reasoning tokens)
    are 0 when the upstream did not report them."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    cached = written = reasoning = 0
    if isinstance(prompt_details, dict):
        cached = _count(prompt_details.get("cached_tokens"))
        written = _count(prompt_details.get("cache_write_tokens"))
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, dict):
        reasoning = _count(completion_details.get("reasoning_tokens"))
    total = usage.get("total_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def _count(value: Any) -> int:
    return value if type(value) is int else 0


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


_ECHOED: JSON = {
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": None,
    "model": None,
    "output": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": None,
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": None,
    "tool_choice": "auto",
    "tools": None,
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": None,
    "user": None,
}
"""A ``Response``'s fields after ``status``, in the API's order, with the defaults it echoes
for a request field left out or null (``metadata``, ``tools``, ``reasoning`` and ``text`` are
filled per answer)."""
_FROM_BODY = frozenset(
    name
    for name in _ECHOED
    if name not in ("background", "error", "incomplete_details", "model", "output", "reasoning", "text", "usage")
)
"""The request fields a ``Response`` echoes as they came (when not null)."""
_TEMPLATE: JSON = {"id": None, "object": "response", "created_at": None, "status": None, **_ECHOED}
"""A ``Response``'s fields in order, with :data:`_ECHOED`'s defaults: copied per answer, then filled."""


def response_object(
    body: JSON,
    *,
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[JSON],
    usage: JSON | None,
    incomplete_reason: str | None = None,
    error: JSON | None = None,
) -> JSON:
    """A ``Response`` with the request's parameters echoed as the API does: the defaults
    of :data:`_ECHOED`, overlaid with the request's own (non-null) values. Only the fields
    the request carries are looked at (a body holds a handful of the two dozen)."""
    response = _TEMPLATE.copy()  # every field in the API's order; assignments keep it
    response["id"] = response_id
    response["created_at"] = created_at
    response["status"] = status
    for name in body.keys() & _FROM_BODY:
        value = body[name]
        if value is not None:
            response[name] = value
    reasoning = body.get("reasoning")
    text = body.get("text")
    if error is not None:
        response["error"] = error
    if incomplete_reason:
        response["incomplete_details"] = {"reason": incomplete_reason}
    if response["metadata"] is None:
        response["metadata"] = {}
    response["model"] = model
    response["output"] = output
    if isinstance(reasoning, dict):
        response["reasoning"] = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    else:
        response["reasoning"] = {"effort": None, "summary": None}
    fmt = verbosity = None
    if isinstance(text, dict):
        fmt, verbosity = text.get("format"), text.get("verbosity")
    response["text"] = {
        "format": {"type": "text"} if fmt is None else fmt,
        "verbosity": "medium" if verbosity is None else verbosity,
    }
    if response["tools"] is None:
        response["tools"] = []
    response["usage"] = usage
    return response


def text_part(text: str) -> JSON:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def refusal_part(refusal: str) -> JSON:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[JSON], status: str) -> JSON:
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def render_response(completion: JSON, *, response_id: str, model: str, body: JSON, created_at: int) -> JSON:
    """A canonical ``chat.completion`` -> the ``Response`` object for ``body``."""
    choices = completion.get("choices") or [{}]
    choice = _object(choices[0])
    message = _object(choice.get("message"))
    status, reason = status_of(choice.get("finish_reason"))
    output: list[JSON] = []
    reasoning, blocks = message_reasoning(message)
    if reasoning or blocks:
        output.append(reasoning_item(new_id("rs_"), reasoning, blocks, encrypted=wants_encrypted(body)))
    content: list[JSON] = []
    text = message_text(message)
    if text:
        content.append(text_part(text))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append(refusal_part(message["refusal"]))
    if content:
        output.append(message_item(new_id("msg_"), content, status))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        call_id = call.get("id") or new_id("call_")
        output.append(call_item(new_id("fc_"), call_id, fn.get("name", ""), fn.get("arguments") or "", "completed"))
    return response_object(
        body,
        response_id=response_id,
        model=model,
        created_at=created_at,
        status=status,
        output=output,
        usage=responses_usage(completion.get("usage")),
        incomplete_reason=reason,
    )


def output_items(response: JSON, blocks: Mapping[str, list[JSON]] | None = None) -> list[JSON]:
    """The items of a ``Response`` a continuation replays (for the store): its output,
    less reasoning items without ``encrypted_content`` (a stateless upstream cannot
    resolve them). ``blocks`` (reasoning item id -> thinking blocks: :func:`reasoning_blocks`,
    ``ResponsesStream.reasoning_blocks``) gives the gateway's reasoning items their
    ``encrypted_content`` when the client did not ask for it, so the store always has it."""
    output = response.get("output")
    if not isinstance(output, list):
        return []
    items: list[JSON] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") != "reasoning" or item.get("encrypted_content"):
            items.append(item)
        elif found := (blocks or {}).get(item.get("id", "")):
            items.append({**item, "encrypted_content": encode_blocks(found)})
    return items


def reasoning_blocks(response: JSON, completion: JSON) -> dict[str, list[JSON]]:
    """Reasoning item id -> thinking blocks of a ``Response`` rendered from ``completion``
    (:func:`render_response`), for :func:`output_items`."""
    choices = completion.get("choices") or [{}]
    _, blocks = message_reasoning(_object(_object(choices[0]).get("message")))
    output = response.get("output")
    first = output[0] if isinstance(output, list) and output else None
    if not blocks or not isinstance(first, dict) or first.get("type") != "reasoning":
        return {}
    return {str(first.get("id")): blocks}


def rewrite(upstream_response: JSON, response_id: str, *, body: JSON | None = None) -> JSON:
    """A Responses upstream's ``Response`` under the gateway's id (a new dict).
    With the client's ``body``, ``store`` and ``previous_response_id`` are echoed
    as the client sent them (the upstream was asked statelessly)."""
    out = {**upstream_response, "id": response_id}
    if body is not None:
        out["store"] = _or(body.get("store"), True)
        out["previous_response_id"] = body.get("previous_response_id")
    return out
