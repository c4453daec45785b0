"""Canonical answers -> Gemini response pieces, shared by whole responses and streams.

- ``finishReason``: stop and tool_calls -> STOP, length -> MAX_TOKENS, content_filter
  -> SAFETY, none given -> STOP, anything else -> OTHER; a tool call whose arguments
  are not a JSON object is left out and the candidate ends MALFORMED_FUNCTION_CALL
  (what Gemini says when its model writes such a call).
- ``reasoning_content`` -> one ``{"text", "thought": true}`` part before the answer's
  parts (no ``thoughtSignature``: the canonical answer carries none).
- ``functionCall`` parts carry ``name``, ``args`` (the parsed arguments) and the
  canonical ``id``, which the client sends back on its ``functionResponse``.
- ``usageMetadata``: promptTokenCount, candidatesTokenCount (completion minus
  reasoning: Gemini counts thoughts apart), totalTokenCount, and
  cachedContentTokenCount / thoughtsTokenCount when the upstream reported them.
- Errors: Google's envelope ``{"error": {code, message, status, details}}``; see
  :func:`error_envelope`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.errors import GatewayError

MALFORMED = "MALFORMED_FUNCTION_CALL"
_FINISH = {"stop": "STOP", "tool_calls": "STOP", "function_call": "STOP", "length": "MAX_TOKENS"}
_FINISH_FILTER = "SAFETY"
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RPC = "type.googleapis.com/google.rpc."


def finish_reason(reason: Any, malformed: bool = False) -> str:
    if malformed:
        return MALFORMED
    if reason is None:
        return "STOP"
    if reason == "content_filter":
        return _FINISH_FILTER
    return _FINISH.get(reason, "OTHER") if isinstance(reason, str) else "OTHER"


def call_part(call: Any) -> JSON | None:
    """A canonical tool call -> a ``functionCall`` part; None when its arguments
    are not a JSON object."""
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(fn, dict) or not isinstance(name, str) or not name:
        return None
    args = parse_arguments(fn.get("arguments"))
    if args is None:
        return None
    function_call: JSON = {"name": name, "args": args}
    call_id = call.get("id")
    if isinstance(call_id, str) and call_id:
        function_call["id"] = call_id
    return {"functionCall": function_call}


def thought_part(text: str) -> JSON:
    """Reasoning text as Gemini writes it: a text part marked ``thought``."""
    return {"text": text, "thought": True}


def parse_arguments(raw: Any) -> JSON | None:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        return None
    return args if isinstance(args, dict) else None


def content_text(content: Any) -> str:
    """Canonical message content (a string or parts) -> its text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def candidate(choice: JSON, position: int) -> JSON:
    """One canonical choice of a ``chat.completion`` -> a Gemini candidate."""
    message = as_dict(choice.get("message"))
    parts: list[JSON] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(thought_part(reasoning))
    text = content_text(message.get("content"))
    if text:
        parts.append({"text": text})
    rendered = [call_part(c) for c in as_list(message.get("tool_calls"))]
    parts.extend(p for p in rendered if p is not None)
    index = choice.get("index")
    out: JSON = {
        "content": {"role": "model", "parts": parts or [{"text": ""}]},
        "finishReason": finish_reason(choice.get("finish_reason"), None in rendered),
        "index": index if isinstance(index, int) else position,
    }
    logprobs = logprobs_result(choice.get("logprobs"))
    if logprobs is not None:
        out.update(logprobs)
    return out


def logprobs_result(logprobs: Any) -> JSON | None:
    """OpenAI ``logprobs.content`` -> ``logprobsResult`` and ``avgLogprobs``."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    tokens = [t for t in content if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)]
    if not tokens:
        return None
    chosen = [_token(t) for t in tokens]
    top = [{"candidates": [_token(c) for c in t.get("top_logprobs") or [] if isinstance(c, dict)]} for t in tokens]
    return {
        "avgLogprobs": sum(t["logprob"] for t in tokens) / len(tokens),
        "logprobsResult": {"chosenCandidates": chosen, "topCandidates": top},
    }


def _token(item: JSON) -> JSON:
    return {"token": str(item.get("token", "")), "logProbability": item.get("logprob")}


def usage_metadata(usage: Any) -> JSON | None:
    """Canonical usage -> ``usageMetadata`` (None without usage)."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
    total = usage.get("total_tokens")
    meta: JSON = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(0, completion - (reasoning or 0)),
        "totalTokenCount": total if isinstance(total, int) else prompt + completion,
    }
    if cached is not None:
        meta["cachedContentTokenCount"] = cached
    if reasoning is not None:
        meta["thoughtsTokenCount"] = reasoning
    return meta


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _detail(usage: JSON, block: str, key: str) -> int | None:
    details = usage.get(block)
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def status_name(status: int) -> str:
    """The gRPC status name Google puts beside an HTTP status."""
    return _STATUS_NAMES.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")


def error_envelope(err: GatewayError) -> JSON:
    """``err`` in Google's envelope. ``details`` carry a ``google.rpc.ErrorInfo``
    (``reason``: the gateway's code upper-cased; ``API_KEY_INVALID`` for a bad key, as
    Google says it), a ``google.rpc.BadRequest`` naming the field when there is one,
    and a ``google.rpc.RetryInfo`` when the client should wait."""
    status = err.http_status
    reason = "API_KEY_INVALID" if err.code == "invalid_api_key" else err.code.upper()
    details: list[JSON] = [
        {"@type": _RPC + "ErrorInfo", "reason": reason, "domain": "gateway", "metadata": {"code": err.code}}
    ]
    if err.param:
        violation = {"field": err.param, "description": err.message}
        details.append({"@type": _RPC + "BadRequest", "fieldViolations": [violation]})
    retry_after = err.headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        details.append({"@type": _RPC + "RetryInfo", "retryDelay": f"{retry_after}s"})
    return {"error": {"code": status, "message": err.message, "status": status_name(status), "details": details}}
