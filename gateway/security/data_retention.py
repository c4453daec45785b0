"""The data retention job (``retention`` in ``jobs``; ``retention.days``, 30 by default):
what the state backend keeps of requests, sessions and feedback is deleted once older
than the retention period. :func:`retention_job` is one run; it answers a one-line summary.

What a run deletes:

- **day tables** (:class:`DayTable`, by default the feedback of ``/v1/feedback``,
  tables ``feedback:YYYY-MM-DD``): every record of every table of a day before the
  cutoff (today minus ``days``, days in ``budgets.timezone`` as the feedback and report
  tables name them). The backend has no list of tables, so a run looks at
  the days from the last one it cleared (record ``retention/<prefix>``) up to the cutoff,
  or ``lookback_days`` before it on the first run; :func:`prune_day_tables` is the helper;
- **ended sessions**: ``refresh_tokens`` records past their expiry, and ``session_use``
  records older than ``admin.session_idle_timeout_s`` (they can no longer matter);
- **old temporary grants**: grants on user records that expired more than ``days`` ago.

What it does not delete (each has its own rule):

- the **audit log**: append-only, never deleted (and backed up);
- **report statistics** (``report_stats:<day>``): daily aggregates without a request,
  kept ``reports.retention_days`` and pruned by the statistics store;
- **request detail** in PostgreSQL (``gw_requests``): ``state.postgres.retention``
  archives and deletes it after ``detail_days`` (7), and its archive files are kept;
- **stored responses**: blobs that expire by themselves after ``responses.store_ttl_s``
  (30 days);
- the **access log**: lines on standard error; their retention is the log store's.

A run is idempotent and safe on several replicas at once (a record deleted twice is
deleted once); the scheduler runs it on one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.config.feedback import TABLE_PREFIX as FEEDBACK_PREFIX
from gateway.config.settings import Settings
from gateway.security import grants
from gateway.security.accounts import USERS
from gateway.security.sessions import TABLE as SESSIONS
from gateway.security.sessions import USE as SESSION_USE
from gateway.state.base import Record, StateBackend

log = logging.getLogger("gateway.retention")

MARKS = "retention"
"""Table of the last day cleared per day-table prefix."""


@dataclass(frozen=True, slots=True)
class DayTable:
    """Records kept in one table per day, ``<prefix>YYYY-MM-DD``; a record's id is its
    ``id_fields`` joined by ``:`` (the backend's scan gives records, not ids)."""

    prefix: str
    id_fields: tuple[str, ...]

    def id_of(self, record: Record) -> str | None:
        parts = [record.get(name) for name in self.id_fields]
        return ":".join(str(p) for p in parts) if all(isinstance(p, str) for p in parts) else None


DAY_TABLES: tuple[DayTable, ...] = (DayTable(FEEDBACK_PREFIX, ("key_id", "request_id")),)
"""The feedback of ``/v1/feedback`` (gateway/server/feedback.py: id ``<key id>:<request id>``)."""


def cutoff_day(now: float, days: int, tz: ZoneInfo) -> date:
    """The first day kept (in ``tz``)."""
    return datetime.fromtimestamp(now, tz).date() - timedelta(days=days)


async def prune_day_tables(backend: StateBackend, table: DayTable, before: date, lookback_days: int) -> int:
    """Delete every record of ``table``'s days before ``before``, from the day after the
    last one cleared (else ``lookback_days`` before ``before``); the number deleted."""
    first = before - timedelta(days=lookback_days)
    mark = await backend.get(MARKS, table.prefix)
    if mark and isinstance(mark.get("cleared_through"), str):
        first = max(first, date.fromisoformat(mark["cleared_through"]) + timedelta(days=1))
    deleted = 0
    day = first
    while day < before:
        name = f"{table.prefix}{day:%Y-%m-%d}"
        for record in await backend.scan(name):
            record_id = table.id_of(record)
            if isinstance(record_id, str) and await backend.delete(name, record_id):
                deleted += 1
        day += timedelta(days=1)
    if first < before:
        last = before - timedelta(days=1)
        await backend.put(MARKS, table.prefix, {"prefix": table.prefix, "cleared_through": f"{last}"})
    return deleted


async def prune_sessions(backend: StateBackend, now: float, idle_timeout_s: float) -> int:
    """Delete expired sessions and stale last-use records; the number of sessions deleted."""
    deleted = 0
    for family in await backend.scan(SESSIONS):
        if float(family.get("expires_at") or 0) < now and isinstance(family.get("family"), str):
            deleted += await backend.delete(SESSIONS, family["family"])
            await backend.delete(SESSION_USE, family["family"])
    for used in await backend.scan(SESSION_USE):
        if float(used.get("last_used_at") or 0) < now - idle_timeout_s and isinstance(used.get("family"), str):
            await backend.delete(SESSION_USE, used["family"])
    return deleted


async def prune_grants(backend: StateBackend, before: float) -> int:
    """Drop the grants that expired before ``before`` from every user; the number dropped."""
    dropped = 0
    for user in await backend.scan(USERS):
        held = grants.grants_of(user)
        kept = [g for g in held if float(g.get("expires_at") or 0) >= before]
        if len(kept) < len(held):
            dropped += len(held) - len(kept)
            current = await backend.get(USERS, user["username"])  # read again: keep a change made meanwhile
            if current is not None:
                fresh = [g for g in grants.grants_of(current) if float(g.get("expires_at") or 0) >= before]
                await backend.put(USERS, user["username"], {**current, "grants": fresh})
    return dropped


def _longer_elsewhere(settings: Settings) -> list[str]:
    """Settings that keep request data longer than ``retention.days`` (logged)."""
    days = settings.retention.days
    notes = []
    if settings.responses.store_ttl_s > days * 86400:
        notes.append(f"responses.store_ttl_s keeps stored responses {settings.responses.store_ttl_s / 86400:g} days")
    pg = settings.state.postgres
    if settings.state.backend == "postgres" and pg is not None and pg.retention.detail_days > days:
        notes.append(f"state.postgres.retention.detail_days keeps request detail {pg.retention.detail_days} days")
    return notes


async def retention_job(
    settings: Settings,
    backend: StateBackend,
    *,
    day_tables: Sequence[DayTable] = DAY_TABLES,
    clock: Callable[[], float] = time.time,
) -> str:
    """One run of the retention job (see the module docstring); a one-line summary.
    Raises what the backend raises (:class:`BackendUnavailable`): the run failed."""
    now, policy = clock(), settings.retention
    before = cutoff_day(now, policy.days, ZoneInfo(settings.budgets.timezone))
    parts = []
    for table in day_tables:
        count = await prune_day_tables(backend, table, before, policy.lookback_days)
        parts.append(f"{count} {table.prefix.rstrip(':_')} record(s)")
    sessions = await prune_sessions(backend, now, settings.admin.session_idle_timeout_s)
    dropped = await prune_grants(backend, now - policy.days * 86400)
    for note in _longer_elsewhere(settings):
        log.warning("retention.days is %d but %s", policy.days, note)
    parts += [f"{sessions} ended session(s)", f"{dropped} expired grant(s)"]
    return f"kept {policy.days} d (from {before}): deleted {', '.join(parts)}"
