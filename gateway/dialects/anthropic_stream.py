"""Canonical chunk streams -> the Anthropic Messages event stream.

The anthropic SDK's stream accumulator wants, each as ``event: <name>`` plus a
``data:`` line whose ``type`` repeats the name::

    message_start (usage: the prompt estimate, output_tokens 1)   ping
    per block: content_block_start, content_block_delta*, content_block_stop
    message_delta (stop_reason, cumulative usage)   message_stop

Blocks get indexes 0, 1, 2... in order and one is open at a time: canonical
``reasoning_content`` -> a ``thinking`` block (``thinking_delta``), which
``reasoning_signature`` closes (``signature_delta``, then ``content_block_stop``;
without one the block keeps the signature ``""``: none is invented);
``redacted_reasoning`` -> a ``redacted_thinking`` block whose ``data`` comes whole
in its ``content_block_start``, closed at once (as Anthropic streams it);
``content`` -> a ``text`` block (``text_delta``), each tool call index -> its own
``tool_use`` block (``input_json_delta``). Switching kind closes the open block.
Within one delta the order is reasoning, signature, redacted data, text, tool
calls. Arguments that arrive for a tool call whose block was already closed
(upstreams that interleave parallel calls) are still sent to that block's index,
where the SDK accumulates them.

Usage arrives in the final usage-only chunk (``choices: []``); ``finish`` turns it
into ``message_delta.usage`` (output tokens, plus input, cache read and cache write
tokens; no ``cache_creation`` split, as in Anthropic's own ``message_delta``). An
upstream failure after the first byte ends the stream with an ``error`` event,
which the SDK raises as the exception of that error's status.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects.anthropic_render import anthropic_usage, error_body, message_id, stop_reason
from gateway.errors import GatewayError

_PING = {"type": "ping"}
_THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def sse(name: str, data: JSON) -> bytes:
    """One named server-sent event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _delta(index: int, delta: JSON) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _text_delta(index: int, text: str) -> bytes:
    """``_delta(index, {"type": "text_delta", "text": text})``, the same bytes, rendered from
    its fixed parts (text deltas are most of a stream; orjson's output is compact)."""
    return b'%s%d,"delta":{"type":"text_delta","text":%s}}\n\n' % (_TEXT_DELTA_HEAD, index, orjson.dumps(text))


_TEXT_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


def _tool_index(call: JSON) -> int:
    index = call.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


class MessagesStream:
    """One stream's state (a :class:`gateway.dialects.base.StreamEncoder`); see the module docstring."""

    __slots__ = ("_blocks", "_done", "_finish", "_input_tokens", "_model", "_open", "_started", "_tools", "_usage")

    def __init__(self, model: str, input_tokens: int) -> None:
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._done = False
        self._blocks = 0
        self._open: str | None = None  # "text", "thinking", "redacted" or "tool:<canonical index>"
        self._tools: dict[int, int] = {}  # canonical tool-call index -> block index
        self._finish: Any = None
        self._usage: JSON | None = None

    def chunks(self, batch: list[JSON]) -> bytes:
        if self._done:
            return b""
        out = [b""] if self._started else [self._start(batch[0].get("id") if batch else None)]
        for chunk in batch:
            usage = chunk.get("usage")
            if usage is not None and isinstance(usage, dict):
                self._usage = usage
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    delta = choice.get("delta")
                    text = None
                    if self._open == "text" and type(delta) is dict and len(delta) == 1:
                        text = delta.get("content")
                    if type(text) is str and text:  # the common case: more of the open text block
                        out.append(_text_delta(self._blocks - 1, text))
                        if choice.get("finish_reason") is not None:
                            self._finish = choice["finish_reason"]
                    else:
                        self._choice(choice, out)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._done:
            return b""
        out = [self._start(None)]
        if not self._blocks:
            out.append(self._open_block("text", {"type": "text", "text": ""}))
        out.append(self._close())
        self._done = True
        usage = anthropic_usage(self._usage)
        if self._usage is None:
            usage = {"output_tokens": 0}
        delta = {"stop_reason": stop_reason(self._finish, bool(self._tools)), "stop_sequence": None}
        out.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        if self._done:
            return b""
        self._done = True
        return sse("error", error_body(err))

    def _start(self, completion_id: Any) -> bytes:
        if self._started:
            return b""
        self._started = True
        usage = {
            "input_tokens": self._input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message: JSON = {
            "id": message_id(completion_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return sse("message_start", {"type": "message_start", "message": message}) + sse("ping", _PING)

    def _choice(self, choice: JSON, out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._reasoning(delta, out)
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open != "text":
                    out.append(self._close() + self._open_block("text", {"type": "text", "text": ""}))
                out.append(_text_delta(self._blocks - 1, text))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out.append(self._tool_call(call))
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def _reasoning(self, delta: JSON, out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.append(self._ensure("thinking", dict(_THINKING)))
            out.append(_delta(self._blocks - 1, {"type": "thinking_delta", "thinking": reasoning}))
        signature = delta.get("reasoning_signature")
        if isinstance(signature, str):
            out.append(self._ensure("thinking", dict(_THINKING)))
            if signature:
                out.append(_delta(self._blocks - 1, {"type": "signature_delta", "signature": signature}))
            out.append(self._close())
        redacted = delta.get("redacted_reasoning")
        if isinstance(redacted, str) and redacted:
            out.append(self._close() + self._open_block("redacted", {"type": "redacted_thinking", "data": redacted}))
            out.append(self._close())

    def _tool_call(self, call: JSON) -> bytes:
        index = _tool_index(call)
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        out = b""
        if index not in self._tools:
            call_id = call.get("id")
            block: JSON = {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else "toolu_" + uuid.uuid4().hex,
                "name": fn.get("name") if isinstance(fn.get("name"), str) else "",
                "input": {},
            }
            out = self._close() + self._open_block(f"tool:{index}", block)
            self._tools[index] = self._blocks - 1
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += _delta(self._tools[index], {"type": "input_json_delta", "partial_json": arguments})
        return out

    def _ensure(self, kind: str, block: JSON) -> bytes:
        """Open a ``kind`` block unless one is open already."""
        if self._open == kind:
            return b""
        return self._close() + self._open_block(kind, block)

    def _open_block(self, kind: str, block: JSON) -> bytes:
        self._open = kind
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        return sse("content_block_start", start)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})
