"""Writing a chat answer as server-sent events: a cached answer replayed at
once, or a live stream relayed batch by batch once its first chunk is in hand.

A stream that fails after its first byte cannot change its status any more: it
ends with an error event (which the openai SDK raises as an ``APIError``) and
no ``[DONE]``. A stream is charged before its last bytes (``[DONE]`` or the error event)
are sent; a client that goes away is still charged the usage the upstream reported.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from gateway.canonical import JSON
from gateway.dialects.openai import SSE_DONE
from gateway.errors import UpstreamError
from gateway.policies.replay import ChunkAssembler
from gateway.server.asgi import SSE_HEADERS
from gateway.server.exchange import AppState, Exchange
from gateway.server.service import OpenStream
from gateway.server.traffic import TrafficControl

log = logging.getLogger("gateway.requests")


def render_chunks(chunks: list[JSON], include_usage: bool) -> bytes:
    out = []
    for chunk in chunks:
        if not include_usage and not chunk.get("choices"):
            continue
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(out)


class StreamWriter:
    """The SSE responses of the chat handler; one per app."""

    def __init__(self, app: AppState) -> None:
        self._app = app

    async def replay(self, ex: Exchange, chunks: list[JSON], req: JSON) -> None:
        """A whole stream at once: a cached answer replayed."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        ex.started = ex.streamed = True
        ex.stop_watch()
        await ex.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        await ex.send({"type": "http.response.body", "body": render_chunks(chunks, include_usage) + SSE_DONE})
        first_chunk_seen(self._app, ex)

    async def stream(self, ex: Exchange, stream: OpenStream, req: JSON, traffic: TrafficControl) -> None:
        """Relay a live stream, then charge its usage and end its ticket."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        ticket = ex.ticket
        assert ticket is not None
        access = self._app.access_log
        keep = ChunkAssembler() if ticket.cache_mode.store or (access is not None and access.payloads) else None
        send = ex.send
        ex.started = ex.streamed = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        await send(
            {"type": "http.response.body", "body": render_chunks(stream.first, include_usage), "more_body": True}
        )
        first_chunk_seen(self._app, ex)
        if keep is not None:
            keep.extend(stream.first)
        tail, ok = SSE_DONE, True
        try:
            async for batch in stream.rest():
                if keep is not None:
                    keep.extend(batch)
                data = render_chunks(batch, include_usage)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except UpstreamError as err:
            stream_broke(self._app, ex, err)
            tail, ok = b"data: " + orjson.dumps(err.to_body()) + b"\n\n", False
        except asyncio.CancelledError:
            charge_stream(ex, stream, traffic)  # the client went away: charge what the upstream reported
            raise
        ex.stop_watch()
        # Charged (and, on the embedded store, journaled) before the last bytes go out, so a
        # gateway killed in between has recorded every stream its clients saw complete.
        usage = charge_stream(ex, stream, traffic)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        ex.answer = keep.completion() if keep is not None and ok else None
        await traffic.end(ticket, usage=usage, answer=ex.answer)


def first_chunk_seen(app: AppState, ex: Exchange) -> None:
    """The time to first chunk, in the request and the server TTFT histogram."""
    metrics = app.metrics
    ex.ttft = time.perf_counter() - ex.began
    exemplar = ex.span.exemplar if ex.span is not None else None
    metrics.child(metrics.server_ttft, "chat", ex.alias).observe(ex.ttft, exemplar)


def stream_broke(app: AppState, ex: Exchange, err: UpstreamError) -> None:
    """A stream that failed after its first byte: logged and counted (its end is an error event)."""
    log.warning("stream %s broke after its first byte: %s", ex.rid.decode(), err.message)
    app.metrics.truncated_streams.labels(ex.alias).inc()


def charge_stream(ex: Exchange, stream: OpenStream, traffic: TrafficControl) -> JSON | None:
    """Charge the usage the upstream reported on ``stream`` (also when it was cut short)."""
    assert ex.ticket is not None
    usage = ex.usage = stream.decoder.usage
    traffic.charge(ex.ticket, ex.trace.deployment, usage)
    return usage
