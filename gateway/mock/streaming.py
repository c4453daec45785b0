"""Streaming: a format builds a :class:`StreamPlan` of encoded SSE events; this
module plays it with the behaviour's timing and faults.

- ``ttft_ms``: after the headers, before the first event;
- ``tokens_per_s``: a pause of ``1/tokens_per_s`` s between content events;
- ``hang_ms``: a stall after the first content event;
- ``disconnect_after_chunks``: after N content events (or at the end of the
  content, when there are fewer) the connection is dropped: the chunked body is
  never terminated and uvicorn closes the socket, so clients see an incomplete
  body. (uvicorn logs "ASGI callable returned without completing response.")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.responses import StreamingResponse
from starlette.types import Send

from gateway.mock.behaviour import Behaviour


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Encoded events: ``head`` (preamble), ``content`` (paced, counted) and ``tail`` (terminal)."""

    head: Sequence[bytes]
    content: Sequence[bytes]
    tail: Sequence[bytes]


class EventLog:
    """Builds a :class:`StreamPlan` event by event: events go to ``head`` until the first
    delta, then to ``content`` until :meth:`begin_tail`, then to ``tail``."""

    __slots__ = ("_part", "content", "count", "head", "tail")

    def __init__(self) -> None:
        self.head: list[bytes] = []
        self.content: list[bytes] = []
        self.tail: list[bytes] = []
        self._part = self.head
        self.count = 0

    def add(self, event: bytes, delta: bool = False) -> None:
        if delta and self._part is self.head:
            self._part = self.content
        self._part.append(event)
        self.count += 1

    def begin_tail(self) -> None:
        self._part = self.tail

    def plan(self, complete: bool) -> StreamPlan:
        """The plan; without the tail when not ``complete`` (``garbage: truncate``)."""
        return StreamPlan(self.head, self.content, self.tail if complete else [])


class _Drop(Exception):
    """Raised inside the body iterator to abandon the response mid-body."""


def sse(data: bytes, event: str | None = None, sep: bytes = b"\n\n") -> bytes:
    """One server-sent event: optional ``event:`` line, one ``data:`` line, blank line."""
    if event is None:
        return b"data: " + data + sep
    return b"event: " + event.encode() + b"\ndata: " + data + sep


async def play(plan: StreamPlan, behaviour: Behaviour) -> AsyncIterator[bytes]:
    """Yield ``plan``'s events with ``behaviour``'s pacing; raises :class:`_Drop` to disconnect."""
    if behaviour.ttft_ms:
        await asyncio.sleep(behaviour.ttft_ms / 1000)
    if plan.head:
        yield b"".join(plan.head)
    interval = 1 / behaviour.tokens_per_s if behaviour.tokens_per_s else 0.0
    drop_at = behaviour.disconnect_after_chunks
    for i, event in enumerate(plan.content):
        if drop_at is not None and i >= drop_at:
            raise _Drop
        if i and interval:
            await asyncio.sleep(interval)
        yield event
        if i == 0 and behaviour.hang_ms:
            await asyncio.sleep(behaviour.hang_ms / 1000)
    if drop_at is not None:
        raise _Drop
    if plan.tail:
        yield b"".join(plan.tail)


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that can end without terminating its body."""

    def __init__(self, plan: StreamPlan, behaviour: Behaviour) -> None:
        headers = {"cache-control": "no-cache"}
        super().__init__(play(plan, behaviour), headers=headers, media_type="text/event-stream")

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except _Drop:
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
