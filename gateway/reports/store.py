"""The statistics store: request records counted in memory, written behind to
the state backend, merged across replicas when read.

Layout in the state backend (records API): table ``report_stats:{day}`` (the
local day in ``budgets.timezone``, like the spend counters), one record per
*segment*: a replica's counts of that day since it opened the day. A segment
id is ``{replica}.{n}``, with ``replica`` unique per process start.

Why segments and not counters: every replica is the only writer of its own
segments, so a flush simply overwrites them with the current totals. Nothing
is read-modified-written, two replicas never contend, a retried write after
a lost reply cannot count twice, and no backend needs an atomic increment of
a JSON document. Reading a day scans its table and adds every segment up
(:meth:`DayStats.merge` is exact: counts and histogram buckets add). A day
this process evicted from memory (two days after it ended) and later sees a
late record for gets a new segment rather than overwriting the old one.

Two classes, one per side: :class:`OpenDays` counts on the request path
(memory only), :class:`StatsStore` writes those counts behind, prunes old
segments and reads days back merged.

Costs and guarantees: :meth:`StatsStore.record` is a dict update, no I/O; a
flush writes one record per day changed since the last one; a crash loses
at most one ``reports.flush_interval_s`` of statistics of that process (spend
itself is kept by the ledger, not here); :meth:`close` makes a final flush. A
failed flush (backend down) keeps everything for the next one. Segments older
than ``reports.retention_days`` (and up to a week more, for a gateway that
was down when they expired) are deleted by the first flush of each day.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.reports.stats import DayStats, RequestRecord, to_datetime
from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.periodic import Periodic

log = logging.getLogger("gateway.reports")

TABLE_PREFIX = "report_stats:"
KEEP_DAYS_IN_MEMORY = 2
PRUNE_DAYS = 7
"""Days before the retention cutoff the daily prune looks at (covers a week of downtime)."""


def table_of(day: str) -> str:
    return f"{TABLE_PREFIX}{day}"


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class OpenDays:
    """The request path's side of the store: this process's counts of the
    days it is counting, one segment each, and which of them changed since
    the last write. Synchronous and without I/O."""

    def __init__(self, replica: str, tz: ZoneInfo) -> None:
        self.replica = replica
        self.tz = tz
        self.dropped = 0
        self.days: dict[str, DayStats] = {}
        self.segments: dict[str, str] = {}
        self.dirty: set[str] = set()
        self._opened = 0
        self._day_memo: tuple[int, str] = (-1, "")

    def record(self, rec: RequestRecord) -> None:
        """Count one finished request. Never raises: a record that cannot be
        read is counted in ``dropped`` and logged once."""
        try:
            day = self._day(rec.ts)
            stats = self.days.get(day)
            if stats is None:
                stats = self._open(day)
            stats.add(rec)
        except Exception:
            self.dropped += 1
            if self.dropped == 1:
                log.exception("a request record could not be counted in the report statistics")
            return
        self.dirty.add(day)

    def _day(self, ts: object) -> str:
        if isinstance(ts, (int, float)) and not isinstance(ts, bool):
            second = int(ts)
            if self._day_memo[0] == second:
                return self._day_memo[1]
            day = f"{to_datetime(ts).astimezone(self.tz):%Y-%m-%d}"
            self._day_memo = (second, day)
            return day
        return f"{to_datetime(ts).astimezone(self.tz):%Y-%m-%d}"

    def _open(self, day: str) -> DayStats:
        self._opened += 1
        self.segments[day] = f"{self.replica}.{self._opened}"
        stats = self.days[day] = DayStats(day)
        return stats

    def evict(self, today: date) -> None:
        """Forget the days written and over (a later record of one opens a new segment)."""
        keep = {f"{today - timedelta(days=i):%Y-%m-%d}" for i in range(KEEP_DAYS_IN_MEMORY)}
        for day in [d for d in self.days if d not in keep and d not in self.dirty]:
            del self.days[day]
            del self.segments[day]


class StatsStore:
    """The write-behind side: :class:`OpenDays` written to the state backend
    every ``flush_interval_s``, old segments pruned, and days read back with
    every replica's segments merged."""

    def __init__(
        self,
        backend: StateBackend,
        *,
        tz: ZoneInfo,
        flush_interval_s: float = 10.0,
        retention_days: int = 400,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.tz = tz
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.replica = replica_id or new_replica_id()
        self.open_days = OpenDays(self.replica, tz)
        self.flush_failures = 0
        self._clock = clock
        self._pruned_on = ""
        self._failing = False
        self._lock = asyncio.Lock()
        self._flusher = Periodic(
            "report-stats-flush",
            flush_interval_s,
            self.flush,
            "report statistics flush failed unexpectedly; kept for the next one",
        )

    # --- request path (synchronous, no I/O) --------------------------------
    def record(self, rec: RequestRecord) -> None:
        """Count one finished request (:meth:`OpenDays.record`); never raises."""
        self.open_days.record(rec)

    @property
    def dropped(self) -> int:
        """Records that could not be counted."""
        return self.open_days.dropped

    def local(self, day: str) -> DayStats | None:
        """This process's counts of ``day`` (flushed or not)."""
        return self.open_days.days.get(day)

    # --- I/O ------------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write every day changed since the last flush; False if the backend
        is down (the counts stay in memory and are written next time)."""
        async with self._lock:
            ok = True
            dirty = self.open_days.dirty
            for day in sorted(dirty):
                dirty.discard(day)
                try:
                    await self.backend.put(table_of(day), self.open_days.segments[day], self._record(day))
                except BackendUnavailable as exc:
                    dirty.add(day)
                    ok = False
                    self.flush_failures += 1
                    if not self._failing:
                        log.warning("report statistics flush failed; keeping them for the next one: %s", exc)
                    self._failing = True
                    break
            if ok:
                self._failing = False
                self.open_days.evict(self._today())
                await self._prune()
            return ok

    def _record(self, day: str) -> dict[str, object]:
        segment = self.open_days.segments[day]
        stats = self.open_days.days[day].to_json()
        return {"segment": segment, "replica": self.replica, "updated_at": self._clock(), **stats}

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), self.tz).date()

    async def _prune(self) -> None:
        today = f"{self._today():%Y-%m-%d}"
        if self._pruned_on == today:
            return
        cutoff = self._today() - timedelta(days=self.retention_days + 1)
        try:
            for back in range(PRUNE_DAYS):
                old = table_of(f"{cutoff - timedelta(days=back):%Y-%m-%d}")
                for rec in await self.backend.scan(old):
                    segment = rec.get("segment")
                    if isinstance(segment, str):
                        await self.backend.delete(old, segment)
        except BackendUnavailable:
            return
        self._pruned_on = today

    async def read_days(self, days: Iterable[str]) -> dict[str, DayStats]:
        """Every replica's counts of each day, merged; this process's own
        segment is taken from memory (fresher than its last flush). Raises
        :class:`BackendUnavailable`."""
        out: dict[str, DayStats] = {}
        for day in days:
            merged = DayStats(day)
            own = self.open_days.segments.get(day)
            for rec in await self.backend.scan(table_of(day)):
                if own is None or rec.get("segment") != own:
                    merged.merge(DayStats.from_json(rec))
            local = self.open_days.days.get(day)
            if local is not None:
                merged.merge(local)
            out[day] = merged
        return out

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._flusher.start()

    async def close(self) -> bool:
        """Stop the task and flush once more; False if that failed (logged)."""
        await self._flusher.stop()
        done = await self.flush()
        if not done:
            log.error("report statistics of %s not written at shutdown: %s", self.replica, sorted(self.open_days.dirty))
        return done
