"""Anthropic answers -> canonical: the stream decoder and what it shares with
the non-stream path (stop reasons, usage, error envelopes).

An Anthropic stream is a sequence of named events whose data always repeats the
name in ``type``: ``message_start``, then per content block
``content_block_start`` / ``content_block_delta``* / ``content_block_stop``,
then ``message_delta`` (stop reason, cumulative usage) and ``message_stop``.
``ping`` may appear anywhere and ``error`` may arrive inside an HTTP 200.
The decoder keys on the data's ``type`` (the event name is only checked for
``error``), so a stream with its ``event:`` lines stripped decodes the same.

Thinking in a stream (the canonical contract's delta keys): ``thinking_delta`` ->
``reasoning_content``; the block's ``signature_delta`` pieces -> one
``reasoning_signature`` when the block stops (it closes the block a consumer
rebuilds); a ``redacted_thinking`` block (it arrives whole in
``content_block_start``) -> ``redacted_reasoning`` with its ``data``.

Usage: ``input_tokens`` excludes cached input, so ``prompt_tokens`` is input +
cache reads + cache writes; reads -> ``prompt_tokens_details.cached_tokens``,
writes (``cache_creation_input_tokens``, else the sum of the ``cache_creation``
breakdown) -> ``cache_write_tokens``, and the breakdown's
``ephemeral_1h_input_tokens`` -> ``cache_write_1h_tokens``; each appears when
Anthropic reported it. ``output_tokens_details.thinking_tokens`` ->
``completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON, make_chunk, make_usage
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.providers.base import SSEEvent, error_member, opaque_error, parse_event_json, parse_retry_after

FINISH_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)

# Anthropic error ``type`` -> the HTTP status Anthropic documents for it; used
# for errors that arrive inside a 200 stream, where there is no status line.
STATUS_BY_ERROR_TYPE: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
    }
)

# Anthropic error types with no OpenAI namesake, renamed for the client's envelope.
_OPENAI_ERROR_TYPE: Mapping[str, str] = MappingProxyType(
    {
        "not_found_error": "invalid_request_error",
        "request_too_large": "invalid_request_error",
        "billing_error": "insufficient_quota",
    }
)

_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")


# content_block_delta type -> (canonical delta key, the delta's text key)
_DELTA_KEYS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"text_delta": ("content", "text"), "thinking_delta": ("reasoning_content", "thinking")}
)
# content_block_start type -> (canonical delta key, the block's text key): blocks that may open with text
_START_DELTAS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "text": ("content", "text"),
        "thinking": ("reasoning_content", "thinking"),
        "redacted_thinking": ("redacted_reasoning", "data"),
    }
)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _start_delta(block: JSON) -> JSON | None:
    key, text = _START_DELTAS[str(block.get("type"))]
    value = _text(block.get(text))
    return {key: value} if value else None


def finish_reason(stop_reason: Any) -> str | None:
    """Anthropic ``stop_reason`` -> canonical; unknown reasons read as ``stop``."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def canonical_usage(raw: Mapping[str, Any]) -> JSON:
    """Anthropic usage -> canonical (module docstring, "Usage")."""
    cache_read = _count(raw.get("cache_read_input_tokens"))
    breakdown = raw.get("cache_creation")
    breakdown = breakdown if isinstance(breakdown, dict) else None
    if "cache_creation_input_tokens" in raw or breakdown is None:
        cache_write = _count(raw.get("cache_creation_input_tokens"))
    else:
        cache_write = sum(_count(v) for v in breakdown.values())
    prompt = _count(raw.get("input_tokens")) + cache_read + cache_write
    details = raw.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    usage = make_usage(
        prompt,
        _count(raw.get("output_tokens")),
        cached=cache_read if "cache_read_input_tokens" in raw else None,
        reasoning=thinking if isinstance(thinking, int) else None,
    )
    writes: JSON = {}
    if "cache_creation_input_tokens" in raw or breakdown is not None:
        writes["cache_write_tokens"] = cache_write
    if breakdown is not None:
        writes["cache_write_1h_tokens"] = _count(breakdown.get("ephemeral_1h_input_tokens"))
    if writes:
        usage["prompt_tokens_details"] = {**usage.get("prompt_tokens_details", {}), **writes}
    return usage


def error_from_object(
    err: Mapping[str, Any], status: int | None, *, retry_after: float | None = None, prefix: str = ""
) -> UpstreamError:
    """An Anthropic ``error`` object ``{type, message}`` -> UpstreamError. Without
    ``status`` (a stream error event) the status follows from the type."""
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    message = str(err.get("message") or f"anthropic answered {etype or 'an error'}")
    if status is None:
        status = STATUS_BY_ERROR_TYPE.get(etype or "", 502)
    lowered = message.lower()
    code = "context_length_exceeded" if any(m in lowered for m in _CONTEXT_MARKERS) else etype
    return UpstreamError(
        prefix + message,
        upstream_status=status,
        retryable=True if etype == "overloaded_error" else None,
        retry_after=retry_after,
        code=code,
        error_type=_OPENAI_ERROR_TYPE.get(etype, etype) if etype else None,
    )


