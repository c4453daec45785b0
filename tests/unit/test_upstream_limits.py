"""The caps on what an upstream answers (gateway/upstream/http.py), through a real
:class:`AiohttpClient` against a loopback server: redirects are not followed,
bodies stop at their caps as they arrive (Content-Length, wire bytes, decoded
bytes, decompression ratio), and response heads are parsed under the header caps."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.config.upstream import UpstreamSettings
from gateway.errors import UpstreamResponseTooLarge
from gateway.providers.base import WireRequest
from gateway.upstream.http import AiohttpClient

KiB = 1024
MiB = 1024 * KiB
SMALL = UpstreamSettings(
    max_response_bytes=256 * KiB, max_decompressed_bytes=2 * MiB, max_header_bytes=1024, max_headers=16
)


def gzipped(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


class Upstream:
    """Routes answering what each test needs; ``sent[path]`` counts body bytes written."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.witnessed = 0
        self.port = 0

    async def stream(self, request: web.Request, piece: bytes, total: int, **headers: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        self.sent[request.path] = 0
        try:
            while self.sent[request.path] < total:
                await resp.write(piece)
                self.sent[request.path] += len(piece)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    def app(self) -> web.Application:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.port}/witness")

        async def witness(request: web.Request) -> web.Response:
            self.witnessed += 1
            return web.json_response({"followed": True})

        async def declared(request: web.Request) -> web.Response:
            return web.Response(body=b"x" * (300 * KiB), content_type="application/json")

        async def chunked(request: web.Request) -> web.StreamResponse:
            return await self.stream(request, b"x" * 16 * KiB, 64 * MiB, **{"content-type": "application/json"})

        async def fits(request: web.Request) -> web.Response:
            return web.Response(body=b"y" * (200 * KiB), content_type="application/json")

        async def bomb(request: web.Request) -> web.StreamResponse:
            member = gzipped(b"\0" * MiB)  # about 1 KB; members one after another: 1 MiB each
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
            return await self.stream(request, member, 512 * len(member), **headers)

        async def dense(request: web.Request) -> web.Response:
            # random bytes do not compress: only the decoded-size cap can stop them
            data = random.Random(7).randbytes(3 * MiB)
            return web.Response(
                body=gzipped(data), headers={"content-type": "application/json", "content-encoding": "gzip"}
            )

        async def small_gzip(request: web.Request) -> web.Response:
            body = gzipped(b'{"a": 1}' + b" " * (512 * KiB))  # 1:500 but under the ratio floor
            return web.Response(body=body, headers={"content-type": "application/json", "content-encoding": "gzip"})

        async def long_header(request: web.Request) -> web.Response:
            return web.json_response({}, headers={"x-long": "h" * 2000})

        async def many_headers(request: web.Request) -> web.Response:
            return web.json_response({}, headers={f"x-h{i}": "v" for i in range(40)})

        async def event_bomb(request: web.Request) -> web.StreamResponse:
            member = gzipped(b"data: {}\n\n" * (MiB // 10))
            headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
            return await self.stream(request, member, 256 * len(member), **headers)

        app = web.Application()
        for path, handler in {
            "/redirect": redirect,
            "/witness": witness,
            "/declared": declared,
            "/chunked": chunked,
            "/fits": fits,
            "/bomb": bomb,
            "/dense": dense,
            "/small-gzip": small_gzip,
            "/long-header": long_header,
            "/many-headers": many_headers,
            "/event-bomb": event_bomb,
        }.items():
            app.router.add_route("*", path, handler)
        return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    runner = web.AppRunner(up.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.port = runner.addresses[0][1]
    yield up
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    c = AiohttpClient(settings=SMALL)
    yield c
    await c.aclose()


async def body_of(client: AiohttpClient, up: Upstream, path: str, limits: UpstreamSettings | None = None) -> bytes:
    resp = await client.send(
        WireRequest("POST", f"http://127.0.0.1:{up.port}{path}", {}, b"{}"), connect_s=2, first_byte_s=5, limits=limits
    )
    try:
        return await resp.read(10)
    finally:
        resp.close()


async def test_a_redirect_is_answered_as_it_is_never_followed(client: AiohttpClient, upstream: Upstream) -> None:
    resp = await client.send(
        WireRequest("POST", f"http://127.0.0.1:{upstream.port}/redirect", {"x-api-key": "sk-secret"}, b"{}"),
        connect_s=2,
        first_byte_s=5,
    )
    resp.close()
    assert resp.status == 307
    assert upstream.witnessed == 0


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/declared", "max_response_bytes"),  # refused from its Content-Length, unread
        ("/chunked", "max_response_bytes"),  # counted as it arrives
        ("/bomb", "max_decompression_ratio"),
    ],
)
async def test_a_body_over_a_cap_stops_at_once(
    client: AiohttpClient, upstream: Upstream, path: str, limit: str
) -> None:
    with pytest.raises(UpstreamResponseTooLarge) as exc:
        await body_of(client, upstream, path)
    err = exc.value
    assert err.code == "upstream_response_too_large" and err.http_status == 502
    assert err.reason == limit and f"upstream.{limit}" in err.message
    assert err.retryable is False and err.fallback is True
    await asyncio.sleep(0.05)
    assert upstream.sent.get(path, 0) < 8 * MiB, "the upstream was not left writing its whole body"


async def test_the_decoded_size_cap_holds_when_the_ratio_is_modest(client: AiohttpClient, upstream: Upstream) -> None:
    with pytest.raises(UpstreamResponseTooLarge) as exc:
        await body_of(client, upstream, "/dense", UpstreamSettings(max_decompressed_bytes=2 * MiB))
    assert exc.value.reason == "max_decompressed_bytes"


async def test_answers_within_the_caps_are_read_whole(client: AiohttpClient, upstream: Upstream) -> None:
    assert await body_of(client, upstream, "/fits") == b"y" * (200 * KiB)
    small = await body_of(client, upstream, "/small-gzip")
    assert small.startswith(b'{"a": 1}') and len(small) == 8 + 512 * KiB
    # per-exchange limits win over the client's own
    with pytest.raises(UpstreamResponseTooLarge):
        await body_of(client, upstream, "/fits", UpstreamSettings(max_response_bytes=100 * KiB))


@pytest.mark.parametrize(("path", "limit"), [("/long-header", "max_header_bytes"), ("/many-headers", "max_headers")])
async def test_response_heads_over_the_header_caps(
    client: AiohttpClient, upstream: Upstream, path: str, limit: str
) -> None:
    with pytest.raises(UpstreamResponseTooLarge) as exc:
        await body_of(client, upstream, path)
    assert exc.value.reason == limit
    assert "hhhh" not in exc.value.message, "the offending line is not quoted"
    assert await body_of(client, upstream, path, UpstreamSettings()) == b"{}", "within the default caps"


async def test_a_compressed_stream_stops_at_the_ratio(client: AiohttpClient, upstream: Upstream) -> None:
    resp = await client.send(
        WireRequest("POST", f"http://127.0.0.1:{upstream.port}/event-bomb", {}, b"{}"), connect_s=2, first_byte_s=5
    )
    received = 0
    try:
        with pytest.raises(UpstreamResponseTooLarge) as exc:
            async for piece in resp.chunks(5, asyncio.get_running_loop().time() + 10):
                received += len(piece)
    finally:
        resp.close()
    assert exc.value.reason == "max_decompression_ratio"
    assert received < 8 * MiB
