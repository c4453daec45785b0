"""Small ASGI primitives for the hot paths.

The client API is served by plain ASGI callables rather than a framework's
request/response objects: on a path that must add well under a millisecond,
the per-request objects and middleware layers are a measurable share (README,
"Performance"). Everything else (health, future admin routes) goes through
Starlette.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, NamedTuple

import orjson

from gateway.config.settings import ServerSettings
from gateway.errors import ClientDisconnected, GatewayError, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def bearer_token(scope: Scope) -> bytes:
    """The client's key: ``Authorization: Bearer <key>``, else ``x-api-key``."""
    auth = header(scope, b"authorization")
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return header(scope, b"x-api-key") or b""


def client_key(scope: Scope) -> bytes:
    """The client's API key in whichever way its SDK sends it: ``Authorization: Bearer``,
    ``x-api-key`` (Anthropic), ``x-goog-api-key`` (Gemini), or, on the Gemini routes
    (``/v1beta/...``, ``/v1/models/{model}:{method}``), the ``key=`` query parameter. Never
    logged: the access log and spans record the path without its query string."""
    token = bearer_token(scope) or header(scope, b"x-goog-api-key") or b""
    path: str = scope["path"]
    if not token and (path.startswith("/v1beta/") or (path.startswith("/v1/models/") and ":" in path)):
        for pair in scope.get("query_string", b"").split(b"&"):
            if pair.startswith(b"key="):
                return bytes(pair[4:])
    return token


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is sane, else a fresh one (:func:`new_request_id`)."""
    given = header(scope, b"x-request-id")
    if given and len(given) <= 128 and given.isascii() and given.replace(b"-", b"").replace(b"_", b"").isalnum():
        return given.decode("ascii")
    return new_request_id()


def new_request_id() -> str:
    """``req_`` + 32 hex digits: the time in ns (16), then 64 random bits.

    Time first, so that ids made later sort later: every finished request files a record
    under its id (its feedback owner, gateway/server/feedback_owners.py), and a B-tree
    (SQLite's, PostgreSQL's) takes ids in order at its right edge, where random ids land
    all over the index: 3.4-4.9 µs of SQLite's CPU per record in batches of 16 instead of
    9-17 µs, growing with the table (docs/performance.md). The random part comes from the
    system's random source, as the Responses ids' do: ids are sent to clients on every answer,
    and ``random``'s would give its state away (a few hundred ids rebuild it)."""
    return f"req_{time.time_ns():016x}{os.urandom(8).hex()}"


CLOSE = {"connection": "close"}
"""On a refused body: the server closes the connection instead of reading the rest."""
TOO_LARGE = "request_too_large"


def declared_too_large(scope: Scope, limit: int) -> RequestTooLarge | None:
    """The 413 for a ``Content-Length`` over ``limit``, known before a byte of the body is read."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return RequestTooLarge(f"the request body is {int(length)} bytes; the limit is {limit}", headers=CLOSE)
    return None


def over_limit(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request body is over the limit of {limit} bytes", headers=CLOSE)


def body_of(message: Message) -> bytes:
    """The bytes of one ``http.request`` message; :class:`ClientDisconnected` for an
    ``http.disconnect`` (the client went away before its body was whole)."""
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("the client disconnected before its request body was complete")
    return message.get("body", b"")  # type: ignore[no-any-return]


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes (checked
    against Content-Length up front and while reading); :class:`ClientDisconnected`
    (499, never answered) when the client leaves before the body is whole."""
    refusal = declared_too_large(scope, limit)
    if refusal is not None:
        raise refusal
    message = await receive()
    body = body_of(message)
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = body_of(message)
        size += len(chunk)
        if size > limit:
            raise over_limit(limit)
        parts.append(chunk)
    return b"".join(parts)


def _ignore(reason: str) -> None:
    return None


