"""One write for an answer of known size: its head goes out with its body.

uvicorn's request cycle writes a response's status line and headers to the socket when
the app sends ``http.response.start``, and the body when it sends ``http.response.body``:
two system calls, and for a small answer two TCP segments, where one does. nginx writes
an answer it has whole at once. So the gateway's protocol (:mod:`gateway.server.protocol`)
runs each request's cycle as a :class:`CoalescingCycle`: when the head carries a
``Content-Length`` (every JSON answer and error), it is held and written together with
the first piece of the body. A streamed answer's head (chunked) is held only until the
end of the event-loop turn that sent it: the gateway sends a stream's first chunks in the
same turn (it starts a stream once they are in hand), so they share the write; a stream
whose first chunk is not ready sends its head at once, so a client that waits for a
first token sees the status and headers right away.

What reaches the client is byte for byte what uvicorn would send; only the number of
writes changes. If the app fails after the start and sends no body, the held head is
never written and the connection is closed (uvicorn closes a connection whose answer
did not complete), as a client of a half-written answer would see it anyway.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _Held:
    """Stands in for the transport while uvicorn writes a head: keeps the bytes."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _HeadFirst:
    """Stands in for the transport while uvicorn writes a body: the held head goes in the
    same write as the first bytes, or alone (:meth:`flush`) if none come (a HEAD request's
    answer has none); a close sends the head first."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport = transport
        self._head = head

    def write(self, data: bytes) -> None:
        head, self._head = self._head, b""
        self._transport.write(head + data if head else data)

    def flush(self) -> None:
        if self._head:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()


class CoalescingCycle(RequestResponseCycle):
    """uvicorn's request cycle whose answers of known size leave in one write (see the
    module docstring). The protocol turns the cycle it has just made into one of these
    (its ``__class__``: the cycle is made inside uvicorn's header callback), before the
    request's task first runs; it adds no state of its own besides the held head."""

    _head = b""

    async def send(self, message: Any) -> None:
        if self._head:
            head, self._head = self._head, b""
            transport, first = self.transport, _HeadFirst(self.transport, head)
            self.transport = first  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if self.response_complete:  # the answer is whole: its head is out even with no body bytes
                first.flush()
            return
        if message["type"] != "http.response.start" or self.response_started or self.disconnected:
            await super().send(message)
            return
        transport, held = self.transport, _Held()
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
        self._head = held.data
        if self.chunked_encoding is not False and held.data:  # a stream: its head goes this turn
            asyncio.get_running_loop().call_soon(self._flush_head)

    def _flush_head(self) -> None:
        """The end of the turn that started a stream: its head goes, unless its first
        chunk already took it along."""
        head, self._head = self._head, b""
        if head and not self.disconnected and not self.transport.is_closing():
            self.transport.write(head)
