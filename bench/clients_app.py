"""A minimal ASGI app that forwards every POST to one upstream URL with one shared
HTTP client (aiohttp or httpx), for ``python -m bench.clients``.

Run: ``python -m bench.clients_app --client aiohttp --port 9000 --upstream URL``
(uvicorn, uvloop, httptools, one process). ``GET /health`` answers 200.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import aiohttp
import httpx
import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CLIENTS = ("aiohttp", "httpx")


class Forwarder(Protocol):
    async def start(self) -> None: ...
    async def post(self, body: bytes) -> tuple[int, bytes, bytes]: ...  # status, content-type, body
    async def close(self) -> None: ...


class AiohttpForwarder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def post(self, body: bytes) -> tuple[int, bytes, bytes]:
        assert self.session is not None
        async with self.session.post(self.url, data=body, headers={"content-type": "application/json"}) as resp:
            data = await resp.read()
            return resp.status, resp.headers.get("content-type", "application/json").encode(), data

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class HttpxForwarder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.client = httpx.AsyncClient(limits=limits, timeout=30.0)

    async def post(self, body: bytes) -> tuple[int, bytes, bytes]:
        assert self.client is not None
        resp = await self.client.post(self.url, content=body, headers={"content-type": "application/json"})
        return resp.status_code, resp.headers.get("content-type", "application/json").encode(), resp.content

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def make_forwarder(client: str, url: str) -> Forwarder:
    if client == "aiohttp":
        return AiohttpForwarder(url)
    if client == "httpx":
        return HttpxForwarder(url)
    raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")


async def _respond(send: Send, status: int, ctype: bytes, body: bytes) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ForwardApp:
    """ASGI 3 app: lifespan opens/closes the client, POST forwards, GET /health answers."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.forwarder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.forwarder.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope["path"] == "/health":
            await _respond(send, 200, b"text/plain", b"ok")
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            status, ctype, data = await self.forwarder.post(b"".join(chunks))
        except (aiohttp.ClientError, httpx.HTTPError, OSError) as exc:
            await _respond(send, 502, b"text/plain", f"upstream error: {exc!r}".encode())
            return
        await _respond(send, status, ctype, data)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.clients_app", description=__doc__)
    p.add_argument("--client", choices=CLIENTS, required=True)
    p.add_argument("--upstream", required=True, help="URL every request is POSTed to")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = ForwardApp(make_forwarder(args.client, args.upstream))
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
