"""The request-detail tier's retention (``state.postgres.retention``): each whole UTC
day of ``gw_requests`` older than ``detail_days`` is exported to an archive file
(``request_archive.py``), then deleted; and an archive file loaded back for a query.

One day at a time, oldest first, in one REPEATABLE READ transaction: the day's
rows are read through a cursor into a new archive file (written in a thread,
fsynced and renamed), then the same rows are deleted (the transaction's snapshot:
a row that arrived meanwhile is neither exported nor deleted, and waits for the
next run), and the count deleted must equal the count exported or the delete
is rolled back. A crash between the rename and the commit leaves the file and
the rows; the next run finds the file, carries its rows over into the new one
(checked, and skipping the rows it already holds) and then deletes: no row is
lost or written twice. A run that finds nothing older than the cutoff changes
nothing. Replicas and ``gateway retention run`` take turns through an advisory
lock (a run that finds it held does nothing). With ``archive: false`` old days
are deleted only.

Loading back (:func:`load_archive`): into ``gw_requests_loaded`` (the same
columns, and ``archive``, the file's name), never into ``gw_requests`` (whose
old days the job would take again), in one transaction, skipping rows already
there (the same ``ts`` and ``request_id``): a second load adds nothing, and a
file that fails its check loads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from gateway.config.state import RetentionSettings
from gateway.state.base import BackendUnavailable
from gateway.state.postgres_client import PG_ERRORS
from gateway.state.request_archive import (
    ArchiveError,
    ArchiveInfo,
    ArchiveReader,
    ArchiveWriter,
    archive_name,
    remove_stale,
)
from gateway.state.request_detail import BATCH_ROWS, COLUMN_NAMES, COLUMNS, DetailWriter, as_columns, insert_sql

log = logging.getLogger("gateway.state.postgres")

LOCK_ID = 0x67770002
"""The advisory lock one retention run holds (an arbitrary constant of this project)."""
STATEMENT_TIMEOUT_S = 600.0
"""A day's read or delete may take longer than a request's statement."""
REQUIRED = ("ts", "request_id", "route", "status", "latency_ms", "alias")
DEFAULTS = {"attempts": 0, "stream": False}
FIRST_RUN_S = 60.0
"""How long after start the gateway first runs the job (then every ``interval_s``), and how
soon it tries again after PostgreSQL failed."""

_OLDEST = "SELECT min(ts) FROM gw_requests WHERE ts >= $1 AND ts < $2"
_DAY = f"SELECT {', '.join(COLUMN_NAMES)} FROM gw_requests WHERE ts >= $1 AND ts < $2 ORDER BY ts, request_id"
_DELETE = "DELETE FROM gw_requests WHERE ts >= $1 AND ts < $2"
_LOAD = insert_sql("gw_requests_loaded", epoch_ts=False, extra=("archive",))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DayDone:
    day: str
    deleted: int
    archive: ArchiveInfo | None


@dataclass
class RetentionRun:
    cutoff: datetime
    skipped: bool = False
    """Another run held the lock."""
    days: list[DayDone] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(day, why) of the days left in PostgreSQL (an archive that could not be written, or was not as written)."""


