"""The embedded state backend: one process, no services.

- Records (client keys, teams), spend and the append-only logs live in one
  SQLite file (WAL mode, ``synchronous=NORMAL``: a committed write survives a
  process crash or restart; an OS crash or power cut may lose the last
  transactions). The file and its parent directories are created on first use.
  The file carries its schema version: opening it applies the migrations it
  has not had and refuses a file of a newer release (``embedded_schema.py``).
  Each spend batch of the ledger is applied once: ``apply_spend`` records the
  owner's last batch ``seq`` (table ``spend_batches``) in the transaction of
  its increments. The spend not yet committed is in the ledger's journal
  beside the file (``spend_journal.py``), replayed at start-up.
- Every SQLite call runs on ONE dedicated worker thread (a single-thread
  executor), so the event loop never blocks on disk and the connection is
  never shared between threads.
- Record reads are served from an in-memory mirror of the ``records`` table,
  loaded once on first use and updated by the worker thread right after each
  commit, so ``put``/``delete`` return only once the write is durable and a
  ``get`` never waits on disk. The mirror assumes this process is the only
  writer of the file (that is what "embedded" means).
- The response cache is an in-memory LRU bounded in bytes, with per-entry
  expiry; concurrency slots are in-memory counters (a crashed holder takes its
  slots with it, so ``ttl_s`` is not needed); rate-limit windows live in one
  ``limits`` :class:`~limits.aio.storage.MemoryStorage` per backend.
- Blobs (``blob_put``/``blob_get``/``blob_delete``: large values with a TTL,
  such as stored responses) live in the SQLite file, written behind in batches
  (held in memory only until their batch is committed, a few milliseconds, and
  read from there meanwhile; ``aclose`` waits for them); their expiry is
  wall-clock time, so it holds across a restart. Expired rows are deleted when
  read and by a bounded sweep every so many puts (``embedded_blobs.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, cast

import orjson
from limits.aio.storage import MemoryStorage, Storage

from gateway.state import embedded_blobs as blobs
from gateway.state.base import (
    BackendUnavailable,
    Record,
    SlotSpec,
    SpendBatch,
    WindowAdjust,
    WindowHit,
    WindowSpec,
)
from gateway.state.embedded_dump import EmbeddedDump
from gateway.state.embedded_schema import migrate
from gateway.state.memory import MemoryWindows

T = TypeVar("T")

_UPSERT_RECORD = (
    "INSERT INTO records (tbl, id, json) VALUES (?, ?, ?) ON CONFLICT (tbl, id) DO UPDATE SET json = excluded.json"
)
_UPSERT_SPEND = "INSERT INTO spend (key, usd) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET usd = usd + excluded.usd"
_LAST_BATCH = "SELECT seq FROM spend_batches WHERE owner = ?"
_MARK_BATCH = (
    "INSERT INTO spend_batches (owner, seq, at) VALUES (?, ?, ?)"
    " ON CONFLICT (owner) DO UPDATE SET seq = excluded.seq, at = excluded.at"
)
_SQL_VARS = 500  # stay well under SQLite's bound-parameter limit per statement


def _load(text: str) -> Record:
    return cast(Record, orjson.loads(text))


class ByteLRU:
    """An LRU map of bytes bounded by total size (key length + value bytes), each
    entry with its own expiry. Not thread-safe: use it from the event loop."""

    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if key in self._entries:
            self._drop(key)
        cost = len(key) + len(value)
        if cost > self.max_bytes or ttl_s <= 0:
            return
        self._entries[key] = (value, self._clock() + ttl_s)
        self.size += cost
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.size -= len(key) + len(value)


class _Db:
    """The SQLite side; every method runs on the backend's worker thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.mirror: dict[str, dict[str, str]] = {}
        self.blob_puts = 0

    def open(self) -> None:
        if self.conn is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            migrate(conn, self.path)  # first: a file it refuses is not touched, not even switched to WAL
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for tbl, id_, text in conn.execute("SELECT tbl, id, json FROM records"):
                self.mirror.setdefault(tbl, {})[id_] = text
        except BaseException:
            conn.close()  # a file it refused (or could not read) is not held open
            raise
        self.conn = conn

    def _conn(self) -> sqlite3.Connection:
        self.open()
        assert self.conn is not None
        return self.conn

    def put(self, tbl: str, id_: str, text: str) -> None:
        self._conn().execute(_UPSERT_RECORD, (tbl, id_, text))
        self.mirror.setdefault(tbl, {})[id_] = text

    def delete(self, tbl: str, id_: str) -> bool:
        gone = self._conn().execute("DELETE FROM records WHERE tbl = ? AND id = ?", (tbl, id_)).rowcount > 0
        self.mirror.get(tbl, {}).pop(id_, None)
        return gone

    def scan(self, tbl: str) -> list[str]:
        self.open()
        return list(self.mirror.get(tbl, {}).values())

    def incr_spend(self, items: list[tuple[str, float]]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT_SPEND, items)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def apply_spend(self, owner: str, seq: int, items: list[tuple[str, float]]) -> bool:
        """The increments and the owner's new last ``seq`` in one transaction,
        unless that ``seq`` (or a later one) is there already."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute(_LAST_BATCH, (owner,)).fetchone()
            if last is not None and last[0] >= seq:
                conn.execute("ROLLBACK")
                return False
            conn.executemany(_UPSERT_SPEND, items)
            conn.execute(_MARK_BATCH, (owner, seq, time.time()))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def read_spend(self, keys: list[str]) -> dict[str, float]:
        conn = self._conn()
        out = dict.fromkeys(keys, 0.0)
        for i in range(0, len(keys), _SQL_VARS):
            chunk = keys[i : i + _SQL_VARS]
            marks = ",".join("?" * len(chunk))
            for key, usd in conn.execute(f"SELECT key, usd FROM spend WHERE key IN ({marks})", chunk):
                out[key] = float(usd)
        return out

    # The ``logs`` table has an AUTOINCREMENT key: a sequence number is never
    # reused, even after the newest rows are gone. Read straight from disk (no
    # mirror): listings are rare and not on the request path.
    def append_log(self, stream: str, text: str) -> int:
        cur = self._conn().execute("INSERT INTO logs (stream, json) VALUES (?, ?)", (stream, text))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def read_log(self, stream: str, limit: int, before: int | None) -> list[tuple[int, str]]:
        sql = "SELECT seq, json FROM logs WHERE stream = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
        bound = before if before is not None else 2**63 - 1
        return list(self._conn().execute(sql, (stream, bound, limit)))

    # Blobs: straight to and from the file (no mirror), see embedded_blobs.py.
    def blob_put(self, rows: list[tuple[str, bytes, float]]) -> None:
        conn = self._conn()
        blobs.put_many(conn, rows)
        before, self.blob_puts = self.blob_puts, self.blob_puts + len(rows)
        if before // blobs.SWEEP_EVERY != self.blob_puts // blobs.SWEEP_EVERY:
            blobs.sweep(conn, time.time())

    def blob_get(self, key: str) -> bytes | None:
        return blobs.get(self._conn(), key, time.time())

    def blob_get_many(self, keys: list[str]) -> list[bytes | None]:
        conn, now = self._conn(), time.time()
        return [blobs.get(conn, key, now) for key in keys]

    def blob_delete(self, key: str) -> bool:
        return blobs.delete(self._conn(), key, time.time())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class EmbeddedBackend(EmbeddedDump):
    """The single-process state backend: SQLite for records and spend, memory
    for the cache, slots and rate-limit windows (see the module docstring); enumeration
    and restore for backups in :class:`EmbeddedDump`."""

    kind = "embedded"

    def __init__(
        self, path: str, *, cache_max_bytes: int = 64 * 1024 * 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._db = _Db(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gw-sqlite")
        self._blob_writes = blobs.WriteBehind(lambda rows: self._run(self._db.blob_put, rows))
        self._opened = False
        self._closed = False
        self._cache = ByteLRU(cache_max_bytes, clock=clock)
        self._memory_windows = MemoryWindows()
        self._limits: MemoryStorage | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise BackendUnavailable("embedded backend is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def _ready(self) -> None:
        if self._closed:
            raise BackendUnavailable("embedded backend is closed")
        if not self._opened:
            await self._run(self._db.open)
            self._opened = True

    # --- records ---------------------------------------------------------------
    async def get(self, table: str, id: str) -> Record | None:
        await self._ready()
        text = self._db.mirror.get(table, {}).get(id)
        return None if text is None else _load(text)

    async def put(self, table: str, id: str, record: Record) -> None:
        await self._run(self._db.put, table, id, orjson.dumps(record).decode())

    async def delete(self, table: str, id: str) -> bool:
        return await self._run(self._db.delete, table, id)

    async def scan(self, table: str) -> list[Record]:
        return [_load(text) for text in await self._run(self._db.scan, table)]

    # --- spend -----------------------------------------------------------------
    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        if increments:
            await self._run(self._db.incr_spend, [(k, float(v)) for k, v in increments.items()])

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        return await self._run(self._db.read_spend, list(keys)) if keys else {}

    async def apply_spend(self, batch: SpendBatch) -> bool:
        """Once per ``(owner, seq)`` (the ``spend_batches`` table); reservations are
        ignored: one process holds them all, in its ledger."""
        if not batch.increments:
            return False
        items = [(k, float(v)) for k, v in batch.increments.items()]
        return await self._run(self._db.apply_spend, batch.owner, batch.seq, items)

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        return await self.read_spend(keys), {}

    # --- response cache ------------------------------------------------------------
    async def cache_get(self, key: str) -> bytes | None:
        return self._cache.get(key)

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._cache.set(key, value, ttl_s)

    # --- blobs: in the SQLite file only ------------------------------------------------
    async def blob_put(self, key: str, value: bytes, ttl_s: float) -> None:
        """A ``ttl_s`` of 0 or less stores nothing and removes what ``key`` held."""
        if ttl_s <= 0:
            await self.blob_delete(key)  # a put still held in the write-behind batch too
            return
        await self._ready()
        self._blob_writes.put(key, value, time.time() + ttl_s)

    async def blob_put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        for key, value, ttl_s in items:  # each a put into the write-behind batch: no I/O here
            await self.blob_put(key, value, ttl_s)

    async def blobs_written(self) -> None:
        """Wait until every blob put so far is in the file (they are written behind)."""
        await self._blob_writes.flush()

    async def blob_get(self, key: str) -> bytes | None:
        held, value = self._blob_writes.get(key, time.time())
        return value if held else await self._run(self._db.blob_get, key)

    async def blob_get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = time.time()
        found = [self._blob_writes.get(key, now) for key in keys]
        unheld = [key for key, (held, _) in zip(keys, found, strict=True) if not held]
        read = iter(await self._run(self._db.blob_get_many, unheld) if unheld else ())
        return [value if held else next(read) for held, value in found]

    async def blob_delete(self, key: str) -> bool:
        held, value = self._blob_writes.get(key, time.time())
        await self._blob_writes.flush()  # then the file has it, and the delete is the last word
        return await self._run(self._db.blob_delete, key) or (held and value is not None)

    # --- concurrency slots and rate-limit windows: in memory ------------------
    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        return self._memory_windows.acquire_slot(key, limit)

    async def release_slot(self, key: str) -> None:
        self._memory_windows.release_slot(key)

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        return await self._memory_windows.hit_windows(windows, slots)

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        await self._memory_windows.adjust_windows(adjustments, release)

    def limits_storage(self) -> Storage:
        if self._limits is None:
            self._limits = MemoryStorage()
        return self._limits

    async def ping(self) -> bool:
        """True once the database is open; raises BackendUnavailable if it cannot be."""
        await self._ready()
        return True

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._blob_writes.flush()
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=False)

    # --- append-only logs ------------------------------------------------------------
    async def append_log(self, stream: str, record: Record) -> int:
        return await self._run(self._db.append_log, stream, orjson.dumps(record).decode())

    async def read_log(self, stream: str, limit: int, before: int | None = None) -> list[Record]:
        rows = await self._run(self._db.read_log, stream, max(0, limit), before)
        return [{**_load(text), "seq": seq} for seq, text in rows]
