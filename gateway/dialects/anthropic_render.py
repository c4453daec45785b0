"""Canonical answers -> Anthropic Messages API shapes: the Message, errors, the
model list and the count_tokens answer. Part of the Anthropic ingress dialect
(:mod:`gateway.dialects.anthropic`); the stream encoder shares its helpers.

- ``id``: an Anthropic id (``msg_...``) is kept, an id that is hex after its
  prefix (``chatcmpl-``...) gives ``msg_<hex>``, any other id a stable hash of it.
- ``content``: the canonical message's ``thinking_blocks`` first (verbatim); a
  message without them but with ``reasoning_content`` gets one ``thinking`` block
  of that text with the signature ``""`` (such a block cannot be replayed to
  Anthropic: the Anthropic provider drops unsigned thinking on the way there); then
  the text (left out when empty and there are tool calls), then a ``tool_use``
  block per tool call.
- ``stop_reason``: stop -> end_turn (tool_use when tool calls came with it),
  length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal. The
  canonical answer does not say whether a stop sequence matched, so
  ``stop_sequence`` is always null.
- ``usage``: cache reads (``prompt_tokens_details.cached_tokens``) ->
  ``cache_read_input_tokens``, cache writes (``cache_write_tokens``) ->
  ``cache_creation_input_tokens`` and, in a Message, ``cache_creation``
  (``ephemeral_1h_input_tokens`` = ``cache_write_1h_tokens``, the rest 5-minute);
  ``input_tokens`` is the prompt minus both, as Anthropic counts it; reasoning
  tokens -> ``output_tokens_details.thinking_tokens`` (they stay in ``output_tokens``).
- Errors: ``{"type": "error", "error": {type, message}}`` with the status the
  anthropic SDK maps to its exception classes; an upstream overload (529, or 503
  saying so) stays 529 ``overloaded_error`` so the SDK raises OverloadedError.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from gateway.canonical import JSON, message_text
from gateway.errors import AllDeploymentsFailed, GatewayError, UpstreamBadResponse, UpstreamError

STOP_REASONS: Mapping[str, str] = MappingProxyType(
    {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
)
ERROR_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
)
OVERLOADED = 529
THINKING_TYPES = ("thinking", "redacted_thinking")
UNSIGNED = ""
"""The signature of a thinking block made from another provider's reasoning (none is invented)."""
_HEX = re.compile(r"[0-9a-fA-F]{8,}")


# --- pieces the stream shares ---------------------------------------------


def message_id(completion_id: Any) -> str:
    """An Anthropic message id for a canonical completion id (see the module docstring)."""
    raw = completion_id if isinstance(completion_id, str) else ""
    if raw.startswith("msg_"):
        return raw
    tail = raw.rsplit("-", 1)[-1]
    if _HEX.fullmatch(tail):
        return "msg_" + tail.lower()
    if raw:
        # BLAKE2 is CPython's own code: the OpenSSL SHA-256 took 3 µs more a call in the serving
        # process (its EVP machinery cold between requests), on every translated answer.
        return "msg_" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()
    return "msg_" + uuid.uuid4().hex