class Retention:
    """Runs the retention of request detail over a pool (see the module docstring)."""

    def __init__(
        self, pool: Any, *, detail_days: int, archive_dir: Path | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
        self.detail_days = detail_days
        self.archive_dir = archive_dir
        self._clock = clock

    def cutoff(self) -> datetime:
        """The first instant kept: midnight UTC ``detail_days`` before today's."""
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        return datetime.combine(today - timedelta(days=self.detail_days), clock_time(0), UTC)

    async def run(self) -> RetentionRun:
        """One run; raises :class:`BackendUnavailable` when PostgreSQL fails."""
        result: RetentionRun = await self._pool.run(self._run)
        return result

    async def _run(self, conn: Any) -> RetentionRun:
        result = RetentionRun(self.cutoff())
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            result.skipped = True
            return result
        try:
            after = _EPOCH
            while True:
                oldest = await conn.fetchval(_OLDEST, after, result.cutoff, timeout=STATEMENT_TIMEOUT_S)
                if oldest is None:
                    return result
                day = oldest.astimezone(UTC).date()
                after = datetime.combine(day + timedelta(days=1), clock_time(0), UTC)
                try:
                    result.days.append(await self._day(conn, day))
                except ArchiveError as exc:
                    log.error("request detail of %s kept in postgresql: %s", day, exc)
                    result.failed.append((f"{day}", str(exc)))
        finally:
            with contextlib.suppress(*PG_ERRORS):  # else released with the connection (asyncpg's reset)
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)

    async def _day(self, conn: Any, day: date) -> DayDone:
        start = datetime.combine(day, clock_time(0), UTC)
        end = start + timedelta(days=1)
        async with conn.transaction(isolation="repeatable_read"):
            info, exported = None, -1
            if self.archive_dir is not None:
                info, exported = await self._export(conn, day, start, end)
            status = await conn.execute(_DELETE, start, end, timeout=STATEMENT_TIMEOUT_S)
            deleted = int(status.split()[-1])
            if exported >= 0 and deleted != exported:
                # rolled back; the file holds every row exported, and the next run carries it over
                raise ArchiveError(f"{day}: {exported} row(s) exported but {deleted} to delete; nothing deleted")
        where = f", archived in {info.path}" if info else ""
        log.info("request detail of %s: %d row(s) deleted%s", day, deleted, where)
        return DayDone(f"{day}", deleted, info)

    async def _export(self, conn: Any, day: date, start: datetime, end: datetime) -> tuple[ArchiveInfo, int]:
        """The day's rows (with those of an archive an interrupted run left) in a new archive
        file; that file, and how many rows came from PostgreSQL."""
        assert self.archive_dir is not None
        path = self.archive_dir / archive_name(f"{day}")
        await asyncio.to_thread(remove_stale, path)
        writer = await asyncio.to_thread(ArchiveWriter, path, f"{day}", COLUMN_NAMES)
        try:
            held = await self._carry_over(path, writer) if path.exists() else set()
            from_db = 0
            cursor = await conn.cursor(_DAY, start, end, timeout=STATEMENT_TIMEOUT_S)
            while records := await cursor.fetch(BATCH_ROWS, timeout=STATEMENT_TIMEOUT_S):
                from_db += len(records)
                rows = [_archived(r) for r in records]
                if held:
                    rows = [r for r in rows if (r["ts"], r["request_id"]) not in held]
                await asyncio.to_thread(writer.write_rows, rows)
            return await asyncio.to_thread(writer.commit), from_db
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise

    @staticmethod
    async def _carry_over(path: Path, writer: ArchiveWriter) -> set[tuple[str, str]]:
        """The rows of the archive already at ``path`` (checked) copied into ``writer``; their keys."""
        held: set[tuple[str, str]] = set()
        chunks = ArchiveReader(path).chunks(BATCH_ROWS)
        while chunk := await asyncio.to_thread(next, chunks, None):
            held.update((str(r.get("ts")), str(r.get("request_id"))) for r in chunk)
            await asyncio.to_thread(writer.write_rows, chunk)
        log.warning("request archive %s was left by an interrupted run: its %d row(s) carried over", path, len(held))
        return held


def _archived(record: Any) -> dict[str, Any]:
    row = dict(record)
    row["ts"] = row["ts"].astimezone(UTC).isoformat()
    return row


# --- loading back --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    archive: str
    day: str
    rows: int
    """Request rows in the file."""
    inserted: int
    """Rows added (the others were there already)."""


async def load_archive(pool: Any, path: Path) -> Loaded:
    """Load the archive file at ``path`` into ``gw_requests_loaded`` (see the module
    docstring); raises :class:`ArchiveError` (nothing loaded) for a file that is not
    as written, :class:`BackendUnavailable` when PostgreSQL fails."""
    result: Loaded = await pool.run(partial(_load, path=path))
    return result


