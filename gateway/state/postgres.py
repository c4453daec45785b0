"""The production state shape: PostgreSQL for everything that must last, Redis for
what is hot and shared.

PostgreSQL (``postgres_client.py``, schema in ``postgres_schema.py``) is the system
of record: records (keys, teams, users, sessions, runtime models, sealed secrets),
the spend ledger (one row per batch, never twice) and its totals, stored
responses, and the append-only logs (the audit log; a trigger refuses updates and
deletes). Redis (a :class:`~gateway.state.redis.RedisBackend`) keeps what the
request path touches: rate-limit windows, concurrency slots, the response cache,
budget reservations, and copies:

- **records** are read through Redis copies (``postgres_records.py``: filled with SET NX
  on a miss, absent records as tombstones; a write deletes the copy, writes PostgreSQL,
  then puts the new copy, and repairs it later if Redis failed at that step). While
  PostgreSQL is down, reads of copied records keep working and writes fail with
  :class:`BackendUnavailable` (the admin API's 503 ``state_backend_unavailable``).
- **spend**: each ledger batch is applied to PostgreSQL (the batch row, the
  owner's mark and the totals, one transaction), then to Redis (its own
  once-per-batch script), whose totals are the maintained aggregate budgets read
  with the reservations in one round trip: a budget check never waits for
  PostgreSQL. A batch that reached PostgreSQL but not Redis is retried by the ledger
  (PostgreSQL skips it, Redis applies it). A Redis that lost its data is re-seeded
  from a snapshot of PostgreSQL's totals and marks before it takes another batch
  (``postgres_spend.py``).
- **stored responses** (blobs): written to Redis at once (the next turn may come
  at once, to any replica) and to PostgreSQL behind, in batches; read from Redis,
  then PostgreSQL.

Reports read spend totals from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from limits.aio.storage import Storage

from gateway.state.base import BackendUnavailable, Record, SlotSpec, SpendBatch, WindowAdjust, WindowHit, WindowSpec
from gateway.state.periodic import Periodic
from gateway.state.postgres_blobs import PostgresBlobMethods, PostgresBlobs
from gateway.state.postgres_client import Pool, PoolFacts
from gateway.state.postgres_dump import PostgresDump
from gateway.state.postgres_records import TOMBSTONE, RecordCopies, copy_key
from gateway.state.postgres_spend import PostgresSpend
from gateway.state.redis import RedisBackend

log = logging.getLogger("gateway.state.postgres")

PROBE_INTERVAL_S = 5.0
"""How often :meth:`PostgresBackend.watch` probes PostgreSQL."""

_GET = "SELECT record::text FROM gw_records WHERE tbl=$1 AND id=$2"
_DELETE = "DELETE FROM gw_records WHERE tbl=$1 AND id=$2 RETURNING 1"
_PUT = """
INSERT INTO gw_records (tbl, id, record) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (tbl, id) DO UPDATE SET record = EXCLUDED.record, updated_at = now()
"""
_LOG_ROW = "INSERT INTO gw_logs (stream, seq, record) VALUES ($1, $2, $3::jsonb)"
_LOG_SEQ = """
INSERT INTO gw_log_seq (stream, seq) VALUES ($1, 1)
ON CONFLICT (stream) DO UPDATE SET seq = gw_log_seq.seq + 1 RETURNING seq
"""


class PostgresBackend(PostgresDump, PostgresBlobMethods):
    """PostgreSQL + Redis; see the module docstring (backups: :class:`PostgresDump`)."""

    kind = "postgres"

    def __init__(
        self, pool: Pool, redis: RedisBackend, *, mirror_ttl_s: float = 3600.0, replica: Pool | None = None
    ) -> None:
        """``replica``: a read replica (``state.postgres.read_url``), watched for its lag."""
        self.pg = pool
        self.redis = redis
        self.replica = replica
        self.copies = RecordCopies(redis, mirror_ttl_s)
        self.spend = PostgresSpend(pool, redis)
        self.blobs = PostgresBlobs(pool, redis)
        self._probe = Periodic("postgres-probe", PROBE_INTERVAL_S, self._check, "postgresql probe")

    def watch(self) -> None:
        """Measure a read replica's lag every :data:`PROBE_INTERVAL_S` until :meth:`aclose` (the
        primary needs no probe: the app's state probe pings this backend as often)."""
        if self.replica is not None:
            self._probe.start()

    async def _check(self) -> None:
        if self.replica is not None:
            await self.replica.replica_lag()

    def facts(self) -> PoolFacts:
        facts = self.pg.facts()
        if self.replica is None:
            return facts
        return facts._replace(replica_up=self.replica.lag_s is not None, replica_lag_s=self.replica.lag_s)

    # --- records -------------------------------------------------------------------
    async def get(self, table: str, id: str) -> Record | None:
        key = copy_key(table, id)
        copy = await self.copies.read(key)
        if copy is not None:
            return None if copy == TOMBSTONE else _load(copy)
        raw = await self.pg.run(lambda c: c.fetchval(_GET, table, id))
        await self.copies.fill(key, TOMBSTONE if raw is None else raw.encode())
        return None if raw is None else _load(raw)

    async def put(self, table: str, id: str, record: Record) -> None:
        key, text = copy_key(table, id), orjson.dumps(record)
        await self.copies.before_write(key)
        await self.pg.run(lambda c: c.execute(_PUT, table, id, text.decode()))
        await self.copies.after_write(key, text)

    async def delete(self, table: str, id: str) -> bool:
        key = copy_key(table, id)
        await self.copies.before_write(key)
        existed = await self.pg.run(lambda c: c.fetchval(_DELETE, table, id))
        await self.copies.after_write(key, TOMBSTONE)
        return existed is not None

    async def scan(self, table: str) -> list[Record]:
        sql = "SELECT record::text FROM gw_records WHERE tbl=$1 ORDER BY id"
        rows = await self.pg.run(lambda c: c.fetch(sql, table))
        return [_load(row[0]) for row in rows]

    # --- spend: postgres_spend.py ---------------------------------------------------------
    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        await self.spend.incr(increments)

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        return await self.spend.read(keys)

    async def apply_spend(self, batch: SpendBatch) -> bool:
        return await self.spend.apply(batch)

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        return await self.spend.read_budget(keys, owner)

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
        await self._probe.stop()
        await self.copies.aclose()
        try:
            await asyncio.wait_for(self.blobs.written(), 10)
        except (TimeoutError, BackendUnavailable) as exc:
            log.error("stored responses not written to postgresql at shutdown: %s", exc)
        await self.pg.aclose()
        if self.replica is not None:
            await self.replica.aclose()
        await self.redis.aclose()


def _load(raw: bytes | str) -> Record:
    record: Record = orjson.loads(raw)
    return record