def stop_reason(finish_reason: Any, has_tool_calls: bool) -> str:
    reason = STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    return "tool_use" if has_tool_calls and reason == "end_turn" else reason


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def anthropic_usage(usage: Any, *, breakdown: bool = False) -> JSON:
    """Canonical usage (or None) -> Anthropic's counts; ``breakdown`` adds ``cache_creation``
    (a Message has it; a stream's ``message_delta`` does not)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _count(details.get("cached_tokens"))
    created = _count(details.get("cache_write_tokens"))
    out: JSON = {
        "input_tokens": max(0, _count(usage.get("prompt_tokens")) - cached - created),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
    }
    if breakdown:
        hour = min(created, _count(details.get("cache_write_1h_tokens")))
        out["cache_creation"] = {"ephemeral_5m_input_tokens": created - hour, "ephemeral_1h_input_tokens": hour}
    reasoning = usage.get("completion_tokens_details")
    thinking = reasoning.get("reasoning_tokens") if isinstance(reasoning, dict) else None
    if type(thinking) is int:
        out["output_tokens_details"] = {"thinking_tokens": thinking if thinking > 0 else 0}
    return out


def error_status(err: GatewayError) -> tuple[int, str]:
    """(HTTP status, Anthropic error type) of ``err``."""
    if _overloaded(err):
        return OVERLOADED, ERROR_TYPES[OVERLOADED]
    status = err.http_status
    if status in ERROR_TYPES:
        return status, ERROR_TYPES[status]
    return status, "invalid_request_error" if status < 500 else "api_error"


def _overloaded(err: GatewayError) -> bool:
    cause = err.last if isinstance(err, AllDeploymentsFailed) else err
    if not isinstance(cause, UpstreamError):
        return False
    if cause.upstream_status == OVERLOADED:
        return True
    return cause.upstream_status == 503 and ("overload" in cause.code.lower() or "overload" in cause.message.lower())


def error_body(err: GatewayError) -> JSON:
    """Anthropic's envelope has no ``param``: the field goes first in the message, as
    Anthropic writes its own (``messages.0.content.0.type: ...``)."""
    message = err.message
    if err.param and err.param not in message:
        message = f"{err.param}: {message}"
    return {"type": "error", "error": {"type": error_status(err)[1], "message": message}}


# --- public renderers --------------------------------------------------------


def render_error(err: GatewayError) -> tuple[int, bytes]:
    """(HTTP status, body) of ``err`` in Anthropic's error envelope."""
    return error_status(err)[0], orjson.dumps(error_body(err))


def render_message(completion: JSON, model: str) -> JSON:
    """A canonical ``chat.completion`` -> an Anthropic Message for ``model``.
    Raises UpstreamBadResponse if it has no message, or a tool call whose
    arguments are not a JSON object."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise UpstreamBadResponse("the upstream's answer has no message to render")
    uses = [_tool_use(call) for call in message.get("tool_calls") or ()]
    content = thinking_content(message)
    text = message_text(message) or _refusal(message)
    if text or not uses:
        content.append({"type": "text", "text": text})
    content.extend(uses)
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(uses)),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage"), breakdown=True),
    }


def _refusal(message: JSON) -> str:
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def thinking_content(message: JSON) -> list[JSON]:
    """The thinking blocks a message opens with: its ``thinking_blocks`` verbatim, else one
    unsigned block of its ``reasoning_content``, else none."""
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list):
        kept = [dict(b) for b in blocks if isinstance(b, dict) and b.get("type") in THINKING_TYPES]
        if kept:
            return kept
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": UNSIGNED}]
    return []


def _tool_use(call: Any) -> JSON:
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    call_id = call.get("id") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(name, str) or not isinstance(call_id, str) or not call_id:
        raise UpstreamBadResponse("the upstream's answer has a tool call without an id or a function name")
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input(name, fn.get("arguments"))}


def tool_input(name: str, arguments: Any) -> JSON:
    """Tool-call ``arguments`` (a JSON string) -> the ``input`` object."""
    if arguments is None or arguments == "":
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamBadResponse(f"the upstream's tool call {name!r} has arguments that are not a JSON object")
    return parsed


def model_card(alias: str, created: int) -> JSON:
    """One entry of ``GET /v1/models`` (and ``GET /v1/models/{id}``)."""
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": alias, "display_name": alias, "created_at": stamp, "lifecycle": "active"}


def model_list(aliases: list[str], created: int) -> JSON:
    return {
        "data": [model_card(alias, created) for alias in aliases],
        "has_more": False,
        "first_id": aliases[0] if aliases else None,
        "last_id": aliases[-1] if aliases else None,
    }


def count_tokens_body(input_tokens: int, *, estimated: bool) -> JSON:
    """The ``/v1/messages/count_tokens`` answer; ``estimated`` marks a gateway estimate."""
    body: JSON = {"input_tokens": input_tokens}
    if estimated:
        body["estimated"] = True
    return body