async def _load(conn: Any, path: Path) -> Loaded:
    reader = ArchiveReader(path)
    inserted = 0
    async with conn.transaction():
        for chunk in reader.chunks(BATCH_ROWS):
            rows = list(_load_rows(path, chunk, reader.rows - len(chunk)))
            columns = as_columns(rows, len(COLUMNS) + 1)
            status = await conn.execute(_LOAD, *columns, timeout=STATEMENT_TIMEOUT_S)
            inserted += int(status.split()[-1])
    return Loaded(path.name, str(reader.header.get("day")), reader.rows, inserted)


def _load_rows(path: Path, chunk: list[dict[str, Any]], first: int) -> Iterator[tuple[Any, ...]]:
    for n, row in enumerate(chunk, first + 1):
        missing = [name for name in REQUIRED if row.get(name) is None]
        if missing:
            raise ArchiveError(f"{path}: request row {n} has no {', '.join(missing)}; refused")
        try:
            ts = datetime.fromisoformat(row["ts"])
        except (TypeError, ValueError) as exc:
            raise ArchiveError(f"{path}: request row {n} has a bad ts ({exc}); refused") from exc
        yield (ts, *(row.get(name, DEFAULTS.get(name)) for name in COLUMN_NAMES[1:]), path.name)


# --- in the gateway ------------------------------------------------------------------------------


class TierFacts(NamedTuple):
    """What the metrics read of the request-detail tier at each scrape."""

    written: int
    dropped: int
    pending: int
    flush_failures: int
    runs_ok: int
    runs_failed: int
    days_archived: int
    days_failed: int
    last_success: float
    """Epoch seconds of the last retention run that succeeded in this process (0: none yet)."""


class DetailTiers:
    """What a gateway on the postgres backend runs for the request-detail tier: the
    write-behind :class:`DetailWriter` (``detail``) and the retention job, first
    :data:`FIRST_RUN_S` after start, then every ``interval_s`` (``run_in_app``)."""

    def __init__(self, pool: Any, settings: RetentionSettings, *, flush_interval_s: float = 1.0) -> None:
        self.writer = DetailWriter(pool, max_rows=settings.buffer_rows, interval_s=flush_interval_s)
        self.writes = settings.detail
        archive_dir = Path(settings.archive_dir) if settings.archive else None
        self.retention = Retention(pool, detail_days=settings.detail_days, archive_dir=archive_dir)
        self._run_in_app = settings.run_in_app
        self._interval_s = settings.interval_s
        self._task: asyncio.Task[None] | None = None
        self.runs_ok = self.runs_failed = self.days_archived = self.days_failed = 0
        self.last_success = 0.0

    def facts(self) -> TierFacts:
        w = self.writer
        return TierFacts(
            w.written,
            w.dropped,
            w.pending,
            w.flush_failures,
            self.runs_ok,
            self.runs_failed,
            self.days_archived,
            self.days_failed,
            self.last_success,
        )

    def record(self, rec: object) -> None:
        """A request sink: the request's row, held for the writer."""
        self.writer.record(rec)

    async def _retain(self) -> None:
        delay = min(FIRST_RUN_S, self._interval_s)
        while True:
            await asyncio.sleep(delay)
            delay = self._interval_s
            try:
                result = await self.retention.run()
            except BackendUnavailable as exc:
                self.runs_failed += 1
                log.warning("request detail retention did not run: %s", exc)
                delay = min(FIRST_RUN_S, self._interval_s)
                continue
            except Exception:
                self.runs_failed += 1
                log.exception("request detail retention failed")
                continue
            self.days_archived += len(result.days)
            self.days_failed += len(result.failed)
            if not result.skipped:
                self.runs_ok += 1
                self.last_success = time.time()
            if result.days or result.failed:
                log.info(
                    "request detail retention: %d day(s) done, %d left (cutoff %s)",
                    len(result.days),
                    len(result.failed),
                    result.cutoff.isoformat(),
                )

    def start(self) -> None:
        if self.writes:
            self.writer.start()
        if self._run_in_app and self._task is None:
            self._task = asyncio.create_task(self._retain(), name="request-retention")

    async def close(self) -> None:
        """Stop the job (a run in progress is rolled back) and write the detail held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.writes:
            await self.writer.close()
