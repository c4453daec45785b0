"""The one seam between the gateway and the network: send a :class:`WireRequest`,
get the status and headers back, then read the body whole or piece by piece.

The implementation behind it was chosen by measurement (README, "Performance"):
aiohttp's client, one pooled session for the whole app (it keeps a keep-alive
pool per upstream origin). Transport failures are mapped here, once, onto the
gateway's error tree so nothing above knows which library is underneath:

- connect refused/reset, DNS failure, server closed the connection -> UpstreamUnavailable
- no headers in time / connect timeout / body stalled              -> UpstreamTimeout
- body cut short (content-length or chunked framing broken)         -> UpstreamBadResponse
- an address the ``upstream`` rules refuse (gateway/upstream/guard.py) -> UpstreamAddressRefused
- an answer over one of the ``upstream`` caps                       -> UpstreamResponseTooLarge

Upstream answers are untrusted input: redirects are never followed (the caller
turns a 3xx into ``upstream_redirect``), the status line and headers are parsed
under ``max_header_bytes``/``max_headers``, and bodies are counted as they arrive:
a non-streaming body stops at ``max_response_bytes`` on the wire or
``max_decompressed_bytes`` decoded, and any body (streams too) stops when it
inflates more than ``max_decompression_ratio``. aiohttp decompresses in bounded
steps as the body is read, so a compressed bomb never inflates past the cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.config.upstream import RATIO_FLOOR_BYTES, UpstreamSettings
from gateway.errors import (
    UpstreamAddressRefused,
    UpstreamBadResponse,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.base import WireRequest
from gateway.upstream.guard import GuardedResolver, guarded_socket_factory, refusal_in


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    @property
    def content_type(self) -> str: ...

    async def read(self, timeout_s: float) -> bytes:
        """The whole body, within the caps (UpstreamResponseTooLarge as soon as one is passed)."""
        ...

    def chunks(self, idle_s: float, deadline: float) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; raises UpstreamTimeout when none comes for
        ``idle_s`` or the loop time passes ``deadline``, UpstreamResponseTooLarge
        when the body inflates more than ``max_decompression_ratio``."""
        ...

    def close(self) -> None:
        """Give the connection back (or drop it, if the body was not read)."""
        ...


class HTTPClient(Protocol):
    async def send(
        self, req: WireRequest, *, connect_s: float, first_byte_s: float, limits: UpstreamSettings | None = None
    ) -> UpstreamResponse:
        """Send and wait for the response headers (at most ``first_byte_s``); never
        follows a redirect. ``limits``: the caps of this exchange (the client's own
        settings when None)."""
        ...

    def connection_counts(self) -> tuple[int, int]:
        """Open connections to upstreams now: (in use, idle in the pool)."""
        ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_limits", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse, limits: UpstreamSettings) -> None:
        self._resp = resp
        self._limits = limits

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
        limits = self._limits
        length = self._resp.content_length
        if length is not None and length > limits.max_response_bytes:
            raise _too_large("max_response_bytes", limits.max_response_bytes, f"announces {length} bytes")
        content = self._resp.content
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout_s):
                while piece := await content.readany():
                    size += len(piece)
                    _check_body(limits, size, content.total_raw_bytes, whole=True)
                    parts.append(piece)
        except TimeoutError:
            raise UpstreamTimeout(f"upstream body not complete within {timeout_s:.3g}s") from None
        except aiohttp.ClientPayloadError:
            raise UpstreamBadResponse("upstream body was cut short") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream connection lost while reading: {_describe(exc)}") from None
        return b"".join(parts)

    async def chunks(self, idle_s: float, deadline: float) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        content = self._resp.content
        limits = self._limits
        size = 0
        try:
            async with asyncio.timeout(None) as cm:
                while True:
                    cm.reschedule(min(loop.time() + idle_s, deadline))
                    piece = await content.readany()
                    cm.reschedule(None)
                    if not piece:
                        return
                    size += len(piece)
                    _check_body(limits, size, content.total_raw_bytes, whole=False)
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


