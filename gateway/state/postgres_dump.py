"""The PostgreSQL + Redis backend's enumeration and restore (backups: ``backup.py``), read
from and written to PostgreSQL, the system of record: tables, spend totals and the
ledger's marks, stored responses, log streams. Spend put back is copied into Redis at
once (the seeding of ``postgres_spend.py``, started by dropping Redis's seed mark), so
budgets read it. :class:`PostgresDump` is the part of
:class:`~gateway.state.postgres.PostgresBackend` that does it; never on the request path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from gateway.state.base import Record
from gateway.state.postgres_blobs import PostgresBlobs
from gateway.state.postgres_client import Pool
from gateway.state.postgres_spend import PostgresSpend
from gateway.state.redis import RedisBackend
from gateway.state.redis_spend import SEED_MARK

BLOB_PAGE = 64
"""Stored responses read per query (each can be megabytes)."""

_SET_TOTALS = """
INSERT INTO gw_spend_totals (counter, usd) SELECT * FROM unnest($1::text[], $2::float8[])
ON CONFLICT (counter) DO UPDATE SET usd = EXCLUDED.usd
"""
_SET_MARKS = """
INSERT INTO gw_spend_marks (owner, seq) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (owner) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()
"""
_LOG_ROWS = "INSERT INTO gw_logs (stream, seq, record) SELECT $1, * FROM unnest($2::bigint[], $3::jsonb[])"
_LOG_SEQ = """
INSERT INTO gw_log_seq (stream, seq) VALUES ($1, $2)
ON CONFLICT (stream) DO UPDATE SET seq = GREATEST(gw_log_seq.seq, EXCLUDED.seq)
"""
_BLOBS = "SELECT key, value, expires_at FROM gw_blobs WHERE key > $1 AND expires_at > $2 ORDER BY key LIMIT $3"


class PostgresDump:
    """The enumeration and restore methods of the PostgreSQL backend (see the module docstring)."""

    pg: Pool
    redis: RedisBackend
    spend: PostgresSpend
    blobs: PostgresBlobs

    async def tables(self) -> list[str]:
        rows = await self.pg.run(lambda c: c.fetch("SELECT DISTINCT tbl FROM gw_records ORDER BY tbl"))
        return [row[0] for row in rows]

    async def scan_items(self, table: str) -> list[tuple[str, Record]]:
        sql = "SELECT id, record::text FROM gw_records WHERE tbl=$1 ORDER BY id"
        rows = await self.pg.run(lambda c: c.fetch(sql, table))
        return [(row[0], orjson.loads(row[1])) for row in rows]

    async def spend_counters(self) -> dict[str, float]:
        rows = await self.pg.run(lambda c: c.fetch("SELECT counter, usd FROM gw_spend_totals ORDER BY counter"))
        return {row[0]: float(row[1]) for row in rows}

    async def spend_marks(self) -> dict[str, int]:
        rows = await self.pg.run(lambda c: c.fetch("SELECT owner, seq FROM gw_spend_marks ORDER BY owner"))
        return {row[0]: int(row[1]) for row in rows}

    async def restore_spend(self, totals: Mapping[str, float], marks: Mapping[str, int]) -> None:
        counters, owners = sorted(totals), sorted(marks)

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_SET_TOTALS, counters, [float(totals[c]) for c in counters])
                await conn.execute(_SET_MARKS, owners, [int(marks[o]) for o in owners])

        await self.pg.run(write)
        await self.redis._conn.call(self.redis._conn.client.delete(SEED_MARK))
        await self.spend._seed()  # Redis's totals and marks from PostgreSQL's (or another replica does it)

    async def blob_items(self) -> AsyncIterator[tuple[str, bytes, float]]:
        await self.blobs.written()
        after = ""
        while True:
            now = time.time()
            page = await self.pg.run(lambda c: c.fetch(_BLOBS, after, now, BLOB_PAGE))  # noqa: B023
            for key, value, expires_at in page:
                yield key, bytes(value), float(expires_at) - now
            if len(page) < BLOB_PAGE:
                return
            after = page[-1][0]

    async def log_streams(self) -> list[str]:
        rows = await self.pg.run(lambda c: c.fetch("SELECT DISTINCT stream FROM gw_logs ORDER BY stream"))
        return [row[0] for row in rows]

    async def restore_log(self, stream: str, records: Sequence[Record]) -> bool:
        if not records:
            return True
        seqs = [int(r["seq"]) for r in records]
        bodies = [orjson.dumps({k: v for k, v in r.items() if k != "seq"}).decode() for r in records]

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_LOG_ROWS, stream, seqs, bodies)
                await conn.execute(_LOG_SEQ, stream, max(seqs))

        await self.pg.run(write)
        return True
