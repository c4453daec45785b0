"""The production state shape: PostgreSQL for everything that must last, Redis for
what is hot and shared.

PostgreSQL (``postgres_client.py``, schema in ``postgres_schema.py``) is the system
of record: records (keys, teams, users, sessions, runtime models, sealed secrets),
the spend ledger (one row per batch, never twice) and its totals, stored
responses, and the append-only logs (the audit log; a trigger refuses updates and
deletes). Redis (a :class:`~gateway.state.redis.RedisBackend`) keeps what the
request path touches: rate-limit windows, concurrency slots, the response cache,
budget reservations, and copies:

- **records** are read through Redis (``gw:blob:rec:<table>:<id>``, kept
  ``mirror_ttl_s``): a miss reads PostgreSQL and fills the copy only if none was
  written meanwhile (SET NX); a write goes to PostgreSQL, then replaces the copy; a
  delete leaves a tombstone (so a reader that read the old row before the delete
  cannot put it back). An absent record is remembered too (a tombstone), so a
  flood of unknown keys does not reach PostgreSQL. While PostgreSQL is down, reads
  of copied records keep working and writes fail with :class:`BackendUnavailable`
  (the admin API's 503 ``state_backend_unavailable``).
- **spend**: each ledger batch is applied to PostgreSQL (the batch row, the
  owner's mark and the totals, one transaction), then to Redis (its own
  once-per-batch script), whose totals are the maintained aggregate budgets read
  with the reservations in one round trip: a budget check never waits for
  PostgreSQL. A batch that reached PostgreSQL but not Redis is retried by the ledger
  (PostgreSQL skips it, Redis applies it). When Redis has lost its data (restarted
  without persistence), the first budget read that finds its seed mark gone copies
  PostgreSQL's totals back (counters Redis no longer holds).
- **stored responses** (blobs): written to Redis at once (the next turn may come
  at once, to any replica) and to PostgreSQL behind, in batches; read from Redis,
  then PostgreSQL.

Reports read spend totals from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from limits.aio.storage import Storage

from gateway.state.base import BackendUnavailable, Record, SlotSpec, SpendBatch, WindowAdjust, WindowHit, WindowSpec
from gateway.state.embedded_blobs import WriteBehind
from gateway.state.postgres_client import Pool
from gateway.state.redis import RedisBackend

log = logging.getLogger("gateway.state.postgres")

TOMBSTONE = b"\x00"
"""A copy that says "no such record" (no JSON document starts with a NUL)."""
SEED_CHECK_S = 30.0
"""How often a budget read looks for Redis's seed mark (a lost Redis is re-seeded)."""
SEED_MARK = "spend-seeded"

_MARK = """
INSERT INTO gw_spend_marks (owner, seq) VALUES ($1, $2)
ON CONFLICT (owner) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now() WHERE gw_spend_marks.seq < EXCLUDED.seq
RETURNING seq
"""
_TOTALS = """
INSERT INTO gw_spend_totals (counter, usd) SELECT * FROM unnest($1::text[], $2::float8[])
ON CONFLICT (counter) DO UPDATE SET usd = gw_spend_totals.usd + EXCLUDED.usd
"""
_BLOBS = """
INSERT INTO gw_blobs (key, value, expires_at) SELECT * FROM unnest($1::text[], $2::bytea[], $3::float8[])
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
"""
_LOG_ROW = "INSERT INTO gw_logs (stream, seq, record) VALUES ($1, $2, $3::jsonb)"
_LOG_SEQ = """
INSERT INTO gw_log_seq (stream, seq) VALUES ($1, 1)
ON CONFLICT (stream) DO UPDATE SET seq = gw_log_seq.seq + 1 RETURNING seq
"""


def _rec(table: str, id: str) -> str:
    return f"rec:{table}:{id}"


