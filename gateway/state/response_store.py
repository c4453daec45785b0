"""Stored OpenAI Responses, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

The gateway issues the response ids and keeps each stored response in the state
backend (embedded: SQLite; Redis: shared by every replica) for
``responses.store_ttl_s``, so a continuation works whichever replica and whichever
provider serves the next turn. Records are filed under the API key that made them: a
key can never read, continue or delete another key's responses (they are simply
not found).

A conversation is a chain of records. Storing every turn with the whole conversation
before it would make a long conversation's storage grow with the square of its turns;
instead a record holds a *segment* of the conversation (its own turn's items, or those
of several consecutive turns) and names the earlier records whose segments come before
it (``chain``, oldest first). A continuation reads them all in one call to the backend.
When a turn is stored, the segments at the end of its chain that are not more than
:data:`MERGE_FACTOR` times larger than what it holds are folded into its own segment
(the rule of a binary counter, in bytes): so the segments shrink along a chain by that
factor at least, a chain is a few dozen records at most, and each item is written about
log2(turns) times, not once per later turn (100 turns of 20 KB: 3.8 times the
conversation's size; 16,000 turns of 1 KB: 7.1 times; docs/dialects.md). A segment
that would expire before :data:`FRESH_SHARE` of ``store_ttl_s`` from now (an old one,
or one written under a shorter TTL) is folded too, with everything after it, so every
record a continuation needs outlives it by that share of the TTL.

A continuation whose earlier record is gone (deleted, or evicted) cannot be rebuilt
(:class:`BrokenConversation`). Records written before chains (no ``meta``) hold the
whole conversation and read as one segment whose expiry is unknown, so the next turn
folds it into its own record.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.state.base import StateBackend

log = logging.getLogger("gateway.state")

MERGE_FACTOR = 1.5
"""A chain's last segment is folded into the new record's while it is at most this many
times the size of what the new record holds."""
FRESH_SHARE = 0.9
"""A segment is folded when it would expire sooner than this share of the TTL from now."""


@dataclass(frozen=True, slots=True)
class Link:
    """One earlier record of a chain: its id, its segment's size (JSON bytes) and its expiry."""

    response_id: str
    size: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One record: a Response, its segment of the conversation and where that segment stands."""

    response: JSON
    items: list[JSON]
    """This record's segment: its own turn's items, or those of several turns up to it."""
    link: Link
    """This record as a later record's chain names it."""
    chain: list[Link]
    """The earlier records whose segments come before this one, oldest first."""
    total_bytes: int
    """The whole conversation's items up to this record as JSON, in bytes."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored response with every segment of its conversation, for a continuation."""

    last: StoredResponse
    segments: list[tuple[Link, list[JSON]]]
    """The chain's segments and the last record's, in order."""

    @property
    def items(self) -> list[JSON]:
        return [item for _, items in self.segments for item in items]


class BrokenConversation(Exception):
    """A continuation names a stored response whose earlier record is gone."""

    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing


class ResponseStore:
    def __init__(
        self, backend: StateBackend, ttl_s: float, max_bytes: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._backend = backend
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._clock = clock

    @staticmethod
    def _key(key_id: str, response_id: str) -> str:
        return f"resp:{_owner(key_id)}:{response_id}"

    async def save(self, key_id: str, response: JSON, turn: list[JSON], previous: Conversation | None) -> bool:
        """File ``response`` under ``key_id`` with this turn's items, continuing ``previous``
        (None: a new conversation). False (nothing stored) when the conversation is over the
        size cap."""
        now = self._clock()
        own = orjson.dumps(turn)
        response_bytes = orjson.dumps(response)
        total = len(own) + (previous.last.total_bytes if previous is not None else 0)
        if total + len(response_bytes) > self._max_bytes:
            return False
        segments = previous.segments if previous is not None else []
        fresh_until = now + self._ttl_s * FRESH_SHARE
        keep = next((i for i, (link, _) in enumerate(segments) if link.expires_at < fresh_until), len(segments))
        size = len(own) + sum(link.size for link, _ in segments[keep:])
        while keep and segments[keep - 1][0].size <= MERGE_FACTOR * size:
            keep -= 1
            size += segments[keep][0].size
        if keep < len(segments):
            own = orjson.dumps([item for _, items in segments[keep:] for item in items] + turn)
        expires_at = now + self._ttl_s
        chain = [[link.response_id, link.size, link.expires_at] for link, _ in segments[:keep]]
        meta = orjson.dumps({"chain": chain, "size": len(own), "expires_at": expires_at, "total": total})
        blob = b'{"response":' + response_bytes + b',"items":' + own + b',"meta":' + meta + b"}"
        await self._backend.blob_put(self._key(key_id, str(response["id"])), blob, self._ttl_s)
        return True

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        """One record (its Response, its segment); None when there is none for this key, or it
        cannot be read (logged)."""
        blob = await self._backend.blob_get(self._key(key_id, response_id))
        return None if blob is None else self._read(response_id, blob)

    async def conversation(self, key_id: str, response_id: str) -> Conversation | None:
        """The stored response and every segment of its conversation; None when there is none
        for this key. Raises :class:`BrokenConversation` when an earlier record is gone."""
        last = await self.load(key_id, response_id)
        if last is None:
            return None
        segments: list[tuple[Link, list[JSON]]] = []
        if last.chain:
            blobs = await self._backend.blob_get_many([self._key(key_id, link.response_id) for link in last.chain])
            for link, blob in zip(last.chain, blobs, strict=True):
                record = None if blob is None else self._read(link.response_id, blob)
                if record is None:
                    raise BrokenConversation(link.response_id)
                segments.append((link, record.items))
        return Conversation(last, [*segments, (last.link, last.items)])

    async def delete(self, key_id: str, response_id: str) -> bool:
        return await self._backend.blob_delete(self._key(key_id, response_id))

    def _read(self, response_id: str, blob: bytes) -> StoredResponse | None:
        try:
            return _record(response_id, blob)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("stored response %s cannot be read (%s: %s); read as gone", response_id, type(exc).__name__, exc)
            return None


def _record(response_id: str, blob: bytes) -> StoredResponse:
    record: dict[str, Any] = orjson.loads(blob)
    response, items = record["response"], record["items"]
    if not isinstance(response, dict) or not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise TypeError("a record's response is an object and its items a list of objects")
    meta = record.get("meta")
    if meta is None:  # written before chains: the whole conversation, one segment
        size = len(orjson.dumps(items))
        # Its expiry is not known (the TTL it was written under may have been shorter than
        # today's): read as already due, so the next turn folds it into its own record.
        return StoredResponse(response, items, Link(response_id, size, 0.0), [], size)
    chain = [Link(str(rid), int(size), float(expires)) for rid, size, expires in meta["chain"]]
    link = Link(response_id, int(meta["size"]), float(meta["expires_at"]))
    return StoredResponse(response, items, link, chain, int(meta["total"]))


@functools.lru_cache(maxsize=8192)
def _owner(key_id: str) -> str:
    """The key's part of a record's name (a digest: key ids do not appear in the store's keys);
    kept for the most recent 8,192 key ids, by value."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:24]
