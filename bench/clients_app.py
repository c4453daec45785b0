"""A minimal ASGI app that forwards every POST to one upstream URL with one shared
HTTP client (aiohttp or httpx): the floor of this design, for ``python -m bench.clients``
(which client) and ``python -m bench.ratio`` (the gateway's share of it).

Run: ``python -m bench.clients_app --client aiohttp --port 9000 --upstream URL
[--stream-upstream URL] [--server granian]`` (uvicorn, uvloop, httptools, one process; or
granian, for ``python -m bench.servers``: does another ASGI server raise the floor?). ``GET /health``
answers 200. With ``--stream-upstream``, a POST that accepts ``text/event-stream`` goes
there instead and its answer is relayed piece by piece as it arrives (the streaming
floor); nothing else is looked at: no JSON parse, no auth, no metrics.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import aiohttp
import httpx
import uvicorn

from gateway.server.collector import tune_collector

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CLIENTS = ("aiohttp", "httpx")
SERVERS = ("uvicorn", "granian")
GRANIAN_GROUP = "uv sync --locked --group test --group servers"
"""What installs granian (the lock's ``servers`` group: not needed to run or test the gateway)."""
GC_THRESHOLD = 100_000
"""The default of the gateway's ``server.gc_threshold``: the floor app's collector is set up as
``gateway serve`` sets up the gateway's (gateway/server/collector.py), so that the
floor keeps every advantage the gateway has that is not the gateway's own work."""
_ENV = ("BENCH_FLOOR_CLIENT", "BENCH_FLOOR_UPSTREAM", "BENCH_FLOOR_STREAM_UPSTREAM")
"""How the granian worker's app factory (:func:`granian_app`) gets the app's options."""
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}


class Forwarder(Protocol):
    async def start(self) -> None: ...
    async def post(self, body: bytes) -> tuple[int, bytes, bytes]: ...  # status, content-type, body
    async def relay(self, url: str, body: bytes, send: Send) -> None: ...  # a stream, piece by piece
    async def close(self) -> None: ...


async def _start(send: Send, status: int, ctype: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})


async def _piece(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


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

    async def relay(self, url: str, body: bytes, send: Send) -> None:
        assert self.session is not None
        async with self.session.post(url, data=body, headers=_STREAM_HEADERS) as resp:
            await _start(send, resp.status, resp.headers.get("content-type", "text/event-stream").encode())
            async for data in resp.content.iter_any():
                await _piece(send, data)
        await _piece(send, b"", more=False)

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

    async def relay(self, url: str, body: bytes, send: Send) -> None:
        assert self.client is not None
        async with self.client.stream("POST", url, content=body, headers=_STREAM_HEADERS) as resp:
            await _start(send, resp.status_code, resp.headers.get("content-type", "text/event-stream").encode())
            async for data in resp.aiter_raw():
                await _piece(send, data)
        await _piece(send, b"", more=False)

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

    def __init__(self, forwarder: Forwarder, stream_url: str | None = None) -> None:
        self.forwarder = forwarder
        self.stream_url = stream_url

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
            if self.stream_url is not None and _wants_stream(scope):
                await self.forwarder.relay(self.stream_url, b"".join(chunks), send)
                return
            status, ctype, data = await self.forwarder.post(b"".join(chunks))
        except (aiohttp.ClientError, httpx.HTTPError, OSError) as exc:
            await _respond(send, 502, b"text/plain", f"upstream error: {exc!r}".encode())
            return
        await _respond(send, status, ctype, data)


def _wants_stream(scope: Message) -> bool:
    return any(name == b"accept" and b"text/event-stream" in value for name, value in scope["headers"])


def app_from_env() -> ForwardApp:
    """The app as :func:`main` builds it, its options from the environment (granian
    imports the app in its worker process, by name, and passes it no arguments)."""
    client, upstream, stream_upstream = (os.environ.get(name, "") for name in _ENV)
    return ForwardApp(make_forwarder(client, upstream), stream_upstream or None)


def granian_app() -> ForwardApp:
    """granian's factory (in its worker process): :func:`app_from_env`, the collector set up."""
    app = app_from_env()
    tune_collector(GC_THRESHOLD)
    return app


def granian_missing() -> str | None:
    """Why ``--server granian`` cannot run here (None: it can)."""
    if importlib.util.find_spec("granian") is None:
        return f"granian is not installed: {GRANIAN_GROUP}"
    return None


def serve_granian(port: int) -> None:
    """The app under granian, set up as uvicorn is for :func:`main`: one worker process, an
    asyncio loop on uvloop, HTTP/1.1, no websockets, no access log; granian's own runtime
    (its Rust I/O threads) single-threaded, as the process is pinned to one core."""
    from granian import Granian  # the servers group's: imported only when asked for
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes

    Granian(
        "bench.clients_app:granian_app",
        factory=True,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
    ).serve()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.clients_app", description=__doc__)
    p.add_argument("--client", choices=CLIENTS, required=True)
    p.add_argument("--upstream", required=True, help="URL every request is POSTed to")
    p.add_argument("--stream-upstream", default=None, help="URL a POST accepting text/event-stream is relayed from")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server", choices=SERVERS, default="uvicorn", help="the ASGI server (default uvicorn)")
    args = p.parse_args(argv)
    if args.server == "granian":
        missing = granian_missing()
        if missing is not None:
            p.error(missing)
        os.environ.update(zip(_ENV, (args.client, args.upstream, args.stream_upstream or ""), strict=True))
        serve_granian(args.port)
        return
    app = ForwardApp(make_forwarder(args.client, args.upstream), args.stream_upstream)
    tune_collector(GC_THRESHOLD)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
