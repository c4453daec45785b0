"""Gemini's answers -> canonical: non-streamed responses
(:func:`completion_from_response`), streams (:class:`GeminiStreamDecoder`),
errors (:func:`gemini_error`) and what they share.

- Candidate parts: visible ``text``, ``thought: true`` text (the model's thought
  summaries: ``reasoning_content``, joined, or stream delta pieces; never mixed into
  ``content``) and whole ``functionCall`` parts, which become canonical tool calls. A
  ``thoughtSignature`` on a text part is dropped (Gemini does not require it back).
- ``logprobsResult`` -> the choice's ``logprobs`` (:mod:`gateway.providers.gemini_logprobs`).
- Tool-call ids: Gemini's calls usually carry no id, so one is generated. Gemini 3
  attaches a ``thoughtSignature`` to a call that must be sent back with it in
  later turns; the canonical model has no place for it, so it rides inside the
  id: ``call_<24 hex>`` plain, ``call_<24 hex>_ts_<signature>`` with the
  signature in unpadded URL-safe base64 (ids stay ``[A-Za-z0-9_-]``).
  :func:`tool_call_signature` reverses it when the client replays the call.
- ``finishReason`` and ``usageMetadata`` mapping, and the error envelope
  ``{"error": {code, message, status, details}}`` (HTTP answers and in-stream).
- :class:`GeminiStreamDecoder`: every SSE event is a whole
  ``GenerateContentResponse``; function calls arrive whole; a ``finishReason``
  ends the stream (there is no ``[DONE]``). Only candidate 0 is streamed.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from gateway.canonical import JSON, make_chunk, make_completion, make_usage
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.providers.base import SSEEvent, error_member, opaque_error, parse_event_json, parse_retry_after
from gateway.providers.gemini_logprobs import choice_logprobs

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

# gRPC status names Gemini puts in ``error.status`` -> HTTP status, for errors
# that arrive inside a 200 stream without a numeric code.
_STATUS_BY_NAME = MappingProxyType(
    {
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "CANCELLED": 499,
        "RESOURCE_EXHAUSTED": 429,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }
)

_TOOL_ID_RE = re.compile(r"call_[0-9a-f]{24}_ts_([A-Za-z0-9_-]+)")


# --- ids ---------------------------------------------------------------------


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def new_tool_call_id(signature: str | None = None) -> str:
    """A fresh tool-call id, carrying ``signature`` (a thoughtSignature) if given."""
    base = f"call_{secrets.token_hex(12)}"
    if not signature:
        return base
    urlsafe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return f"{base}_ts_{urlsafe}"


def tool_call_signature(tool_call_id: str) -> str | None:
    """The thoughtSignature encoded in an id from :func:`new_tool_call_id`, else None."""
    match = _TOOL_ID_RE.fullmatch(tool_call_id)
    if match is None:
        return None
    standard = match.group(1).replace("-", "+").replace("_", "/")
    return standard + "=" * (-len(standard) % 4)


# --- candidates ----------------------------------------------------------------


def candidate_parts(candidate: Any) -> list[JSON]:
    """The parts of a candidate's content (``[]`` when it has none)."""
    if not isinstance(candidate, dict):
        raise UpstreamBadResponse("gemini candidate is not an object")
    content = candidate.get("content")
    if content is None:
        return []
    parts = content.get("parts", []) if isinstance(content, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise UpstreamBadResponse("gemini candidate content has no parts list")
    return parts


def visible_text(part: JSON) -> str | None:
    """The text of a part the client should see (not a thought), else None."""
    text = part.get("text")
    if not isinstance(text, str) or part.get("thought"):
        return None
    return text


def thought_text(part: JSON) -> str | None:
    """The text of a thought part (``thought: true``), else None."""
    text = part.get("text")
    return text if isinstance(text, str) and part.get("thought") else None


def tool_call_from_part(part: JSON) -> JSON | None:
    """A canonical tool call for a ``functionCall`` part, else None."""
    call = part.get("functionCall")
    if call is None:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise UpstreamBadResponse("gemini functionCall part has no name")
    args = call.get("args") or {}
    signature = part.get("thoughtSignature")
    return {
        "id": new_tool_call_id(signature if isinstance(signature, str) else None),
        "type": "function",
        "function": {"name": call["name"], "arguments": orjson.dumps(args).decode()},
    }


def finish_reason(raw: str, has_tool_calls: bool) -> str:
    """Gemini ``finishReason`` -> canonical finish reason."""
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def completion_from_response(body: JSON, model: str) -> JSON:
    """A non-streamed ``GenerateContentResponse`` -> canonical ``chat.completion``
    (one choice per candidate)."""
    completion_id, model = response_identity(body, model)
    usage = gemini_usage(body.get("usageMetadata"))
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        if not blocked_prompt(body):
            raise UpstreamBadResponse("gemini response has no candidates")
        message: JSON = {"role": "assistant", "content": None}
        return make_completion(
            id=completion_id, model=model, message=message, finish_reason="content_filter", usage=usage
        )
    choices = [candidate_choice(candidate, i) for i, candidate in enumerate(candidates)]
    completion = make_completion(
        id=completion_id,
        model=model,
        message=choices[0]["message"],
        finish_reason=choices[0]["finish_reason"],
        usage=usage,
    )
    completion["choices"] = choices
    return completion


def response_identity(body: JSON, model: str) -> tuple[str, str]:
    """The completion id (``responseId`` or a fresh one) and model
    (``modelVersion`` or ``model``) of a response."""
    response_id = body.get("responseId")
    version = body.get("modelVersion")
    return (
        response_id if isinstance(response_id, str) and response_id else new_completion_id(),
        version if isinstance(version, str) and version else model,
    )


def candidate_choice(candidate: Any, i: int) -> JSON:
    """One candidate of a non-streamed response -> a canonical choice."""
    parts = candidate_parts(candidate)
    text = "".join(t for p in parts if (t := visible_text(p)) is not None)
    reasoning = "".join(t for p in parts if (t := thought_text(p)) is not None)
    calls = [c for p in parts if (c := tool_call_from_part(p)) is not None]
    message: JSON = {"role": "assistant", "content": (text or None) if calls else text}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    raw = candidate.get("finishReason")
    index = candidate.get("index", i)
    return {
        "index": index if isinstance(index, int) else i,
        "message": message,
        "finish_reason": finish_reason(raw if isinstance(raw, str) and raw else "STOP", bool(calls)),
        "logprobs": choice_logprobs(candidate),
    }


def blocked_prompt(body: JSON) -> bool:
    """True when Gemini refused the prompt itself (no candidates, a blockReason)."""
    feedback = body.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def gemini_usage(meta: Any) -> JSON | None:
    """``usageMetadata`` -> canonical usage. Thinking tokens count as completion
    tokens (they are billed as output); tool-use prompt tokens as prompt tokens."""
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    thoughts = meta.get("thoughtsTokenCount")
    cached = meta.get("cachedContentTokenCount")
    return make_usage(
        prompt,
        _count(meta, "candidatesTokenCount") + _count(meta, "thoughtsTokenCount"),
        cached=int(cached) if isinstance(cached, int) else None,
        reasoning=int(thoughts) if isinstance(thoughts, int) else None,
    )


def _count(meta: JSON, key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) else 0


# --- errors --------------------------------------------------------------------


def gemini_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An HTTP error answer (envelope or anything else) -> UpstreamError."""
    retry_after = parse_retry_after(headers)
    err = error_member(body)
    if isinstance(err, dict):
        return envelope_error(err, status, retry_after)
    if isinstance(err, str) and err:
        return UpstreamError(err, upstream_status=status, retry_after=retry_after)
    return opaque_error(status, body, retry_after)


def envelope_error(err: JSON, status: int | None, retry_after: float | None = None) -> UpstreamError:
    """``{code, message, status, details}`` -> UpstreamError. ``status`` is the
    HTTP status (None inside a 200 stream: ``code`` or ``status`` decide)."""
    name = err.get("status") if isinstance(err.get("status"), str) else None
    if status is None:
        code = err.get("code")
        status = code if isinstance(code, int) and code >= 400 else _STATUS_BY_NAME.get(name or "", 502)
    raw_details = err.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    if _error_reason(details) == "API_KEY_INVALID":
        status = 401  # our deployment's key is bad: fall back, do not blame the client
    return UpstreamError(
        str(err.get("message") or f"upstream answered HTTP {status}"),
        upstream_status=status,
        retry_after=retry_after if retry_after is not None else _retry_delay(details),
        code=name.lower() if name else None,
    )


def _error_reason(details: list[Any]) -> str | None:
    for item in details:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("ErrorInfo"):
            reason = item.get("reason")
            return reason if isinstance(reason, str) else None
    return None


def _retry_delay(details: list[Any]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``retryDelay: "34.4s"``)."""
    for item in details:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            delay = item.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0.0, float(delay[:-1]))
                except ValueError:
                    return None
    return None