class RequestLimits(NamedTuple):
    """The bounds of one request outside the client API (``server.max_admin_body_bytes``,
    ``server.max_json_depth``), put in its scope by :class:`BoundedRequests`."""

    body_bytes: int
    json_depth: int
    refused: Callable[[str], None] = _ignore
    """Counts a refusal by reason (``gateway_requests_refused_total``)."""

    @classmethod
    def of(cls, server: ServerSettings, refused: Callable[[str], None] = _ignore) -> RequestLimits:
        return cls(server.max_admin_body_bytes, server.max_json_depth, refused)


LIMITS_KEY = "gateway.request_limits"
REFUSED_KEY = "gateway.refused"
"""Lifespan state: the app's refusal counter, for the server layer (gateway/server/protocol.py)."""


def request_limits(scope: Scope) -> RequestLimits:
    """The limits :class:`BoundedRequests` put in ``scope`` (the defaults without it)."""
    limits = scope.get(LIMITS_KEY)
    return limits if isinstance(limits, RequestLimits) else RequestLimits.of(ServerSettings())


class BoundedRequests:
    """Bounds every request to ``app`` before its body is read: a ``Content-Length``
    over the limit is answered 413 at once (the body never read: the connection is
    closed after the answer), and a body without one (chunked) is read up to the limit
    and refused past it (``RequestTooLarge`` raised from ``receive``, which the routes
    answer as 413). The limits in force are read per request and left in the scope
    for the routes' JSON reading (:func:`request_limits`)."""

    __slots__ = ("_app", "_limits")

    def __init__(self, app: ASGIApp, limits: Callable[[], RequestLimits]) -> None:
        self._app = app
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limits = scope[LIMITS_KEY] = self._limits()
        refusal = declared_too_large(scope, limits.body_bytes)
        if refusal is not None:
            limits.refused(TOO_LARGE)
            await send_error(send, refusal)
            return
        size = 0

        async def bounded() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limits.body_bytes:
                    limits.refused(TOO_LARGE)
                    raise over_limit(limits.body_bytes)
            return message

        await self._app(scope, bounded, send)


async def send_bytes(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [JSON_CT, *headers]})
    await send({"type": "http.response.body", "body": body})


def error_headers(err: GatewayError, extra: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = list(extra)
    out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items())
    return out


def openai_error(err: GatewayError) -> tuple[int, bytes]:
    """OpenAI's error envelope (the chat, embeddings and Responses dialects)."""
    return err.http_status, orjson.dumps(err.to_body())


async def send_error(
    send: Send,
    err: GatewayError,
    extra: Iterable[tuple[bytes, bytes]] = (),
    render: Callable[[GatewayError], tuple[int, bytes]] = openai_error,
) -> None:
    """``err`` as an answer, in the envelope ``render`` draws (a dialect's ``render_error``)."""
    status, body = render(err)
    await send_bytes(send, status, body, error_headers(err, extra))


class DisconnectWatch:
    """Cancel the handling task when the client goes away, so that the upstream
    call it is waiting on is cancelled too (and the upstream connection closed).

    Only started after the request body is read: from then on the next ASGI
    ``receive`` returns only when the client disconnects - or once the response
    is complete, which is why :meth:`stop` must be called before the last send.

    :meth:`stop` does not cancel the watching task: the last send completes the
    response, that ``receive`` returns, and the task ends by itself. A cancelled
    task would leave a ``CancelledError`` whose traceback holds the task's frames
    in a reference cycle: about 35 objects a request for the cyclic garbage
    collector to find, on every request (measured with ``gc.callbacks``).
    """

    __slots__ = ("_task", "disconnected", "stopped")

    def __init__(self, receive: Receive) -> None:
        self.disconnected = False
        self.stopped = False
        handler = asyncio.current_task()

        async def watch() -> None:
            message = await receive()
            if message["type"] == "http.disconnect" and handler is not None and not self.stopped:
                self.disconnected = True
                handler.cancel()

        # Held only so that the task is not collected while it waits (the loop keeps a weak reference).
        self._task = asyncio.get_running_loop().create_task(watch())

    def stop(self) -> None:
        self.stopped = True
