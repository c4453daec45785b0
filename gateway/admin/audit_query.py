"""``GET /admin/audit``'s query: paging (``limit``, ``before``) and the filters
``actor``, ``action``, ``since`` and ``until``, applied by the gateway.

- ``actor``: exact, case-sensitive (``alice``, ``master``).
- ``action``: exact, or a dotted prefix: ``keys`` (or ``keys.``) matches every
  ``keys.*`` action, ``keys.create`` only ``keys.create`` (and ``keys.create.*``).
- ``since`` / ``until``: inclusive bounds on the record's ``ts``, each an ISO 8601
  date-time (``2026-12-06T10:00:00Z``, an offset, or none: UTC; or a date,
  midnight UTC) or epoch seconds (``1796550000`` or ``1796550000.5``).

The log is read newest first in chunks from the state backend (``read_log``, the
same on every backend) and filtered here. One request reads at most
:data:`MAX_SCAN` records: a page can hold fewer than ``limit`` matches with a
``next_before`` to go on from; ``next_before`` is null only at the end of the log,
or once the records are older than ``since`` (reading stops :data:`CLOCK_SLACK_S`
seconds past it: replicas' clocks may differ a little, and the log is in the order
records were appended).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import InvalidRequest
from gateway.state.base import Record

MAX_LIMIT = 1000
CHUNK = 500  # records per read_log call while filtering
MAX_SCAN = 5000  # records one filtered request reads at most
CLOCK_SLACK_S = 60.0
MAX_TEXT = 200
_EPOCH = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")
_ACTION = re.compile(r"^[A-Za-z0-9_.-]+$")

Reader = Callable[[int, int | None], Awaitable[list[Record]]]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    limit: int = 100
    before: int | None = None
    actor: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def filtered(self) -> bool:
        return any(v is not None for v in (self.actor, self.action, self.since, self.until))

    def matches(self, record: Record) -> bool:
        if self.actor is not None and record.get("actor") != self.actor:
            return False
        if self.action is not None:
            action = str(record.get("action") or "")
            if action != self.action and not action.startswith(self.action + "."):
                return False
        if self.since is not None or self.until is not None:
            ts = _ts(record)
            if ts is None:
                return False
            if self.since is not None and ts < self.since:
                return False
            if self.until is not None and ts > self.until:
                return False
        return True

    def past_since(self, record: Record) -> bool:
        """Whether this record, and so (give or take the clock slack) every older one, is before ``since``."""
        ts = _ts(record)
        return self.since is not None and ts is not None and ts < self.since - CLOCK_SLACK_S


def _ts(record: Record) -> float | None:
    ts = record.get("ts")
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None


def _bad(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=name, code="invalid_field")


def _int(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _bad(name, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _text(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > MAX_TEXT or raw != raw.strip():
        raise _bad(name, f"{name} must be 1 to {MAX_TEXT} characters, without leading or trailing spaces")
    return raw


def _time(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    expected = f"{name} must be an ISO 8601 date-time (2026-12-06T10:00:00Z) or epoch seconds"
    if _EPOCH.match(raw):
        return float(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, f"{expected}, not {raw[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    value = moment.timestamp()
    if not math.isfinite(value):
        raise _bad(name, expected)
    return value


def parse_query(params: Mapping[str, str]) -> AuditQuery:
    """The query from ``request.query_params``; a 400 naming the first bad parameter."""
    limit = _int(params, "limit", 100, 1, MAX_LIMIT)
    assert limit is not None
    action = _text(params, "action")
    if action is not None:
        action = action.removesuffix(".")
        if not _ACTION.match(action):
            raise _bad("action", "action must be an action name or a dotted prefix of one (keys, keys.create)")
    since, until = _time(params, "since"), _time(params, "until")
    if since is not None and until is not None and until < since:
        raise _bad("until", "until must not be before since")
    return AuditQuery(
        limit=limit,
        before=_int(params, "before", None, 1, 2**62),
        actor=_text(params, "actor"),
        action=action,
        since=since,
        until=until,
    )


async def read_page(read: Reader, query: AuditQuery) -> tuple[list[Record], int | None]:
    """One page of matching records, newest first, and the ``before`` cursor of the next (None: no more)."""
    if not query.filtered:
        rows = await read(query.limit, query.before)
        return rows, (rows[-1]["seq"] if len(rows) == query.limit else None)
    found: list[Record] = []
    cursor, scanned = query.before, 0
    while scanned < MAX_SCAN:
        want = min(CHUNK, MAX_SCAN - scanned)
        rows = await read(want, cursor)
        for record in rows:
            scanned += 1
            cursor = record["seq"]
            if query.past_since(record):
                return found, None
            if query.matches(record):
                found.append(record)
                if len(found) == query.limit:
                    return found, cursor
        if len(rows) < want or cursor == 1:
            return found, None
    return found, cursor
