"""The embedded backend's blobs: durable values with a time to live, in the
``blobs`` table of its SQLite file (schema version 3, ``embedded_schema.py``).

Not mirrored in memory (a blob can be megabytes and there can be many): reads go
to the file, on the backend's worker thread, with the connection it passes in;
puts are written behind (:class:`WriteBehind`: held in memory only until their
batch is committed, and read from there meanwhile). Expiry is wall-clock time (epoch seconds), so it holds
across a restart. An expired row is never returned; it is deleted when a read
finds it, and :func:`sweep` deletes up to ``limit`` expired rows at a time (the
backend runs it every :data:`SWEEP_EVERY` puts), so rows nobody reads again do
not pile up. Deleted rows free their pages for reuse; the file does not shrink.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway.state")

BATCH_DELAY_S = 0.01
"""How long a put waits for others to share its write: one thread hop and one transaction
per 10 ms at most, instead of one per request (the hop costs more than the write)."""
SWEEP_EVERY = 100
"""Puts between two sweeps (the first sweep comes with the 100th put of a process)."""
SWEEP_LIMIT = 500
"""Expired rows one sweep deletes at most, so one put never pays for a long backlog."""

ROWS_PER_STATEMENT = 300
"""Rows one upsert statement carries at most (900 parameters: under SQLite's oldest limit, 999)."""

_UPSERT_HEAD = "INSERT INTO blobs (key, value, expires_at) VALUES "
_UPSERT_TAIL = " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
_UPSERT = _UPSERT_HEAD + "(?, ?, ?)" + _UPSERT_TAIL
_SELECT = "SELECT value, expires_at FROM blobs WHERE key = ?"
_DELETE_EXPIRED_ONE = "DELETE FROM blobs WHERE key = ? AND expires_at <= ?"
_SWEEP = "DELETE FROM blobs WHERE key IN (SELECT key FROM blobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"


def put(conn: sqlite3.Connection, key: str, value: bytes, expires_at: float) -> None:
    """Store ``value`` under ``key`` until ``expires_at`` (epoch s), replacing what was there."""
    conn.execute(_UPSERT, (key, value, expires_at))


def put_many(conn: sqlite3.Connection, rows: list[tuple[str, bytes, float]]) -> None:
    """Several puts in one transaction (a batch of :class:`WriteBehind`): one statement of
    up to :data:`ROWS_PER_STATEMENT` rows at a time, as each statement gives the GIL back and
    takes it again (``executemany`` would do that per row, and under load every take waits for
    the event loop's thread). ``rows`` holds each key once (the batch is a dict)."""
    if len(rows) <= ROWS_PER_STATEMENT:
        conn.execute(_upsert(len(rows)), [field for row in rows for field in row])
        return
    conn.execute("BEGIN")
    try:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            conn.execute(_upsert(len(chunk)), [field for row in chunk for field in row])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _upsert(n: int) -> str:
    """The upsert of ``n`` rows (the connection caches the statement by its text)."""
    return _UPSERT_HEAD + ", ".join(("(?, ?, ?)",) * n) + _UPSERT_TAIL


class WriteBehind:
    """Blob puts held in memory until the worker thread has committed them, in one
    transaction per batch of :data:`BATCH_DELAY_S`: a put costs the request no thread
    hop, and the puts of a busy gateway share one write. The embedded backend serves
    one process, so every read goes through here and sees a put at once (:meth:`get`
    before the file). A write that fails is logged and its rows are lost (the gateway
    is still answering: a stored Response then cannot be continued); :meth:`flush`
    waits for what is pending (``aclose``)."""

    __slots__ = ("_delay_s", "_pending", "_run", "_task", "_writing")

    def __init__(
        self, run: Callable[[list[tuple[str, bytes, float]]], Awaitable[None]], delay_s: float = BATCH_DELAY_S
    ) -> None:
        self._run = run
        self._delay_s = delay_s
        self._pending: dict[str, tuple[bytes, float]] = {}
        self._writing: dict[str, tuple[bytes, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        self._pending[key] = (value, expires_at)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def get(self, key: str, now: float) -> tuple[bool, bytes | None]:
        """(held here?, its value unless expired)."""
        held = self._pending.get(key) or self._writing.get(key)
        if held is None:
            return False, None
        return True, held[0] if held[1] > now else None

    async def flush(self) -> None:
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._pending:
                # What comes meanwhile shares the write; so do the puts made while the
                # last batch was written (they wait for the next, not for one more hop each).
                await asyncio.sleep(self._delay_s)
                self._writing, self._pending = self._pending, {}
                rows = [(key, value, expires_at) for key, (value, expires_at) in self._writing.items()]
                try:
                    await self._run(rows)
                except Exception as exc:
                    log.error("could not write %d stored blob(s) to the state backend: %s", len(rows), exc)
                self._writing = {}
        finally:
            self._task = None


def get(conn: sqlite3.Connection, key: str, now: float) -> bytes | None:
    """The value, or None when absent or expired at ``now`` (an expired row is deleted)."""
    row = conn.execute(_SELECT, (key,)).fetchone()
    if row is None:
        return None
    value, expires_at = row
    if expires_at <= now:
        conn.execute(_DELETE_EXPIRED_ONE, (key, now))
        return None
    return bytes(value)


def delete(conn: sqlite3.Connection, key: str, now: float) -> bool:
    """Delete ``key``; True when it held a value not yet expired at ``now`` (as
    Redis, where an expired key is already gone). One thread writes the file, so
    nothing changes between the read and the delete."""
    row = conn.execute("SELECT expires_at FROM blobs WHERE key = ?", (key,)).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM blobs WHERE key = ?", (key,))
    return bool(row[0] > now)


def sweep(conn: sqlite3.Connection, now: float, limit: int = SWEEP_LIMIT) -> int:
    """Delete up to ``limit`` rows expired at ``now``, oldest first; how many."""
    return conn.execute(_SWEEP, (now, limit)).rowcount
