"""Shared helpers for tests driven by the recorded payloads in ``shared/fixtures``."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.canonical import JSON
from gateway.providers.base import Provider, SSEEvent, StreamDecoder, Target
from gateway.providers.sse import SSEParser
from gateway.state.base import BackendUnavailable, Record
from gateway.state.embedded import EmbeddedBackend

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def load_json(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


def load_bytes(rel: str) -> bytes:
    return (FIXTURES / rel).read_bytes()


def random_pieces(raw: bytes, seed: int, max_size: int = 7) -> list[bytes]:
    """``raw`` cut into pieces of 1..max_size bytes (deterministic per seed)."""
    rng = random.Random(seed)
    pieces: list[bytes] = []
    pos = 0
    while pos < len(raw):
        size = rng.randint(1, max_size)
        pieces.append(raw[pos : pos + size])
        pos += size
    return pieces


def sse_events(pieces: Iterable[bytes]) -> list[SSEEvent]:
    """Every server-sent event in ``pieces``, parsed as they would arrive."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


def decode_events(decoder: StreamDecoder, events: Iterable[SSEEvent]) -> list[JSON]:
    """Every chunk a decoder gives for ``events``, ``finish()`` included."""
    chunks: list[JSON] = []
    for event in events:
        chunks.extend(decoder.on_event(event))
    chunks.extend(decoder.finish())
    return chunks


class FlakyBackend(EmbeddedBackend):
    """The real embedded backend whose record reads fail on demand, and which
    remembers every record written (to prove what it was given)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.down = False
        self.gets = 0
        self.written: list[tuple[str, str, Record]] = []

    async def get(self, table: str, id: str) -> Record | None:
        self.gets += 1
        if self.down:
            raise BackendUnavailable("state backend is down (test)")
        return await super().get(table, id)

    async def put(self, table: str, id: str, record: Record) -> None:
        self.written.append((table, id, dict(record)))
        await super().put(table, id, record)


class Clock:
    """A monotonic clock tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user(text: str) -> JSON:
    """A canonical user message."""
    return {"role": "user", "content": text}


def without(d: JSON, *keys: str) -> JSON:
    """``d`` less ``keys`` (a new dict)."""
    return {k: v for k, v in d.items() if k not in keys}


def sent_body(provider: Provider, req: JSON, target: Target) -> JSON:
    """The JSON body ``provider`` sends for the canonical ``req`` (not streamed)."""
    body = provider.chat_request(req, target, stream=False).body
    assert body is not None
    out: JSON = json.loads(body)
    return out