def _too_large(limit: str, value: float, what: str) -> UpstreamResponseTooLarge:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return UpstreamResponseTooLarge(
        f"the upstream's answer {what}, over upstream.{limit} ({shown}); it was not read further", limit=limit
    )


def _check_body(limits: UpstreamSettings, decoded: int, wire: int, *, whole: bool) -> None:
    """Raise UpstreamResponseTooLarge when a body passed a cap: ``decoded`` bytes
    read so far, ``wire`` bytes received for them. ``whole``: a non-streaming body
    (the size caps apply; a stream is relayed as it comes and has only the ratio)."""
    if whole and wire > limits.max_response_bytes:
        raise _too_large("max_response_bytes", limits.max_response_bytes, f"passed {wire} bytes")
    if whole and decoded > limits.max_decompressed_bytes:
        raise _too_large("max_decompressed_bytes", limits.max_decompressed_bytes, f"inflated past {decoded} bytes")
    if decoded > RATIO_FLOOR_BYTES and decoded > limits.max_decompression_ratio * max(wire, 1):
        raise _too_large(
            "max_decompression_ratio", limits.max_decompression_ratio, f"inflated {wire} bytes into {decoded}"
        )


class AiohttpClient:
    """One ``aiohttp.ClientSession`` for every upstream; create inside a running loop.

    ``settings``: the address rules (fixed for the client's life: its connector's
    resolver and socket hook apply them to every new connection) and the default caps."""

    def __init__(
        self,
        *,
        max_connections_per_host: int = 1000,
        inject: Callable[[dict[str, str]], None] | None = None,
        settings: UpstreamSettings | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """``inject`` adds trace context headers (``traceparent``) to each upstream
        request; None when tracing is off. ``resolver``: the name lookups the address
        rules wrap (aiohttp's default resolver when None)."""
        self._settings = settings if settings is not None else UpstreamSettings()
        self._resolver = GuardedResolver(self._settings, resolver)
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=max_connections_per_host,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            enable_cleanup_closed=False,
            resolver=self._resolver,
            socket_factory=guarded_socket_factory(self._settings),
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

    async def send(
        self, req: WireRequest, *, connect_s: float, first_byte_s: float, limits: UpstreamSettings | None = None
    ) -> UpstreamResponse:
        limits = limits if limits is not None else self._settings
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
                resp = await self._session.request(
                    req.method,
                    req.url,
                    data=req.body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    max_line_size=limits.max_header_bytes,
                    max_field_size=limits.max_header_bytes,
                    max_headers=limits.max_headers,
                )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(f"no response from upstream within {first_byte_s:.3g}s") from None
        except aiohttp.ClientConnectorError as exc:
            refused = refusal_in(exc)
            if refused is not None:
                raise UpstreamAddressRefused(refused) from None
            raise UpstreamUnavailable(f"cannot connect to upstream: {_describe(exc)}") from None
        except aiohttp.ClientResponseError as exc:
            raise _head_error(exc, limits) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream connection failed: {_describe(exc)}") from None
        return _AiohttpResponse(resp, limits)

    async def aclose(self) -> None:
        await self._session.close()
        await self._resolver.close()  # given to the connector, so not closed with it


def _head_error(
    exc: aiohttp.ClientResponseError, limits: UpstreamSettings
) -> UpstreamBadResponse | UpstreamUnavailable:
    """A response head aiohttp could not parse: over a header cap, or malformed.
    The parser's message quotes the offending line; it is not passed on."""
    text = str(exc.message)
    if "Too many headers" in text:
        return _too_large("max_headers", limits.max_headers, "has more header lines than allowed")
    if "Got more than" in text:
        return _too_large("max_header_bytes", limits.max_header_bytes, "has a status or header line over the cap")
    return UpstreamUnavailable(f"upstream connection failed: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