# --- stream ----------------------------------------------------------------------


class GeminiStreamDecoder:
    """``streamGenerateContent?alt=sse`` events -> canonical chunks."""

    __slots__ = ("_created", "_done", "_id", "_model", "_started", "_tool_calls", "_usage")

    def __init__(self, model: str) -> None:
        self._created = int(time.time())
        self._id = ""
        self._model = model
        self._started = False
        self._tool_calls = 0
        self._usage: JSON | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> JSON | None:
        return self._usage

    def on_event(self, event: SSEEvent) -> list[JSON]:
        body = self._parse(event.data)
        self._usage = gemini_usage(body.get("usageMetadata")) or self._usage
        if not self._id:  # fixed by the first event: responseId (or a fresh id), modelVersion
            self._id, self._model = response_identity(body, self._model)
        candidates = body.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            blocked = blocked_prompt(body) and not self._done
            return [self._finish_chunk("content_filter")] if blocked else []
        candidate = candidates[0]
        chunks = [self._chunk(delta) for delta in self._deltas(candidate_parts(candidate))]
        logprobs = choice_logprobs(candidate)
        if logprobs is not None and chunks:
            carrier = next((c for c in chunks if "content" in c["choices"][0]["delta"]), chunks[0])
            carrier["choices"][0]["logprobs"] = logprobs
        raw = candidate.get("finishReason")
        if isinstance(raw, str) and raw and not self._done:
            chunks.append(self._finish_chunk(finish_reason(raw, self._tool_calls > 0)))
        return chunks

    def finish(self) -> list[JSON]:
        if not self._done:
            raise UpstreamBadResponse("upstream stream ended before it was complete (truncated)")
        if self._usage is None:
            return []
        return [make_chunk(id=self._id, model=self._model, created=self._created, usage=self._usage)]

    @staticmethod
    def _parse(data: str) -> JSON:
        body = parse_event_json(data)
        if "error" in body:
            err = body["error"]
            if isinstance(err, dict):
                raise envelope_error(err, None)
            raise UpstreamError(f"upstream stream error: {err}", upstream_status=502, retryable=True)
        return body

    def _deltas(self, parts: list[JSON]) -> list[JSON]:
        """One delta per run of text, per run of thought text (``reasoning_content``)
        and per function call, in order."""
        deltas: list[JSON] = []
        for part in parts:
            call = tool_call_from_part(part)
            if call is not None:
                deltas.append({"tool_calls": [{"index": self._tool_calls, **call}]})
                self._tool_calls += 1
                continue
            thought = thought_text(part)
            key, text = ("content", visible_text(part)) if thought is None else ("reasoning_content", thought)
            if not text:
                continue
            if deltas and list(deltas[-1]) == [key]:
                deltas[-1][key] += text
            else:
                deltas.append({key: text})
        return deltas

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return make_chunk(id=self._id, model=self._model, created=self._created, delta=delta, finish_reason=finish)

    def _finish_chunk(self, reason: str) -> JSON:
        self._done = True
        return self._chunk({}, reason)
