"""Blobs (stored responses) on the PostgreSQL + Redis backend (``postgres.py``):
written to Redis at once (the next turn may come at once, to any replica) and to
PostgreSQL behind, in batches (:class:`~gateway.state.embedded_blobs.WriteBehind`:
one multi-row upsert per 10 ms at most); read from what is still being written,
then Redis, then PostgreSQL. With Redis down, a put still reaches PostgreSQL and
reads fall back to it. Expired rows are deleted by :meth:`PostgresBlobs.sweep`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from gateway.state.base import BackendUnavailable
from gateway.state.embedded_blobs import WriteBehind
from gateway.state.postgres_client import Pool
from gateway.state.redis import RedisBackend

_UPSERT = """
INSERT INTO gw_blobs (key, value, expires_at) SELECT * FROM unnest($1::text[], $2::bytea[], $3::float8[])
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
"""
_SWEEP = (
    "DELETE FROM gw_blobs WHERE key IN"
    " (SELECT key FROM gw_blobs WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) RETURNING 1"
)


class PostgresBlobs:
    """The backend's ``blob_put``, ``blob_get`` and ``blob_delete`` (see the module docstring)."""

    def __init__(self, pool: Pool, redis: RedisBackend) -> None:
        self._pg = pool
        self._redis = redis
        self._writes = WriteBehind(self._write)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """A ``ttl_s`` of 0 or less stores nothing and removes what ``key`` held."""
        await self.put_many([(key, value, ttl_s)])

    async def put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Each as :meth:`put`: behind into PostgreSQL, and Redis's copies in one pipeline."""
        now, live = time.time(), []
        for key, value, ttl_s in items:
            if ttl_s <= 0:
                await self.delete(key)
            else:
                self._writes.put(key, value, now + ttl_s)
                live.append((key, value, ttl_s))
        with contextlib.suppress(BackendUnavailable):  # PostgreSQL will have them; reads fall back to it
            await self._redis.blob_put_many(live)

    async def _write(self, rows: list[tuple[str, bytes, float]]) -> None:
        keys, values, expiries = (list(column) for column in zip(*rows, strict=True))
        await self._pg.run(lambda c: c.execute(_UPSERT, keys, values, expiries))

    async def written(self) -> None:
        """Wait until every put so far is in PostgreSQL."""
        await self._writes.flush()

    async def get(self, key: str) -> bytes | None:
        now = time.time()
        held, value = self._writes.get(key, now)
        if held:
            return value
        with contextlib.suppress(BackendUnavailable):
            copy = await self._redis.blob_get(key)
            if copy is not None:
                return copy
        sql = "SELECT value FROM gw_blobs WHERE key=$1 AND expires_at > $2"
        found: bytes | None = await self._pg.run(lambda c: c.fetchval(sql, key, now))
        return found

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """As :meth:`get` for each key: what is held, then Redis's copies, then PostgreSQL, one
        trip each for all the keys still missing."""
        now = time.time()
        values: dict[str, bytes | None] = {}
        for key in keys:
            held, value = self._writes.get(key, now)
            if held:
                values[key] = value
        missing = [key for key in dict.fromkeys(keys) if key not in values]
        if missing:
            with contextlib.suppress(BackendUnavailable):
                for key, copy in zip(missing, await self._redis.blob_get_many(missing), strict=True):
                    if copy is not None:
                        values[key] = copy
            missing = [key for key in missing if key not in values]
        if missing:
            sql = "SELECT key, value FROM gw_blobs WHERE key = ANY($1::text[]) AND expires_at > $2"
            rows = await self._pg.run(lambda c: c.fetch(sql, missing, now))
            values.update({row["key"]: row["value"] for row in rows})
        return [values.get(key) for key in keys]

    async def delete(self, key: str) -> bool:
        held, value = self._writes.get(key, time.time())
        await self._writes.flush()  # then PostgreSQL has it, and the delete is the last word
        expires = await self._pg.run(
            lambda c: c.fetchval("DELETE FROM gw_blobs WHERE key=$1 RETURNING expires_at", key)
        )
        with contextlib.suppress(BackendUnavailable):
            await self._redis.blob_delete(key)
        return (expires is not None and expires > time.time()) or (held and value is not None)

    async def sweep(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired blobs; how many."""
        return len(await self._pg.run(lambda c: c.fetch(_SWEEP, time.time(), limit)))


class PostgresBlobMethods:
    """The blob methods of :class:`~gateway.state.postgres.PostgresBackend` (``Blobs`` in
    gateway/state/base.py), served by its :class:`PostgresBlobs`."""

    blobs: PostgresBlobs

    async def blob_put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.blobs.put(key, value, ttl_s)

    async def blob_put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        await self.blobs.put_many(items)

    async def blob_get(self, key: str) -> bytes | None:
        return await self.blobs.get(key)

    async def blob_get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.blobs.get_many(keys)

    async def blob_delete(self, key: str) -> bool:
        return await self.blobs.delete(key)

    async def blobs_written(self) -> None:
        """Wait until every blob put so far is in PostgreSQL (they are written behind)."""
        await self.blobs.written()
