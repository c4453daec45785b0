"""Streams of the non-OpenAI dialects: canonical chunks through the dialect's
encoder, or, on the same-format path, the upstream's own events relayed as they
came. Charging, the cache and the truncated-stream metric work as for chat
completions (gateway/server/streaming.py): a stream that breaks after its first
byte ends with the dialect's error event.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.canonical import JSON
from gateway.errors import UpstreamError
from gateway.policies.replay import ChunkAssembler
from gateway.server.asgi import SSE_HEADERS
from gateway.server.exchange import AppState, Exchange
from gateway.server.service import OpenStream
from gateway.server.streaming import charge_stream, first_chunk_seen, stream_broke
from gateway.server.traffic import TrafficControl

if TYPE_CHECKING:
    from gateway.server.dialect_flow import Turn


class DialectStreamWriter:
    def __init__(self, app: AppState) -> None:
        self._app = app

    async def replay(self, ex: Exchange, chunks: list[JSON], turn: Turn) -> None:
        """A cached answer as a whole stream."""
        encoder = turn.encoder()
        ex.started = ex.streamed = True
        ex.stop_watch()
        await ex.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        data = encoder.chunks(chunks) + encoder.finish()
        if turn.done is not None:  # stored before the stream's end reaches the client
            await turn.done(turn.final())
        await ex.send({"type": "http.response.body", "body": data})
        first_chunk_seen(self._app, ex)

    async def stream(self, ex: Exchange, stream: OpenStream, turn: Turn, traffic: TrafficControl) -> None:
        ticket = ex.ticket
        assert ticket is not None
        access = self._app.access_log
        keep = ChunkAssembler() if ticket.cache_mode.store or (access is not None and access.payloads) else None
        raw = stream.raw
        encoder = turn.encoder() if raw is None else None

        def render(batch: list[JSON]) -> bytes:
            if keep is not None:
                keep.extend(batch)
            if encoder is not None:
                return encoder.chunks(batch)
            assert raw is not None
            data = turn.events(raw)
            raw.clear()
            return data

        send = ex.send
        ex.started = ex.streamed = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        await send({"type": "http.response.body", "body": render(stream.first), "more_body": True})
        first_chunk_seen(self._app, ex)
        ok = True
        try:
            async for batch in stream.rest():
                data = render(batch)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = encoder.finish() if encoder is not None else b""
        except UpstreamError as err:
            stream_broke(self._app, ex, err)
            tail, ok = (encoder or turn.encoder()).error(err), False
        except asyncio.CancelledError:
            charge_stream(ex, stream, traffic)
            raise
        ex.stop_watch()
        usage = charge_stream(ex, stream, traffic)
        if turn.done is not None:  # stored before the stream's end reaches the client
            await turn.done(turn.final() if ok else None)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        ex.answer = keep.completion() if keep is not None and ok else None
        await traffic.end(ticket, usage=usage, answer=ex.answer)