class PostgresBackend:
    """PostgreSQL + Redis; see the module docstring."""

    kind = "postgres"

    def __init__(self, pool: Pool, redis: RedisBackend, *, mirror_ttl_s: float = 3600.0) -> None:
        self.pg = pool
        self.redis = redis
        self._mirror_ttl_s = mirror_ttl_s
        self._blob_writes = WriteBehind(self._write_blobs)
        self._seed_checked = float("-inf")

    # --- records -------------------------------------------------------------------
    async def get(self, table: str, id: str) -> Record | None:
        key = _rec(table, id)
        try:
            copy = await self.redis.blob_get(key)
        except BackendUnavailable:
            copy = None  # Redis down: PostgreSQL answers alone
        if copy is not None:
            return None if copy == TOMBSTONE else _load(copy)
        sql = "SELECT record::text FROM gw_records WHERE tbl=$1 AND id=$2"
        raw = await self.pg.run(lambda c: c.fetchval(sql, table, id))
        value = TOMBSTONE if raw is None else raw.encode()
        with contextlib.suppress(BackendUnavailable):  # Redis down: read from PostgreSQL, copied later
            await self.redis.blob_put_new(key, value, self._mirror_ttl_s)
        return None if raw is None else _load(raw)

    async def put(self, table: str, id: str, record: Record) -> None:
        text = orjson.dumps(record)
        sql = (
            "INSERT INTO gw_records (tbl, id, record) VALUES ($1, $2, $3::jsonb)"
            " ON CONFLICT (tbl, id) DO UPDATE SET record = EXCLUDED.record, updated_at = now()"
        )
        await self.pg.run(lambda c: c.execute(sql, table, id, text.decode()))
        await self.redis.blob_put(_rec(table, id), text, self._mirror_ttl_s)

    async def delete(self, table: str, id: str) -> bool:
        sql = "DELETE FROM gw_records WHERE tbl=$1 AND id=$2 RETURNING 1"
        existed = await self.pg.run(lambda c: c.fetchval(sql, table, id))
        await self.redis.blob_put(_rec(table, id), TOMBSTONE, self._mirror_ttl_s)
        return existed is not None

    async def scan(self, table: str) -> list[Record]:
        sql = "SELECT record::text FROM gw_records WHERE tbl=$1 ORDER BY id"
        rows = await self.pg.run(lambda c: c.fetch(sql, table))
        return [_load(row[0]) for row in rows]

    # --- spend ------------------------------------------------------------------------
    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        if not increments:
            return
        counters, amounts = _sorted(increments)
        await self.pg.run(lambda c: c.execute(_TOTALS, counters, amounts))
        await self.redis.incr_spend(increments)

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        sql = "SELECT counter, usd FROM gw_spend_totals WHERE counter = ANY($1::text[])"
        rows = await self.pg.run(lambda c: c.fetch(sql, list(keys)))
        found = {row[0]: float(row[1]) for row in rows}
        return {k: found.get(k, 0.0) for k in keys}

    async def apply_spend(self, batch: SpendBatch) -> bool:
        applied = False
        if batch.increments:
            applied = await self.pg.run(lambda c: self._apply(c, batch))
        # Redis applies each batch once by its own mark: a retry after a failure here lands
        await self.redis.apply_spend(batch)
        return applied

    @staticmethod
    async def _apply(conn: Any, batch: SpendBatch) -> bool:
        async with conn.transaction():
            if await conn.fetchval(_MARK, batch.owner, batch.seq) is None:
                return False  # this batch, or a later one of the owner, was applied already
            counters, amounts = _sorted(batch.increments)
            await conn.execute(
                "INSERT INTO gw_spend_batches (owner, seq, increments) VALUES ($1, $2, $3::jsonb)"
                " ON CONFLICT DO NOTHING",
                batch.owner,
                batch.seq,
                orjson.dumps(dict(zip(counters, amounts, strict=True))).decode(),
            )
            await conn.execute(_TOTALS, counters, amounts)
            return True

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        now = time.monotonic()
        if now - self._seed_checked >= SEED_CHECK_S:
            await self._seed()
            self._seed_checked = now
        return await self.redis.read_budget(keys, owner)

    async def _seed(self) -> None:
        """Copy PostgreSQL's totals into a Redis that lost them (no seed mark)."""
        if await self.redis.blob_get(SEED_MARK) is not None:
            return
        rows = await self.pg.run(lambda c: c.fetch("SELECT counter, usd FROM gw_spend_totals"))
        totals = {row[0]: float(row[1]) for row in rows}
        restored = await self.redis.seed_spend(totals)
        await self.redis.blob_put(SEED_MARK, b"1", 10 * 365 * 24 * 3600.0)
        if restored:
            log.warning("redis held no spend totals: %d counter(s) copied back from postgresql", restored)

    # --- response cache, windows, slots: Redis -------------------------------------------
    async def cache_get(self, key: str) -> bytes | None:
        return await self.redis.cache_get(key)

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.redis.cache_set(key, value, ttl_s)

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        return await self.redis.hit_windows(windows, slots)

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        await self.redis.adjust_windows(adjustments, release)

    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        return await self.redis.acquire_slot(key, limit, ttl_s)

    async def release_slot(self, key: str) -> None:
        await self.redis.release_slot(key)

    def limits_storage(self) -> Storage:
        return self.redis.limits_storage()

    # --- blobs: Redis at once, PostgreSQL behind --------------------------------------------
    async def blob_put(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            await self.blob_delete(key)
            return
        self._blob_writes.put(key, value, time.time() + ttl_s)
        with contextlib.suppress(BackendUnavailable):  # PostgreSQL will have it; reads fall back to it
            await self.redis.blob_put(key, value, ttl_s)

    async def _write_blobs(self, rows: list[tuple[str, bytes, float]]) -> None:
        keys, values, expiries = (list(column) for column in zip(*rows, strict=True))
        await self.pg.run(lambda c: c.execute(_BLOBS, keys, values, expiries))

    async def blobs_written(self) -> None:
        """Wait until every blob put so far is in PostgreSQL (they are written behind)."""
        await self._blob_writes.flush()

    async def blob_get(self, key: str) -> bytes | None:
        now = time.time()
        held, value = self._blob_writes.get(key, now)
        if held:
            return value
        try:
            copy = await self.redis.blob_get(key)
        except BackendUnavailable:
            copy = None
        if copy is not None:
            return copy
        sql = "SELECT value FROM gw_blobs WHERE key=$1 AND expires_at > $2"
        found: bytes | None = await self.pg.run(lambda c: c.fetchval(sql, key, now))
        return found

    async def blob_delete(self, key: str) -> bool:
        held, value = self._blob_writes.get(key, time.time())
        await self._blob_writes.flush()
        sql = "DELETE FROM gw_blobs WHERE key=$1 RETURNING expires_at"
        expires = await self.pg.run(lambda c: c.fetchval(sql, key))
        with contextlib.suppress(BackendUnavailable):
            await self.redis.blob_delete(key)
        return (expires is not None and expires > time.time()) or (held and value is not None)

    async def sweep_blobs(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired blobs; how many."""
        sql = (
            "DELETE FROM gw_blobs WHERE key IN"
            " (SELECT key FROM gw_blobs WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) RETURNING 1"
        )
        rows = await self.pg.run(lambda c: c.fetch(sql, time.time(), limit))
        return len(rows)

    # --- append-only logs ----------------------------------------------------------------
    async def append_log(self, stream: str, record: Record) -> int:
        text = orjson.dumps(record).decode()

        async def append(conn: Any) -> int:
            async with conn.transaction():
                seq = int(await conn.fetchval(_LOG_SEQ, stream))
                await conn.execute(_LOG_ROW, stream, seq, text)
                return seq

        return await self.pg.run(append)

    async def read_log(self, stream: str, limit: int, before: int | None = None) -> list[Record]:
        if limit <= 0:
            return []
        sql = "SELECT seq, record::text FROM gw_logs WHERE stream=$1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
        bound = before if before is not None else 2**63 - 1
        rows = await self.pg.run(lambda c: c.fetch(sql, stream, bound, limit))
        return [{**_load(row[1]), "seq": int(row[0])} for row in rows]

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> bool:
        """Both reachable (PostgreSQL answers a query, Redis a PING)."""
        ok = await self.pg.run(lambda c: c.fetchval("SELECT 1"))
        return ok == 1 and await self.redis.ping()

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._blob_writes.flush(), 10)
        except (TimeoutError, BackendUnavailable) as exc:
            log.error("stored responses not written to postgresql at shutdown: %s", exc)
        await self.pg.aclose()
        await self.redis.aclose()


def _sorted(increments: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Counters and amounts in counter order: concurrent writers lock the rows in one
    order, so two batches never deadlock."""
    counters = sorted(increments)
    return counters, [float(increments[k]) for k in counters]


def _load(raw: bytes | str) -> Record:
    record: Record = orjson.loads(raw)
    return record
