"""The embedded backend's enumeration and restore (backups: ``backup.py``): every table,
spend counter, ledger mark, blob and log stream of its SQLite file, and the writes that
put them back. Each SQL function runs on the backend's worker thread with its connection;
:class:`EmbeddedDump` is the part of :class:`~gateway.state.embedded.EmbeddedBackend`
that calls them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gateway.state.base import Record

if TYPE_CHECKING:
    from gateway.state.embedded import _Db

T = TypeVar("T")

BLOB_PAGE = 64
"""Blobs read per round trip to the worker thread (each can be megabytes)."""


def spend_counters(conn: sqlite3.Connection) -> dict[str, float]:
    return {key: float(usd) for key, usd in conn.execute("SELECT key, usd FROM spend ORDER BY key")}


def spend_marks(conn: sqlite3.Connection) -> dict[str, int]:
    return {owner: int(seq) for owner, seq in conn.execute("SELECT owner, seq FROM spend_batches ORDER BY owner")}


def restore_spend(conn: sqlite3.Connection, totals: list[tuple[str, float]], marks: list[tuple[str, int]]) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO spend (key, usd) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET usd = excluded.usd", totals
        )
        conn.executemany(
            "INSERT INTO spend_batches (owner, seq, at) VALUES (?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET seq = excluded.seq, at = excluded.at",
            [(owner, seq, now) for owner, seq in marks],
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def blob_page(conn: sqlite3.Connection, after: str, now: float) -> list[tuple[str, bytes, float]]:
    sql = "SELECT key, value, expires_at FROM blobs WHERE key > ? AND expires_at > ? ORDER BY key LIMIT ?"
    rows = conn.execute(sql, (after, now, BLOB_PAGE))
    return [(key, bytes(value), float(expires_at) - now) for key, value, expires_at in rows]


def log_streams(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT DISTINCT stream FROM logs ORDER BY stream")]


def restore_log(conn: sqlite3.Connection, stream: str, rows: list[tuple[int, str]]) -> bool:
    """One transaction. The ``logs`` table numbers every stream with one AUTOINCREMENT key:
    the numbers are kept unless one is taken (by another stream), then all are new."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seqs = [seq for seq, _ in rows]
        taken = any(conn.execute("SELECT 1 FROM logs WHERE seq = ?", (seq,)).fetchone() is not None for seq in seqs)
        if taken:
            conn.executemany("INSERT INTO logs (stream, json) VALUES (?, ?)", [(stream, text) for _, text in rows])
        else:
            conn.executemany("INSERT INTO logs (seq, stream, json) VALUES (?, ?, ?)", [(s, stream, t) for s, t in rows])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return not taken


class EmbeddedDump:
    """The enumeration and restore methods of the embedded backend (see the module docstring)."""

    _db: _Db

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        raise NotImplementedError

    async def _ready(self) -> None:
        raise NotImplementedError

    async def blobs_written(self) -> None:
        raise NotImplementedError

    async def _on_conn(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(lambda: fn(self._db._conn(), *args))

    async def tables(self) -> list[str]:
        await self._ready()
        return sorted(tbl for tbl, rows in self._db.mirror.items() if rows)

    async def scan_items(self, table: str) -> list[tuple[str, Record]]:
        await self._ready()
        rows = dict(self._db.mirror.get(table, {}))
        return [(id_, orjson.loads(rows[id_])) for id_ in sorted(rows)]

    async def spend_counters(self) -> dict[str, float]:
        return await self._on_conn(spend_counters)

    async def spend_marks(self) -> dict[str, int]:
        return await self._on_conn(spend_marks)

    async def restore_spend(self, totals: Mapping[str, float], marks: Mapping[str, int]) -> None:
        await self._on_conn(
            restore_spend, [(k, float(v)) for k, v in totals.items()], [(k, int(v)) for k, v in marks.items()]
        )

    async def blob_items(self) -> AsyncIterator[tuple[str, bytes, float]]:
        await self.blobs_written()
        after = ""
        while True:
            page = await self._on_conn(blob_page, after, time.time())
            for item in page:
                yield item
            if len(page) < BLOB_PAGE:
                return
            after = page[-1][0]

    async def log_streams(self) -> list[str]:
        return await self._on_conn(log_streams)

    async def restore_log(self, stream: str, records: Sequence[Record]) -> bool:
        rows = [(int(r["seq"]), orjson.dumps({k: v for k, v in r.items() if k != "seq"}).decode()) for r in records]
        return await self._on_conn(restore_log, stream, rows) if rows else True
