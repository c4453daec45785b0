"""The embedded backend's blobs: durable values with a time to live, in the
``blobs`` table of its SQLite file (schema version 3, ``embedded_schema.py``).

Not mirrored in memory (a blob can be megabytes and there can be many): every
call reads or writes the file, on the backend's worker thread, with the
connection it passes in. Expiry is wall-clock time (epoch seconds), so it holds
across a restart. An expired row is never returned; it is deleted when a read
finds it, and :func:`sweep` deletes up to ``limit`` expired rows at a time (the
backend runs it every :data:`SWEEP_EVERY` puts), so rows nobody reads again do
not pile up. Deleted rows free their pages for reuse; the file does not shrink.
"""

from __future__ import annotations

import sqlite3

SWEEP_EVERY = 100
"""Puts between two sweeps (the first sweep comes with the 100th put of a process)."""
SWEEP_LIMIT = 500
"""Expired rows one sweep deletes at most, so one put never pays for a long backlog."""

_UPSERT = (
    "INSERT INTO blobs (key, value, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_SELECT = "SELECT value, expires_at FROM blobs WHERE key = ?"
_DELETE_EXPIRED_ONE = "DELETE FROM blobs WHERE key = ? AND expires_at <= ?"
_SWEEP = "DELETE FROM blobs WHERE key IN (SELECT key FROM blobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"


def put(conn: sqlite3.Connection, key: str, value: bytes, expires_at: float) -> None:
    """Store ``value`` under ``key`` until ``expires_at`` (epoch s), replacing what was there."""
    conn.execute(_UPSERT, (key, value, expires_at))


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
