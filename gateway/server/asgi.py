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
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from gateway.errors import GatewayError, RequestTooLarge

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


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is sane, else a fresh one."""
    given = header(scope, b"x-request-id")
    if given and len(given) <= 128 and given.isascii() and given.replace(b"-", b"").replace(b"_", b"").isalnum():
        return given.decode("ascii")
    return "req_" + os.urandom(12).hex()


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes (checked
    against Content-Length up front and while reading)."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLarge(f"the request body is {int(length)} bytes; the limit is {limit}")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def send_bytes(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [JSON_CT, *headers]})
    await send({"type": "http.response.body", "body": body})


def error_headers(err: GatewayError, extra: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = list(extra)
    out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items())
    return out


async def send_error(send: Send, err: GatewayError, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, err.http_status, orjson.dumps(err.to_body()), error_headers(err, extra))


class DisconnectWatch:
    """Cancel the handling task when the client goes away, so that the upstream
    call it is waiting on is cancelled too (and the upstream connection closed).

    Only started after the request body is read: from then on the next ASGI
    ``receive`` returns only when the client disconnects - or once the response
    is complete, which is why :meth:`stop` must be called before the last send.
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

        self._task = asyncio.get_running_loop().create_task(watch())

    def stop(self) -> None:
        self.stopped = True
        self._task.cancel()
