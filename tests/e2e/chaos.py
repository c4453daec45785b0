"""A hostile upstream on loopback: an OpenAI/Anthropic-shaped server whose answers
are attacks, chosen by the request's ``model``, in a thread of its own.

- ``redirect``: ``302`` to the *witness*, a second server on another port that
  records every request it gets (it must get none);
- ``huge``: a ``200`` JSON body of ``HUGE_BYTES``, streamed in 1 MiB pieces;
- ``bomb``: a gzip answer of about 1 MB that inflates to 1 GiB (1024 gzip members
  of 1 MiB of zeros each);
- ``endless-line``: an event stream whose first line never ends (``ENDLESS_BYTES``);
- ``echo-key``: ``401`` whose error message quotes the credential headers received;
- ``echo-page``: ``500`` HTML page quoting them, plus a ``PAGE_MARKER``;
- ``echo-stream``: an event stream with one good chunk, then an error event quoting them;
- anything else: a normal chat completion (or stream).

Every answer stops when the gateway hangs up, and none writes more than it says.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import zlib
from typing import Any

import orjson
from aiohttp import web

MiB = 1024 * 1024
HUGE_BYTES = 200 * MiB
ENDLESS_BYTES = 64 * MiB
PAGE_MARKER = "INTERNAL-PAGE-BODY-7f3a"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-custom-auth")


def gzip_bomb(members: int = 1024) -> bytes:
    """``members`` gzip members of 1 MiB of zeros: about 1 KB each compressed."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    one = c.compress(b"\0" * MiB) + c.flush()
    return one * members


def completion(model: str, text: str = "ok") -> dict[str, Any]:
    return {
        "id": "chatcmpl-chaos",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def chunk(model: str, text: str) -> bytes:
    body = {
        "id": "chatcmpl-chaos",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class ChaosUpstream:
    """The hostile upstream and its witness, each on a free loopback port."""

    def __init__(self) -> None:
        self.witnessed: list[dict[str, str]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._bomb = gzip_bomb()
        self._lock = threading.Lock()
        self._socks = [socket.socket(), socket.socket()]
        for s in self._socks:
            s.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socks[0].getsockname()[1]}"
        self.witness_url = f"http://127.0.0.1:{self._socks[1].getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- the witness -------------------------------------------------------------------

    async def _witness(self, request: web.Request) -> web.Response:
        with self._lock:
            self.witnessed.append({k.lower(): v for k, v in request.headers.items()})
        await request.read()
        return web.json_response(completion("witness", "the redirect was followed"))

    # --- the hostile upstream ------------------------------------------------------------

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model"))
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append((model, headers))
        quoted = " / ".join(f"{h}={headers[h]}" for h in CREDENTIAL_HEADERS if h in headers)
        if model == "redirect":
            raise web.HTTPFound(self.witness_url + "/v1/chat/completions")
        if model == "huge":
            return await self._stream_bytes(request, "application/json", b"[" + b" " * (MiB - 1), HUGE_BYTES)
        if model == "bomb":
            resp = web.StreamResponse(headers={"content-type": "application/json", "content-encoding": "gzip"})
            resp.content_length = len(self._bomb)
            await resp.prepare(request)
            for i in range(0, len(self._bomb), 64 * 1024):
                await resp.write(self._bomb[i : i + 64 * 1024])
            return resp
        if model == "endless-line":
            return await self._stream_bytes(request, "text/event-stream", b"data: " + b"x" * (MiB - 6), ENDLESS_BYTES)
        if model == "echo-key":
            error = {"message": f"Incorrect API key provided: {quoted}", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "invalid_api_key"}}, status=401)
        if model == "echo-page":
            page = f"<html><body>{PAGE_MARKER} upstream saw {quoted}</body></html>"
            return web.Response(status=500, text=page, content_type="text/html")
        if body.get("stream"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(chunk(model, "first"))
            if model == "echo-stream":
                await asyncio.sleep(0.2)  # the first chunk reaches the client on its own
                event = {"error": {"message": f"stream failed for {quoted}"}}
                await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
            else:
                await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(completion(model))

    async def _stream_bytes(
        self, request: web.Request, content_type: str, piece: bytes, total: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": content_type})
        await resp.prepare(request)
        sent = 0
        try:
            while sent < total:
                await resp.write(piece)
                sent += len(piece)
        except (ConnectionError, RuntimeError):
            pass  # the gateway hung up, as it should
        return resp

    # --- life --------------------------------------------------------------------------------

    async def _start(self) -> None:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", self._answer)
        upstream.router.add_post("/v1/messages", self._answer)
        witness = web.Application()
        witness.router.add_route("*", "/{tail:.*}", self._witness)
        for app, sock in zip((upstream, witness), self._socks, strict=True):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)

    def __enter__(self) -> ChaosUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for runner in self._runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        for s in self._socks:
            s.close()

    def received(self, model: str) -> list[dict[str, str]]:
        with self._lock:
            return [h for m, h in self.requests if m == model]
