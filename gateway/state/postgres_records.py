"""The Redis copies of the PostgreSQL backend's records (``postgres.py``): what the
request path reads instead of PostgreSQL.

A copy lives at ``gw:blob:rec:<table>:<id>`` for ``mirror_ttl_s``. A read that finds
none reads PostgreSQL and fills it only where none was written meanwhile (SET NX); an
absent record is copied as a tombstone, so a flood of unknown keys stays off PostgreSQL.

A write (or delete) runs in three steps: the copy is deleted first (Redis down: the write
fails before anything changed, a 503 for the admin API), then PostgreSQL is written, then
the new copy (a tombstone for a delete) replaces whatever a reader filled in between. If
Redis fails at that last step, PostgreSQL has the change and the write succeeds; the copy
a reader may have filled between the first two steps is deleted by a repair task, every
second, until Redis answers. Only a process that dies in that window leaves such a copy,
for at most ``mirror_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.state.base import BackendUnavailable
from gateway.state.redis import RedisBackend

log = logging.getLogger("gateway.state.postgres")

TOMBSTONE = b"\x00"
"""A copy that says "no such record" (no JSON document starts with a NUL)."""
REPAIR_INTERVAL_S = 1.0


def copy_key(table: str, id: str) -> str:
    return f"rec:{table}:{id}"


class RecordCopies:
    """Reads, fills and replaces the copies (see the module docstring)."""

    def __init__(self, redis: RedisBackend, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self.repairs: set[str] = set()
        """Copies to delete once Redis answers again."""
        self._task: asyncio.Task[None] | None = None

    async def read(self, key: str) -> bytes | None:
        """The copy; None when there is none or Redis is down (PostgreSQL answers then)."""
        with contextlib.suppress(BackendUnavailable):
            return await self._redis.blob_get(key)
        return None

    async def fill(self, key: str, value: bytes) -> None:
        """Copy what PostgreSQL answered, unless a write put a newer copy meanwhile."""
        with contextlib.suppress(BackendUnavailable):  # Redis down: copied at a later read
            await self._redis.blob_put_new(key, value, self._ttl_s)

    async def before_write(self, key: str) -> None:
        """Delete the copy; raises :class:`BackendUnavailable` (nothing changed yet) when Redis is down."""
        await self._redis.blob_delete(key)

    async def after_write(self, key: str, value: bytes) -> None:
        """The new copy; when Redis fails now, the key is repaired later (never raises)."""
        try:
            await self._redis.blob_put(key, value, self._ttl_s)
        except BackendUnavailable as exc:
            log.warning("record copy %s not replaced (repaired when redis answers): %s", key, exc)
            self.repairs.add(key)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._repair(), name="record-copy-repair")

    async def _repair(self) -> None:
        while self.repairs:
            await asyncio.sleep(REPAIR_INTERVAL_S)
            for key in list(self.repairs):
                try:
                    await self._redis.blob_delete(key)
                except BackendUnavailable:
                    break  # still down: the rest on the next round
                self.repairs.discard(key)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.repairs:
            log.error("record copies not repaired at shutdown (stale for up to mirror_ttl_s): %s", sorted(self.repairs))