def anthropic_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Anthropic's ``{"type": "error", "error": {type, message}, "request_id"}``
    (or anything else: a proxy's HTML page) -> UpstreamError."""
    retry_after = parse_retry_after(headers)
    err = error_member(body)
    if isinstance(err, dict):
        return error_from_object(err, status, retry_after=retry_after)
    return opaque_error(status, body, retry_after, "anthropic")


class AnthropicStreamDecoder:
    """Anthropic stream events -> canonical chunks (see the module docstring).

    Client ``tool_use`` blocks get tool-call indexes 0, 1, 2... in order; server
    tool blocks (``server_tool_use``, ``*_tool_result``) are dropped and thinking
    blocks become reasoning deltas; neither consumes an index. Usage is held back
    for one final usage-only chunk.
    """

    __slots__ = ("_created", "_done", "_id", "_model", "_raw_usage", "_signatures", "_tools")

    def __init__(self, model: str) -> None:
        self._created = int(time.time())
        self._id = ""
        self._model = model
        self._done = False
        self._raw_usage: JSON = {}
        self._tools: dict[int, int] = {}  # Anthropic block index -> tool-call index
        self._signatures: dict[int, str] = {}  # open thinking block index -> its signature so far

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> JSON | None:
        return canonical_usage(self._raw_usage) if self._raw_usage else None

    def on_event(self, event: SSEEvent) -> list[JSON]:
        payload = parse_event_json(event.data, "anthropic")
        kind = payload.get("type")
        if kind == "error" or event.event == "error":
            err = payload.get("error")
            raise error_from_object(err if isinstance(err, dict) else {}, None, prefix="anthropic stream error: ")
        match kind:
            case "message_start":
                return self._message_start(payload)
            case "content_block_start":
                return self._block_start(payload)
            case "content_block_delta":
                return self._block_delta(payload)
            case "content_block_stop":
                signature = self._signatures.pop(_count(payload.get("index")), "")
                return [self._chunk(delta={"reasoning_signature": signature})] if signature else []
            case "message_delta":
                return self._message_delta(payload)
            case "message_stop":
                self._done = True
        return []  # ping and event types added later

    def finish(self) -> list[JSON]:
        if not self._done:
            raise UpstreamBadResponse("anthropic stream ended before message_stop (truncated)")
        usage = self.usage
        return [] if usage is None else [self._chunk(usage=usage)]

    def _chunk(self, delta: JSON | None = None, finish_reason: str | None = None, usage: JSON | None = None) -> JSON:
        return make_chunk(
            id=self._id,
            model=self._model,
            created=self._created,
            delta=delta,
            finish_reason=finish_reason,
            usage=usage,
        )

    def _merge_usage(self, usage: Any) -> None:
        # message_delta repeats the counts cumulatively (input grows with server tools).
        if isinstance(usage, dict):
            self._raw_usage.update({k: v for k, v in usage.items() if v is not None})

    def _message_start(self, payload: JSON) -> list[JSON]:
        message = payload.get("message")
        if not isinstance(message, dict):
            raise UpstreamBadResponse("anthropic message_start event has no message")
        self._id = str(message.get("id") or self._id)
        self._model = str(message.get("model") or self._model)
        self._merge_usage(message.get("usage"))
        return [self._chunk(delta={"role": "assistant", "content": ""})]

    def _block_start(self, payload: JSON) -> list[JSON]:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            raise UpstreamBadResponse("anthropic content_block_start event has no content_block")
        kind = block.get("type")
        if kind == "thinking":
            self._signatures[_count(payload.get("index"))] = _text(block.get("signature"))
        if kind in _START_DELTAS:
            delta = _start_delta(block)
            return [self._chunk(delta=delta)] if delta else []
        if kind != "tool_use":
            return []
        index = len(self._tools)
        self._tools[_count(payload.get("index"))] = index
        call = {
            "index": index,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": ""},
        }
        return [self._chunk(delta={"tool_calls": [call]})]

    def _block_delta(self, payload: JSON) -> list[JSON]:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamBadResponse("anthropic content_block_delta event has no delta")
        kind = str(delta.get("type"))
        if kind == "signature_delta":
            block = _count(payload.get("index"))
            self._signatures[block] = self._signatures.get(block, "") + _text(delta.get("signature"))
            return []
        if kind in _DELTA_KEYS:
            key, text = _DELTA_KEYS[kind]
            value = _text(delta.get(text))
            return [self._chunk(delta={key: value})] if value else []
        if kind != "input_json_delta":
            return []  # citations deltas and types added later
        index = self._tools.get(_count(payload.get("index")))
        partial = delta.get("partial_json")
        if index is None or not isinstance(partial, str) or not partial:
            return []  # a server tool's input, or the empty first fragment
        call = {"index": index, "function": {"arguments": partial}}
        return [self._chunk(delta={"tool_calls": [call]})]

    def _message_delta(self, payload: JSON) -> list[JSON]:
        self._merge_usage(payload.get("usage"))
        delta = payload.get("delta")
        reason = finish_reason(delta.get("stop_reason")) if isinstance(delta, dict) else None
        return [] if reason is None else [self._chunk(finish_reason=reason)]
