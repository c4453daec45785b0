"""Stored OpenAI Responses, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

The gateway issues the response ids and keeps each stored response in the state
backend (embedded: SQLite; Redis: shared by every replica) for
``responses.store_ttl_s``, so a continuation works whichever replica and whichever
provider serves the next turn. Records are filed under the API key that made them: a
key can never read, continue or delete another key's responses (they are simply
not found).

A record holds the Response object and conversation items. Most records hold only
their own turn's items (this request's input and its output) and name the earlier
records the conversation runs through (``chain``, oldest first): storing every turn
with the whole conversation before it would make a long conversation's storage grow
with the square of its turns. Every so often a record holds the whole conversation
instead (a *snapshot*, its chain empty), so that:

- the turns written since the last snapshot never outweigh it (the conversation's
  storage stays within about three times its own size);
- a chain is at most :data:`MAX_CHAIN` records long (what a continuation reads);
- no record's chain reaches back more than :data:`REFRESH_SHARE` of the TTL, so the
  records a continuation needs outlive it by at least the rest of the TTL.

A continuation whose earlier record is gone (deleted, or expired when its TTL was
cut) is not found, as the response itself would be. Records written before chains
existed hold the whole conversation and read as snapshots.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway.canonical import JSON
from gateway.state.base import StateBackend

MAX_CHAIN = 128
"""The most earlier records a continuation reads; the turn after that many is a snapshot."""
REFRESH_SHARE = 0.1
"""A record whose chain began longer ago than this share of ``store_ttl_s`` is a snapshot."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One record: a Response and where its conversation stands."""

    response_id: str
    response: JSON
    items: list[JSON]
    """This record's items: its own turn's, or (a snapshot) the whole conversation."""
    chain: list[str]
    """The earlier records whose items come before these, oldest first (empty: a snapshot)."""
    since: float
    """When the chain's first record (the snapshot) was stored, epoch seconds."""
    base_bytes: int
    """The snapshot's items as JSON, in bytes."""
    total_bytes: int
    """The whole conversation's items up to this record as JSON, in bytes."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored response with every item of its conversation, for a continuation."""

    last: StoredResponse
    items: list[JSON]


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
        if previous is None or self._snapshot_due(previous.last, total, now):
            items = own if previous is None else orjson.dumps(previous.items + turn)
            chain: list[str] = []
            since, base = now, total
        else:
            last = previous.last
            items, chain = own, [*last.chain, last.response_id]
            since, base = last.since, last.base_bytes
        meta = orjson.dumps({"chain": chain, "since": since, "base": base, "total": total})
        blob = b'{"response":' + response_bytes + b',"items":' + items + b',"meta":' + meta + b"}"
        await self._backend.blob_put(self._key(key_id, str(response["id"])), blob, self._ttl_s)
        return True

    def _snapshot_due(self, last: StoredResponse, total: int, now: float) -> bool:
        return (
            len(last.chain) + 1 > MAX_CHAIN
            or total - last.base_bytes > last.base_bytes
            or now - last.since > self._ttl_s * REFRESH_SHARE
        )

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        """One record (its Response, its own items); None when there is none for this key."""
        blob = await self._backend.blob_get(self._key(key_id, response_id))
        return None if blob is None else _record(response_id, blob)

    async def conversation(self, key_id: str, response_id: str) -> Conversation | None:
        """The stored response and the whole conversation up to it; None when there is none for
        this key. Raises :class:`BrokenConversation` when one of its earlier records is gone."""
        last = await self.load(key_id, response_id)
        if last is None:
            return None
        if not last.chain:
            return Conversation(last, last.items)
        blobs = await self._backend.blob_get_many([self._key(key_id, rid) for rid in last.chain])
        items: list[JSON] = []
        for rid, blob in zip(last.chain, blobs, strict=True):
            if blob is None:
                raise BrokenConversation(rid)
            items += _record(rid, blob).items
        return Conversation(last, items + last.items)

    async def delete(self, key_id: str, response_id: str) -> bool:
        return await self._backend.blob_delete(self._key(key_id, response_id))


def _record(response_id: str, blob: bytes) -> StoredResponse:
    record = orjson.loads(blob)
    items: list[JSON] = record["items"]
    meta = record.get("meta")
    if meta is None:  # written before chains: the whole conversation, a snapshot
        size = len(orjson.dumps(items))
        created = record["response"].get("created_at")
        since = float(created) if isinstance(created, int | float) else 0.0
        return StoredResponse(response_id, record["response"], items, [], since, size, size)
    return StoredResponse(
        response_id, record["response"], items, meta["chain"], meta["since"], meta["base"], meta["total"]
    )


@functools.lru_cache(maxsize=8192)
def _owner(key_id: str) -> str:
    """The key's part of a record's name (a digest: key ids do not appear in the store's keys);
    kept for the most recent 8,192 key ids, by value."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:24]
