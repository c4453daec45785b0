"""Request detail in PostgreSQL (``state.backend: postgres``): one row of
``gw_requests`` per finished request (schema step 2 of ``postgres_schema.py``),
written behind the request path.

The fields are the access log's (``gateway.observability.logs.RequestRecord``):
ids, time, key id, team, alias, deployment, provider, model, status, error
code, latency, tokens, cost, cache, stream. Never a prompt or an answer.

:meth:`DetailWriter.record` is what the request path pays: one tuple appended
to a bounded deque, no await, no I/O. Every ``interval_s`` a task writes what is
waiting, one ``INSERT ... SELECT FROM unnest(...)`` per :data:`BATCH_ROWS` rows.
When the buffer is full (PostgreSQL slow or down for long) the oldest row goes
and :attr:`DetailWriter.dropped` counts it; a failed write puts its rows back
in front of the newer ones (still within the bound) for the next try. A write
whose answer was lost is harmless to repeat: a row already there (same
``ts`` and ``request_id``) is skipped. The embedded and Redis shapes keep no
per-request detail: there the access log is the only per-request record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import Any

from gateway.state.base import BackendUnavailable
from gateway.state.periodic import Periodic
from gateway.state.postgres_client import Pool

log = logging.getLogger("gateway.state.postgres")

COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "timestamptz"),
    ("request_id", "text"),
    ("route", "text"),
    ("status", "int4"),
    ("latency_ms", "float8"),
    ("trace_id", "text"),
    ("key_id", "text"),
    ("team", "text"),
    ("alias", "text"),
    ("deployment", "text"),
    ("provider", "text"),
    ("model", "text"),
    ("attempts", "int4"),
    ("ttft_ms", "float8"),
    ("prompt_tokens", "int4"),
    ("completion_tokens", "int4"),
    ("cost_usd", "float8"),
    ("cache", "text"),
    ("error_code", "text"),
    ("stream", "bool"),
)
"""The columns of ``gw_requests``, in the order of a row (``ts`` first)."""
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
BATCH_ROWS = 5000
"""Rows one INSERT carries at most."""

_fields = attrgetter(*COLUMN_NAMES)


def insert_sql(table: str, *, epoch_ts: bool, extra: Sequence[str] = ()) -> str:
    """``INSERT INTO table`` of one array parameter per column (then one per ``extra``
    text column), skipping rows already there. ``epoch_ts``: ``ts`` comes as epoch
    seconds (float8) instead of timestamptz."""
    names = [*COLUMN_NAMES, *extra]
    types = [("float8" if epoch_ts else kind) if name == "ts" else kind for name, kind in COLUMNS]
    types += ["text"] * len(extra)
    params = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(types, 1))
    select = ", ".join("to_timestamp(u.ts)" if name == "ts" and epoch_ts else f"u.{name}" for name in names)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {select}"
        f" FROM unnest({params}) AS u({', '.join(names)}) ON CONFLICT DO NOTHING"
    )


_INSERT = insert_sql("gw_requests", epoch_ts=True)


def as_columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays of :func:`insert_sql`)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def _insert(conn: Any, columns: list[list[Any]]) -> None:
    await conn.execute(_INSERT, *columns)


class DetailWriter:
    """The write-behind buffer of request detail (see the module docstring)."""

    def __init__(self, pool: Pool, *, max_rows: int = 50_000, interval_s: float = 1.0) -> None:
        self._pool = pool
        self.max_rows = max_rows
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=max_rows)
        self.dropped = 0
        """Rows lost: the buffer was full (the oldest went), or a record could not be read."""
        self.written = 0
        self.flush_failures = 0
        self._failing = False
        self._lock = asyncio.Lock()
        self._flusher = Periodic("request-detail-flush", interval_s, self.flush, "request detail flush failed")

    # --- request path (synchronous, no I/O) ------------------------------------------------
    def record(self, rec: object) -> None:
        """Hold one finished request's row (a ``RequestRecord``); never raises."""
        try:
            row: tuple[Any, ...] = _fields(rec)
        except Exception:
            self.dropped += 1
            return
        if len(self._rows) == self.max_rows:
            self.dropped += 1  # the deque lets its oldest row go
        self._rows.append(row)

    @property
    def pending(self) -> int:
        return len(self._rows)

    # --- I/O ---------------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write every row held; False if PostgreSQL failed (the rows are kept, within the bound)."""
        async with self._lock:
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(BATCH_ROWS, len(self._rows)))]
                columns = as_columns(batch, len(COLUMNS))
                try:
                    await self._pool.run(partial(_insert, columns=columns))
                except BackendUnavailable as exc:
                    self._put_back(batch)
                    self.flush_failures += 1
                    if not self._failing:
                        log.warning("request detail not written to postgresql; kept for the next try: %s", exc)
                    self._failing = True
                    return False
                self.written += len(batch)
            if self._failing:
                log.warning("request detail written to postgresql again")
            self._failing = False
            return True

    def _put_back(self, batch: list[tuple[Any, ...]]) -> None:
        """``batch`` back in front of the rows that came meanwhile; over the bound, the oldest go."""
        rows = batch + list(self._rows)
        over = len(rows) - self.max_rows
        if over > 0:
            self.dropped += over
            rows = rows[over:]
        self._rows = deque(rows, maxlen=self.max_rows)

    def start(self) -> None:
        self._flusher.start()

    async def close(self, timeout_s: float = 10.0) -> bool:
        """Stop the task and write what is held; False (logged) if that failed."""
        await self._flusher.stop()
        try:
            done = await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            done = False
        if not done:
            log.error("request detail of %d request(s) not written to postgresql at shutdown", len(self._rows))
        return done
