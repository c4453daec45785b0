"""The Redis backend's blobs: durable values with a TTL (``gw:blob:<key>``), e.g. stored
responses. :class:`RedisBlobs` is that part of :class:`~gateway.state.redis.RedisBackend`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.state.redis_client import RedisConnection, unavailable


def _blob(key: str) -> str:
    return f"gw:blob:{key}"


def _px(ttl_s: float) -> int:
    """A TTL in seconds as Redis's milliseconds (at least 1)."""
    return max(1, int(ttl_s * 1000))


class RedisBlobs:
    _conn: RedisConnection

    async def blob_put(self, key: str, value: bytes, ttl_s: float) -> None:
        """A ``ttl_s`` of 0 or less stores nothing and removes what ``key`` held."""
        if ttl_s <= 0:
            await self.blob_delete(key)
            return
        await self._conn.call(self._conn.client.set(_blob(key), value, px=_px(ttl_s)))

    async def blob_put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Every put in one pipeline (not a transaction: each SET stands alone)."""
        live = []
        for key, value, ttl_s in items:
            if ttl_s > 0:
                live.append((key, value, ttl_s))
            else:
                await self.blob_delete(key)
        if not live:
            return
        if self._conn.cluster:  # the keys live on several nodes: redis-py splits the pipeline

            def fill(pipe: Any) -> None:
                for key, value, ttl_s in live:
                    pipe.set(_blob(key), value, px=_px(ttl_s))

            await self._conn.call(self._conn.pipelined(fill))
            return
        commands = [(b"SET", _blob(key), value, b"PX", _px(ttl_s)) for key, value, ttl_s in live]
        for reply in await self._conn.call(self._conn.packed(commands)):
            if isinstance(reply, Exception):
                raise unavailable(reply)

    async def blob_put_new(self, key: str, value: bytes, ttl_s: float) -> bool:
        """As :meth:`blob_put`, only where ``key`` holds nothing (SET NX); True when written."""
        client = self._conn.client
        return bool(await self._conn.call(client.set(_blob(key), value, px=_px(ttl_s), nx=True)))

    async def blob_get(self, key: str) -> bytes | None:
        value = await self._conn.call(self._conn.client.get(_blob(key)))
        return value.encode() if isinstance(value, str) else value

    async def blob_get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Every GET in one pipeline (on a Cluster, redis-py splits it by node)."""
        if not keys:
            return []
        if self._conn.cluster:

            def fill(pipe: Any) -> None:
                for key in keys:
                    pipe.get(_blob(key))

            replies: list[Any] = await self._conn.call(self._conn.pipelined(fill))
        else:
            replies = await self._conn.call(self._conn.packed([(b"GET", _blob(key)) for key in keys]))
        values: list[bytes | None] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise unavailable(reply)
            values.append(reply.encode() if isinstance(reply, str) else reply)
        return values

    async def blob_delete(self, key: str) -> bool:
        return bool(await self._conn.call(self._conn.client.delete(_blob(key))))
