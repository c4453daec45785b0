"""The one seam between the gateway and the network: send a :class:`WireRequest`,
get the status and headers back, then read the body whole or piece by piece.

The implementation behind it was chosen by measurement (README, "Performance"):
aiohttp's client, one pooled session for the whole app (it keeps a keep-alive
pool per upstream origin). Transport failures are mapped here, once, onto the
gateway's error tree so nothing above knows which library is underneath:

- connect refused/reset, DNS failure, server closed the connection -> UpstreamUnavailable
- no headers in time / connect timeout / body stalled              -> UpstreamTimeout
- body cut short (content-length or chunked framing broken)         -> UpstreamBadResponse
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import aiohttp

from gateway.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnavailable
from gateway.providers.base import WireRequest


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    @property
    def content_type(self) -> str: ...

    async def read(self, timeout_s: float) -> bytes: ...

    def chunks(self, idle_s: float, deadline: float) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; raises UpstreamTimeout when none comes for
        ``idle_s`` or the loop time passes ``deadline``."""
        ...

    def close(self) -> None:
        """Give the connection back (or drop it, if the body was not read)."""
        ...


class HTTPClient(Protocol):
    async def send(self, req: WireRequest, *, connect_s: float, first_byte_s: float) -> UpstreamResponse:
        """Send and wait for the response headers (at most ``first_byte_s``)."""
        ...

    def connection_counts(self) -> tuple[int, int]:
        """Open connections to upstreams now: (in use, idle in the pool)."""
        ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    @property
    def content_type(self) -> str:
        return self._resp.content_type

    async def read(self, timeout_s: float) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._resp.read()
        except TimeoutError:
            raise UpstreamTimeout(f"upstream body not complete within {timeout_s:.3g}s") from None
        except aiohttp.ClientPayloadError:
            raise UpstreamBadResponse("upstream body was cut short") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream connection lost while reading: {_describe(exc)}") from None

    async def chunks(self, idle_s: float, deadline: float) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        content = self._resp.content
        try:
            async with asyncio.timeout(None) as cm:
                while True:
                    cm.reschedule(min(loop.time() + idle_s, deadline))
                    piece = await content.readany()
                    cm.reschedule(None)
                    if not piece:
                        return
                    yield piece
        except TimeoutError:
            if loop.time() >= deadline:
                raise UpstreamTimeout("upstream stream exceeded the total timeout") from None
            raise UpstreamTimeout(f"upstream stream idle for more than {idle_s:.3g}s") from None
        except aiohttp.ClientPayloadError:
            raise UpstreamBadResponse("upstream stream was cut short (truncated)") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream connection lost mid-stream: {_describe(exc)}") from None

    def close(self) -> None:
        self._resp.release() if self._resp.content.is_eof() else self._resp.close()


class AiohttpClient:
    """One ``aiohttp.ClientSession`` for every upstream; create inside a running loop."""

    def __init__(
        self, *, max_connections_per_host: int = 1000, inject: Callable[[dict[str, str]], None] | None = None
    ) -> None:
        """``inject`` adds trace context headers (``traceparent``) to each upstream
        request; None when tracing is off."""
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=max_connections_per_host,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._inject = inject

    def connection_counts(self) -> tuple[int, int]:
        # aiohttp has no public count; these two attributes have held it through the 3.x series
        connector = self._session.connector
        in_use = len(getattr(connector, "_acquired", ()))
        idle = sum(len(conns) for conns in getattr(connector, "_conns", {}).values())
        return in_use, idle

    async def send(self, req: WireRequest, *, connect_s: float, first_byte_s: float) -> UpstreamResponse:
        timeout = self._timeouts.get(connect_s)
        if timeout is None:
            timeout = self._timeouts[connect_s] = aiohttp.ClientTimeout(
                total=None, connect=connect_s, sock_connect=connect_s
            )
        headers = req.headers
        if self._inject is not None:
            headers = dict(headers)
            self._inject(headers)
        try:
            async with asyncio.timeout(first_byte_s):
                resp = await self._session.request(req.method, req.url, data=req.body, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(f"no response from upstream within {first_byte_s:.3g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(f"cannot connect to upstream: {_describe(exc)}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream connection failed: {_describe(exc)}") from None
        return _AiohttpResponse(resp)

    async def aclose(self) -> None:
        await self._session.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
