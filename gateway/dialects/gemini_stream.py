"""Canonical ``chat.completion.chunk`` batches -> ``streamGenerateContent?alt=sse``.

Each batch becomes at most one event, ``data: <GenerateContentResponse>\\r\\n\\r\\n``
(Gemini separates events with CRLF pairs), holding the batch's parts in order:
text deltas as text parts (adjacent ones merged), and each function call whole,
once its arguments are complete - when the next call or text starts, or at the
finish reason; ``reasoning_content`` deltas as thought parts (``"thought": true``,
adjacent ones merged), in the event of the batch they came in, before that delta's
text. :meth:`GenerateStream.finish` sends the last event with the
``finishReason`` and ``usageMetadata`` (the usage-only chunk comes after the finish
reason in canonical streams); its parts are ``[{"text": ""}]`` as Gemini's own
last events often are, so every event has content (the SDK's chat history keeps a
turn only when each event does). Only candidate 0 is streamed; ``error`` ends the stream with
``data: {"error": {...}}``, which the SDK raises as an APIError.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects.gemini_render import (
    as_dict,
    as_list,
    call_part,
    error_envelope,
    finish_reason,
    thought_part,
    usage_metadata,
)
from gateway.errors import GatewayError


def sse_event(payload: JSON) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


class GenerateStream:
    """One client stream's state (see the module docstring)."""

    __slots__ = ("_calls", "_closed", "_finish", "_id", "_malformed", "_model", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = ""
        self._calls: dict[int, JSON] = {}  # tool-call index -> {id, name, arguments} being assembled
        self._finish: str | None = None
        self._usage: JSON | None = None
        self._malformed = False
        self._closed = False

    def chunks(self, batch: list[JSON]) -> bytes:
        if self._closed:
            return b""
        parts: list[JSON] = []
        for chunk in batch:
            self._absorb(chunk, parts)
        return self._event(parts) if parts else b""

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        parts = self._flush_calls() or [{"text": ""}]
        last = self._response(parts)
        last["candidates"][0]["finishReason"] = finish_reason(self._finish, self._malformed)
        meta = usage_metadata(self._usage)
        if meta is not None:
            last["usageMetadata"] = meta
        return sse_event(last)

    def error(self, err: GatewayError) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return sse_event(error_envelope(err))

    def _absorb(self, chunk: Any, parts: list[JSON]) -> None:
        if not isinstance(chunk, dict):
            return
        if not self._id and isinstance(chunk.get("id"), str):
            self._id = chunk["id"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in as_list(chunk.get("choices")):
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, parts)

    def _choice(self, choice: JSON, parts: list[JSON]) -> None:
        delta = as_dict(choice.get("delta"))
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self._text(thought_part(reasoning), parts)
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._text({"text": text}, parts)
        for call in as_list(delta.get("tool_calls")):
            if isinstance(call, dict):
                self._call_delta(call, parts)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish = reason
            parts.extend(self._flush_calls())

    def _text(self, part: JSON, parts: list[JSON]) -> None:
        """Add a text or thought part, merged into the previous part of the same kind."""
        parts.extend(self._flush_calls())
        if parts and parts[-1].keys() == part.keys() and "text" in part:
            parts[-1] = {**part, "text": parts[-1]["text"] + part["text"]}
        else:
            parts.append(part)

    def _call_delta(self, delta: JSON, parts: list[JSON]) -> None:
        index = delta.get("index", 0)
        if index not in self._calls:
            parts.extend(self._flush_calls())  # a new call starts: the earlier ones are whole
            self._calls[index] = {"id": "", "name": "", "arguments": ""}
        call = self._calls[index]
        if isinstance(delta.get("id"), str) and delta["id"]:
            call["id"] = delta["id"]
        fn = as_dict(delta.get("function"))
        if isinstance(fn.get("name"), str):
            call["name"] += fn["name"]
        if isinstance(fn.get("arguments"), str):
            call["arguments"] += fn["arguments"]

    def _flush_calls(self) -> list[JSON]:
        parts: list[JSON] = []
        for call in self._calls.values():
            part = call_part({"id": call["id"], "function": {"name": call["name"], "arguments": call["arguments"]}})
            if part is None:
                self._malformed = True
            else:
                parts.append(part)
        self._calls.clear()
        return parts

    def _event(self, parts: list[JSON]) -> bytes:
        return sse_event(self._response(parts))

    def _response(self, parts: list[JSON]) -> JSON:
        body: JSON = {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]}
        body["modelVersion"] = self._model
        if self._id:
            body["responseId"] = self._id
        return body
