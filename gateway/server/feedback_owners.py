"""Who made each finished request, for feedback (gateway/server/feedback.py).

A score is taken only from the key that made the request, only within
``feedback.accept_days``, and only once. So for every finished client request that
reached a model alias, the gateway keeps a small blob in the state backend,
``feedback-owner:<key id>:<request id>`` -> ``{"alias", "ts"}``, with a time to live of
``accept_days`` from the request: it expires by itself. A scored request gets a second blob,
``feedback-scored:<key id>:<request id>`` -> the day table of its score, as long-lived.

The request path pays one dict insertion (:meth:`OwnerRecords.record`, a request sink:
no await, no I/O). A task writes what is pending every ``flush_interval_s``, as
``blob_put`` calls a few dozen at a time (embedded and PostgreSQL batch them again behind
that; Redis: one ``SET PX`` each). Until written, a record is found in this process's
pending set; a write that fails keeps its records for the next try, and past
``max_pending`` the oldest go (counted).

The key id is part of the blob's name: another key's request id is simply not found,
exactly like an id that never existed, so the answer tells nothing about other keys'
requests. Client-chosen ``x-request-id`` values cannot collide across keys either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway.config.feedback import OWNER_PREFIX, SCORED_PREFIX, FeedbackSettings
from gateway.observability.feedback_metrics import FeedbackMetrics
from gateway.observability.logs import RequestRecord
from gateway.state.base import BackendUnavailable, StateBackend

log = logging.getLogger("gateway.feedback")

DAY_S = 86400.0
WRITE_BATCH = 256
"""Pending records written in one ``blob_put_many`` (one Redis pipeline)."""
UNKNOWN_ALIAS = "unknown"
"""The alias of a request refused before it reached one (nothing to score)."""


@dataclass(frozen=True, slots=True)
class Owner:
    """What the gateway remembers of one finished request."""

    key_id: str
    request_id: str
    alias: str
    ts: float
    """When the request was received (epoch seconds)."""

    @property
    def blob_key(self) -> str:
        return owner_key(self.key_id, self.request_id)

    def value(self) -> bytes:
        return orjson.dumps({"alias": self.alias, "ts": self.ts})

    def ttl_s(self, accept_days: int, now: float) -> float:
        return self.ts + accept_days * DAY_S - now


def owner_key(key_id: str, request_id: str) -> str:
    return f"{OWNER_PREFIX}{key_id}:{request_id}"


def scored_key(key_id: str, request_id: str) -> str:
    return f"{SCORED_PREFIX}{key_id}:{request_id}"


def parse_owner(key_id: str, request_id: str, raw: bytes) -> Owner | None:
    """The blob's record; None for one that cannot be read (treated as unknown)."""
    try:
        body = orjson.loads(raw)
        return Owner(key_id, request_id, str(body["alias"]), float(body["ts"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


Key = tuple[str, str]


class OwnerRecords:
    """The request sink and the reads of :mod:`this module <gateway.server.feedback_owners>`."""

    def __init__(
        self,
        backend: Callable[[], StateBackend | None],
        settings: Callable[[], FeedbackSettings | None],
        metrics: FeedbackMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._pending: dict[Key, Owner] = {}
        """Finished requests not yet handed to the backend, oldest first."""
        self._writing: dict[Key, Owner] = {}
        """Those being written now (still found by :meth:`find`)."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        """One write of the pending records at a time."""

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._writing)

    # --- the request sink ------------------------------------------------------------
    def record(self, rec: RequestRecord) -> None:
        """Remember who made ``rec`` (a request sink: never awaits, never raises)."""
        settings = self._settings()
        if settings is None or not settings.enabled or self._closed:
            return
        if rec.key_id is None or rec.alias == UNKNOWN_ALIAS:
            return
        owner = Owner(rec.key_id, rec.request_id, rec.alias, rec.ts)
        self._pending[(owner.key_id, owner.request_id)] = owner
        over = len(self._pending) - settings.max_pending
        if over > 0:
            self._drop_oldest(over)
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: written at close
                self._task = asyncio.get_running_loop().create_task(self._run(settings.flush_interval_s))

    def _drop_oldest(self, count: int) -> None:
        for key in list(self._pending)[:count]:
            del self._pending[key]
        self._metrics.owner_dropped.inc(count)

    async def _run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception:  # the loop must outlive any one write
                log.exception("writing the records of finished requests (for feedback) failed")
            settings = self._settings()
            if settings is not None:
                interval_s = settings.flush_interval_s

    async def flush(self) -> bool:
        """Write every pending record; False when the backend could not take them (they
        stay pending, before any newer ones)."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> bool:
        backend, settings = self._backend(), self._settings()
        if backend is None or settings is None or not self._pending:
            return not self._pending
        self._writing, self._pending = self._pending, {}
        now = self._clock()
        batch = [o for o in self._writing.values() if o.ttl_s(settings.accept_days, now) > 0]
        try:
            for start in range(0, len(batch), WRITE_BATCH):
                chunk = batch[start : start + WRITE_BATCH]
                await backend.blob_put_many(
                    [(o.blob_key, o.value(), o.ttl_s(settings.accept_days, now)) for o in chunk]
                )
        except BackendUnavailable as exc:
            self._metrics.owner_write_failures.inc()
            log.warning("the records of %d finished requests (for feedback) wait for the next try: %s", len(batch), exc)
            self._pending = {**self._writing, **self._pending}
            over = len(self._pending) - settings.max_pending
            if over > 0:
                self._drop_oldest(over)
            return False
        finally:
            self._writing = {}
        return True

    async def close(self) -> None:
        """Stop the writer and write what is pending (what cannot be written is logged)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending and not await self.flush():
            log.warning("%d finished requests could not be recorded for feedback at shutdown", len(self._pending))

    # --- reads -----------------------------------------------------------------------
    async def find(self, key_id: str, request_id: str) -> Owner | None:
        """The record of ``request_id`` made by ``key_id``, if it is known and not expired."""
        key = (key_id, request_id)
        owner = self._pending.get(key) or self._writing.get(key)
        if owner is None:
            backend = self._backend()
            if backend is None:
                return None
            raw = await backend.blob_get(owner_key(key_id, request_id))
            owner = parse_owner(key_id, request_id, raw) if raw is not None else None
        settings = self._settings()
        if owner is None or settings is None or owner.ttl_s(settings.accept_days, self._clock()) <= 0:
            return None
        return owner

    async def scored_on(self, key_id: str, request_id: str) -> str | None:
        """The day table that holds the score given to this request, None when unscored."""
        backend = self._backend()
        if backend is None:
            return None
        raw = await backend.blob_get(scored_key(key_id, request_id))
        return raw.decode() if raw is not None else None

    async def mark_scored(self, owner: Owner, table: str, accept_days: int) -> None:
        """Remember that ``owner``'s request was scored (its record in ``table``), for as long
        as it could be scored. A blob of its own: the owner's record, which a retried write
        may put again, never carries it."""
        backend = self._backend()
        ttl = owner.ttl_s(accept_days, self._clock())
        if backend is not None and ttl > 0:
            await backend.blob_put(scored_key(owner.key_id, owner.request_id), table.encode(), ttl)
