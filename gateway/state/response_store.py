"""Stored OpenAI Responses, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

The gateway issues the response ids and keeps each stored response in the state
backend (embedded: SQLite; Redis: shared by every replica) for
``responses.store_ttl_s``, so a continuation works whichever replica and whichever
provider serves the next turn. A record holds the Response object and the whole
conversation up to it (earlier items, this request's input, its output), which is
what the next turn replays. Records are filed under the API key that made them: a
key can never read, continue or delete another key's responses (they are simply
not found).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import orjson

from gateway.canonical import JSON
from gateway.state.base import StateBackend


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: JSON
    items: list[JSON]
    """The conversation up to and including this response's output."""


class ResponseStore:
    def __init__(self, backend: StateBackend, ttl_s: float, max_bytes: int) -> None:
        self._backend = backend
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes

    @staticmethod
    def _key(key_id: str, response_id: str) -> str:
        return f"resp:{_owner(key_id)}:{response_id}"

    async def save(self, key_id: str, response: JSON, items: list[JSON]) -> bool:
        """File ``response`` under ``key_id``; False (nothing stored) when it is over the size cap."""
        blob = orjson.dumps({"response": response, "items": items})
        if len(blob) > self._max_bytes:
            return False
        await self._backend.blob_put(self._key(key_id, str(response["id"])), blob, self._ttl_s)
        return True

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        blob = await self._backend.blob_get(self._key(key_id, response_id))
        if blob is None:
            return None
        record = orjson.loads(blob)
        return StoredResponse(record["response"], record["items"])

    async def delete(self, key_id: str, response_id: str) -> bool:
        return await self._backend.blob_delete(self._key(key_id, response_id))


@functools.lru_cache(maxsize=8192)
def _owner(key_id: str) -> str:
    """The key's part of a record's name (a digest: key ids do not appear in the store's keys);
    kept for the most recent 8,192 key ids, by value."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:24]
