"""Responses event streams: canonical chunks rendered as Responses events
(:class:`ResponsesStream`); a Responses upstream's events relayed under the
gateway's response id (:class:`PassthroughEvents`) are in responses_relay.py.

The events follow the API's sequence: ``response.created`` and
``response.in_progress``; per output item ``response.output_item.added``, for a
reasoning item ``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta``..., ``.done`` and
``response.reasoning_summary_part.done`` (gateway/dialects/responses_reasoning.py), for a
message ``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done`` and ``response.content_part.done`` (refusals use
the ``response.refusal.*`` events), for a function call
``response.function_call_arguments.delta``... and ``.done``; then
``response.output_item.done``; last ``response.completed`` (or
``response.incomplete``) carrying the whole response with its usage. Every
event has ``type`` and an increasing ``sequence_number``; framing is
``event: <type>\\ndata: <json>\\n\\n`` with no ``[DONE]`` sentinel.

A reasoning item closes when text or a function call starts, a message item
when a function call or reasoning starts, and function calls close when text or
reasoning starts again or the stream ends, so parallel calls may stream side by
side (each by its ``output_index``). Items still open when the stream ends
take the response's status (``incomplete`` after ``max_output_tokens``). A
stream that breaks closes its open items as ``incomplete``, then sends an
``error`` event (the spec's flat ``code``/``message``/``param`` and the
recorded API's nested ``error`` object) and ``response.failed``.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects.responses_reasoning import StreamedReasoning, wants_encrypted
from gateway.dialects.responses_relay import PassthroughEvents
from gateway.dialects.responses_render import (
    call_item,
    message_item,
    new_id,
    refusal_part,
    response_object,
    responses_usage,
    status_of,
    text_part,
)
from gateway.errors import GatewayError

__all__ = ["PassthroughEvents", "ResponsesStream"]


class _Events:
    """Numbered events, framed, waiting to be written."""

    __slots__ = ("_out", "_seq")

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self._seq = 0

    def emit(self, kind: str, fields: JSON) -> None:
        """The event ``{"type": kind, **fields, "sequence_number": n}``; every event of the API
        has fields of its own, never a ``type`` or ``sequence_number`` among them (written
        from members, such an event would not be one JSON object)."""
        if not fields or "type" in fields or "sequence_number" in fields:
            raise ValueError(f"event {kind}: fields {sorted(fields)} cannot be framed")
        self.emit_members(kind, orjson.dumps(fields)[1:-1])

    def emit_members(self, kind: str, members: bytes) -> None:
        """As :meth:`emit`, with the fields already rendered: ``members`` is their JSON
        object without its braces (the parts of an event shared with others, such as a
        content part's ``item_id``, are rendered once)."""
        head = _HEADS.get(kind) or _head(kind)
        # orjson's output never holds a raw newline: one data line, no splitting (responses_relay.sse_frame).
        self._out.append(b'%s%s,"sequence_number":%d}\n\n' % (head, members, self._seq))
        self._seq += 1

    def emit_rendered(self, head: bytes, value: Any, tail: bytes) -> None:
        """An event rendered from its fixed parts: ``head`` (``event:`` line and the data
        up to a value), the value as JSON, ``tail`` (the fields after it, up to
        ``"sequence_number":``). The same bytes as :meth:`emit`, without building the event
        (a delta event is most of a stream)."""
        self._out.append(b"%s%s%s%d}\n\n" % (head, orjson.dumps(value), tail, self._seq))
        self._seq += 1

    def take(self) -> bytes:
        out = b"".join(self._out)
        self._out = []
        return out


_HEADS: dict[str, bytes] = {}
"""Event type -> its frame up to the first field (``event:`` line, ``data: {"type":...,``)."""


def _head(kind: str) -> bytes:
    name = kind.encode()
    head = _HEADS[kind] = b'event: %s\ndata: {"type":"%s",' % (name, name)
    return head


_BLOCK_KEYS = frozenset({"reasoning_signature", "redacted_reasoning", "thinking_blocks"})
"""Delta keys that carry thinking blocks (gateway/canonical.py)."""
_TEXT_TAIL = b',"logprobs":[],"sequence_number":'
_DELTA_TAIL = {"output_text": _TEXT_TAIL, "refusal": b',"sequence_number":'}
"""What follows the ``delta`` of an ``output_text`` or ``refusal`` delta event."""


def _carries(value: Any) -> bool:
    """Whether a block key's value holds a block (a signature, redacted data, a non-empty list)."""
    return isinstance(value, str) or (isinstance(value, list) and bool(value))


_DELTA_KIND = {"output_text": "response.output_text.delta", "refusal": "response.refusal.delta"}
_EMPTY_PART = {"output_text": orjson.dumps(text_part("")), "refusal": orjson.dumps(refusal_part(""))}
"""A new content part of each kind, rendered (``response.content_part.added``)."""


class _Part:
    """The open content part of a message: its kind (output_text or refusal), its pieces
    of text, and the members every event of the part opens with (``content_index``,
    ``item_id``, ``output_index``), rendered once; ``delta_head``: its delta events up to
    the delta's value (see ``_Events.emit_rendered``)."""

    __slots__ = ("delta_head", "kind", "pieces", "where")

    def __init__(self, kind: str, content_index: int, item_id: str, output_index: int) -> None:
        self.kind = kind
        self.pieces: list[str] = []
        where = {"content_index": content_index, "item_id": item_id, "output_index": output_index}
        self.where = orjson.dumps(where)[1:-1]
        delta_kind = _DELTA_KIND[kind]
        self.delta_head = (_HEADS.get(delta_kind) or _head(delta_kind)) + self.where + b',"delta":'


class _Output:
    """The output items of one streamed response, opened, fed and closed with their events."""

    __slots__ = ("_calls", "_events", "_msg", "_part", "items", "open_text", "reasoning")

    def __init__(self, events: _Events, *, encrypted: bool) -> None:
        self._events = events
        self.items: list[JSON] = []
        self.reasoning = StreamedReasoning(events, self.items, encrypted=encrypted)
        """The reasoning items (gateway/dialects/responses_reasoning.py)."""
        self._msg: int | None = None
        """output_index of the open message item."""
        self._part: _Part | None = None
        """The message's open content part."""
        self._calls: dict[int, tuple[int, list[str]]] = {}
        """canonical tool-call index -> (output_index, argument pieces) of the open calls."""
        self.open_text: tuple[list[str], bytes] | None = None
        """(pieces, delta head) of the open output_text part while more text only extends it
        (no call open): the stream's fast path (``ResponsesStream.chunks``)."""

    def text(self, kind: str, delta: str) -> None:
        """A piece of message text (``kind`` output_text) or refusal."""
        if not delta:
            return
        part = self._part
        if part is not None and part.kind == kind and not self._calls:  # the common case: more of the same
            part.pieces.append(delta)
            self._events.emit_rendered(part.delta_head, delta, _DELTA_TAIL[kind])
            return
        self.reasoning.close()
        self._close_calls("completed")
        if self._msg is None:
            self._msg = len(self.items)
            self._add(message_item(new_id("msg_"), [], "in_progress"))
        index, item = self._msg, self.items[self._msg]
        if self._part is not None and self._part.kind != kind:
            self._close_part()
        part = self._part
        if part is None:
            part = self._part = _Part(kind, len(item["content"]), item["id"], index)
            self._events.emit_members("response.content_part.added", part.where + b',"part":' + _EMPTY_PART[kind])
        part.pieces.append(delta)
        self._events.emit_rendered(part.delta_head, delta, _DELTA_TAIL[kind])
        if kind == "output_text":
            self.open_text = (part.pieces, part.delta_head)

    def think(self, delta: JSON, text: Any) -> None:
        """A delta's reasoning: ``text`` (its ``reasoning_content``) and block keys."""
        has_text = isinstance(text, str) and bool(text)
        if not has_text and not any(_carries(delta.get(key)) for key in _BLOCK_KEYS):
            return
        if not self.reasoning.is_open:
            self._close_message("completed")
            self._close_calls("completed")
        if has_text:
            self.reasoning.text(text)
        self.reasoning.extra(delta)

    def call(self, delta: JSON) -> None:
        """A canonical tool-call delta (``index``, ``id`` and name first, then argument pieces)."""
        key = delta.get("index", 0)
        fn = delta.get("function") or {}
        if key not in self._calls:
            self.reasoning.close()
            self._close_message("completed")
            self._calls[key] = (len(self.items), [])
            call_id = delta.get("id") or new_id("call_")
            self._add(call_item(new_id("fc_"), call_id, fn.get("name") or "", "", "in_progress"))
        index, pieces = self._calls[key]
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            pieces.append(arguments)
            where = {"item_id": self.items[index]["id"], "output_index": index}
            self._events.emit("response.function_call_arguments.delta", {**where, "delta": arguments})

    def close(self, status: str) -> None:
        """Close every open item with ``status``."""
        self.reasoning.close(status)
        self._close_message(status)
        self._close_calls(status)

    def _add(self, item: JSON) -> None:
        self.items.append(item)
        self._events.emit("response.output_item.added", {"item": item, "output_index": len(self.items) - 1})

    def _close_part(self) -> None:
        if self._part is None or self._msg is None:
            return
        open_part, self._part, self.open_text = self._part, None, None
        text = "".join(open_part.pieces)
        events, where, rendered = self._events, open_part.where, orjson.dumps(text)
        if open_part.kind == "output_text":
            part = text_part(text)
            events.emit_members("response.output_text.done", where + b',"logprobs":[],"text":' + rendered)
        else:
            part = refusal_part(text)
            events.emit_members("response.refusal.done", where + b',"refusal":' + rendered)
        events.emit_members("response.content_part.done", where + b',"part":' + orjson.dumps(part))
        self.items[self._msg]["content"].append(part)

    def _close_message(self, status: str) -> None:
        if self._msg is None:
            return
        self._close_part()
        index, self._msg = self._msg, None
        self._done(index, status)

    def _close_calls(self, status: str) -> None:
        if not self._calls:
            return
        for index, pieces in sorted(self._calls.values()):
            item = self.items[index]
            item["arguments"] = "".join(pieces)
            where = {"item_id": item["id"], "output_index": index}
            self._events.emit("response.function_call_arguments.done", {**where, "arguments": item["arguments"]})
            self._done(index, status)
        self._calls = {}

    def _done(self, index: int, status: str) -> None:
        item = self.items[index]
        item["status"] = status
        self._events.emit("response.output_item.done", {"item": item, "output_index": index})


class ResponsesStream:
    """Canonical ``chat.completion.chunk`` batches -> Responses events (a StreamEncoder)."""

    __slots__ = (
        "_body",
        "_created_at",
        "_events",
        "_finish_reason",
        "_id",
        "_model",
        "_opening",
        "_output",
        "_response",
        "_started",
        "_usage",
    )

    def __init__(self, response_id: str, model: str, body: JSON, created_at: int) -> None:
        self._id = response_id
        self._model = model
        self._body = body
        self._created_at = created_at
        self._events = _Events()
        self._output = _Output(self._events, encrypted=wants_encrypted(body))
        self._started = False
        self._finish_reason: str | None = None
        self._usage: JSON | None = None
        self._response: JSON | None = None
        self._opening: JSON | None = None

    @property
    def response(self) -> JSON | None:
        """The final Response object once the stream ended (for the store)."""
        return self._response

    @property
    def reasoning_blocks(self) -> dict[str, list[JSON]]:
        """Reasoning item id -> its thinking blocks, for the store (``output_items``)."""
        return self._output.reasoning.by_item

    def chunks(self, batch: list[JSON]) -> bytes:
        events = self._events if self._started else self._start()
        if self._response is not None:
            return b""
        output = self._output
        for chunk in batch:
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    text = output.open_text
                    if text is not None and len(delta) == 1 and type(content) is str and content:
                        text[0].append(content)  # the common case: more of the open text
                        events.emit_rendered(text[1], content, _TEXT_TAIL)
                    else:
                        self._delta(delta, content)
                finish_reason = choice.get("finish_reason")
                if finish_reason:
                    self._finish_reason = finish_reason
            usage = chunk.get("usage")
            if usage is not None and isinstance(usage, dict):
                self._usage = usage
        return events.take()

    def _delta(self, delta: JSON, content: Any) -> None:
        reasoning = delta.get("reasoning_content")
        if reasoning or not _BLOCK_KEYS.isdisjoint(delta):
            self._output.think(delta, reasoning)
        if content and isinstance(content, str):
            self._output.text("output_text", content)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._output.text("refusal", refusal)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._output.call(call)

    def finish(self) -> bytes:
        events = self._start()
        if self._response is not None:
            return b""
        status, reason = status_of(self._finish_reason)
        self._output.close("incomplete" if status == "incomplete" else "completed")
        self._response = self._snapshot(status, usage=responses_usage(self._usage), incomplete_reason=reason)
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        events.emit_members(kind, b'"response":' + orjson.dumps(self._response))
        return events.take()

    def error(self, err: GatewayError) -> bytes:
        events = self._start()
        if self._response is not None:
            return b""
        self._output.close("incomplete")
        body = err.to_body()["error"]
        events.emit("error", {"code": err.code, "message": err.message, "param": err.param, "error": body})
        failure = {"code": err.code, "message": err.message}
        self._response = self._snapshot("failed", usage=responses_usage(self._usage), error=failure)
        events.emit("response.failed", {"response": self._response})
        return events.take()

    def _start(self) -> _Events:
        """The events, opened with ``response.created`` and ``response.in_progress``."""
        if not self._started:
            self._started = True
            opening = b'"response":' + orjson.dumps(self._snapshot("in_progress", usage=None))
            self._events.emit_members("response.created", opening)
            self._events.emit_members("response.in_progress", opening)
        return self._events

    def _snapshot(
        self, status: str, *, usage: JSON | None, incomplete_reason: str | None = None, error: JSON | None = None
    ) -> JSON:
        if self._opening is None:  # the request's echo is built once; later snapshots copy it
            self._opening = response_object(
                self._body,
                response_id=self._id,
                model=self._model,
                created_at=self._created_at,
                status="in_progress",
                output=[],
                usage=None,
            )
        if status == "in_progress":
            return self._opening
        return {
            **self._opening,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
            "output": list(self._output.items),
            "usage": usage,
        }
