"""The HTTP/1.1 server protocol: uvicorn's httptools protocol with the request head bounded.

The ASGI app sees a request only once the server has parsed its whole head, so limits on
the head belong to the server. uvicorn's httptools protocol has none: a request line and
headers of any size and number are buffered, and a connection that sends half a head (or
nothing) is held until the client goes away (its keep-alive timer only runs between
requests). uvicorn's one head limit, ``h11_max_incomplete_event_size``, applies only to
its h11 protocol. So ``gateway serve`` runs this subclass (a protocol class is what
uvicorn's ``http`` option takes), which adds, per connection:

- ``server.max_header_bytes``: the request line plus headers; more is ``431
  headers_too_large``. Checked once the head is complete (from the parsed head, when the
  bytes received could hold more), and while it is incomplete from the bytes received,
  so one endless header line is cut off too;
- ``server.max_headers``: header fields per request; more is ``431 too_many_headers``;
- ``server.header_timeout_s``: a head must be complete this long after the connection
  opened or the request's first byte; otherwise the connection is closed (``408
  header_timeout`` first when part of a head had arrived, silently when nothing had).
  One timer per connection, re-armed only when it fires early: nothing per request.

Each refusal closes the connection and is counted in ``gateway_requests_refused_total``
through the app's lifespan state (``REFUSED_KEY``). The rest is uvicorn's: ``data_received``
is uvicorn's own, with the refusals added where its parser stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, NamedTuple, NoReturn, cast

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config.settings import ServerSettings
from gateway.errors import InvalidRequest
from gateway.server.asgi import REFUSED_KEY

log = logging.getLogger("gateway")

HEADERS_TOO_LARGE = "headers_too_large"
TOO_MANY_HEADERS = "too_many_headers"
HEADER_TIMEOUT = "header_timeout"


class HeadLimits(NamedTuple):
    max_bytes: int
    max_headers: int
    timeout_s: float

    @classmethod
    def of(cls, server: ServerSettings) -> HeadLimits:
        return cls(server.max_header_bytes, server.max_headers, server.header_timeout_s)


class _Refused(Exception):
    """Raised from a parser callback to stop the parser at a refusal."""


def refusal(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, with an OpenAI-shaped error body."""
    body = orjson.dumps(InvalidRequest(message, param="headers", code=code).to_body())
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus :class:`HeadLimits` (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._in_head = True
        """From the connection's start, or a request's first byte, to the end of its head."""
        self._partial = False
        """Part of a head has arrived (a timeout then answers 408 rather than closing silently)."""
        self._chunk = 0
        """Size of the piece being parsed."""
        self._received = 0
        """Bytes received in the pieces after the one where the head began."""
        self._first = 0
        """Size of the piece where the head began: the head is at most ``_first + _received``."""
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refused: tuple[int, str, str] | None = None

    # --- the connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.time() + self._limits.timeout_s
        self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received``, with the head counted and a refusal answered."""
        if self._refused is not None:
            return
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        if self._in_head:
            self._received += self._chunk
            self._partial = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused is None:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._refused is None and self._in_head and self._received > self._limits.max_bytes:
            self._refused = (431, HEADERS_TOO_LARGE, f"the request head is over {self._limits.max_bytes} bytes")
        self._close_refused()

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._in_head:  # the next request on this connection: its own count and clock
            self._in_head = True
            self._deadline = self.loop.time() + self._limits.timeout_s
            if self._timer is None:
                self._timer = self.loop.call_at(self._deadline, self._check_deadline)
        self._partial = True
        self._first, self._received = self._chunk, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = self._partial = False
        limits = self._limits
        if len(self.headers) > limits.max_headers:
            self._refuse(431, TOO_MANY_HEADERS, f"the request has over {limits.max_headers} header fields")
        if self._first + self._received > limits.max_bytes and self._head_size() > limits.max_bytes:
            self._refuse(431, HEADERS_TOO_LARGE, f"the request head is over {limits.max_bytes} bytes")
        super().on_headers_complete()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    # --- refusals -----------------------------------------------------------------------

    def _refuse(self, status: int, code: str, message: str) -> NoReturn:
        self._refused = (status, code, message)
        raise _Refused(code)  # stops the parser: data_received answers

    def _close_refused(self) -> None:
        """Answer a refusal, if there is one, and close; the parser is left alone from here on."""
        if self._refused is None or self.transport.is_closing():
            return
        status, code, message = self._refused
        self._count(code)
        log.info("request refused by the server limits: %s (client %s)", code, _peer(self.client))
        self.transport.write(refusal(status, code, message))
        self.transport.close()

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._in_head or self._refused is not None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:  # a later request's clock: wait for its deadline
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        self._count(HEADER_TIMEOUT)
        if self._partial:  # part of a head came: say why; an idle connection is just closed
            seconds = f"{self._limits.timeout_s:g}"
            self._refused = (408, HEADER_TIMEOUT, f"the request head did not arrive within {seconds} s")
            self.transport.write(refusal(*self._refused))
        self.transport.close()

    def _count(self, reason: str) -> None:
        counter = self.app_state.get(REFUSED_KEY)
        if callable(counter):
            counter(reason)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"


def protocol_class(limits: HeadLimits) -> type[asyncio.Protocol]:
    """What ``uvicorn.run(http=...)`` takes: the protocol with ``limits`` bound. A partial
    of a module-level class, so that it pickles into ``--workers`` processes."""
    factory: Callable[..., BoundedHttpToolsProtocol] = functools.partial(BoundedHttpToolsProtocol, limits=limits)
    return cast("type[asyncio.Protocol]", factory)
