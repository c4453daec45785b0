"""Spend on the PostgreSQL + Redis backend (``postgres.py``): the ledger's batches
applied to PostgreSQL (the system of record: one row per batch, the owner's mark,
the totals) and then to Redis, whose totals are the aggregate budgets read.

A batch is applied to PostgreSQL in one transaction: the owner's mark moves only
forward (an older or equal ``seq`` is skipped, as on the other backends), the batch
row is written, and the totals are added in counter order (so two writers never
deadlock). Then Redis applies it by its own mark (``redis_spend.py``), with the
batch's reservations: a batch that reached PostgreSQL but not Redis raises, the
ledger retries it, PostgreSQL skips it and Redis applies it. Budgets read Redis
(totals and the other replicas' reservations in one round trip), never PostgreSQL;
reports read PostgreSQL.

Redis that lost its data (restarted without persistence) is re-seeded: every
:data:`SEED_CHECK_S` a budget read looks for the seed mark, and when it is gone,
PostgreSQL's totals are copied into the counters Redis does not hold. A batch
applied by another replica while that copy is made may be missing from (or,
written just before it, counted twice in) Redis's copy of its counters; PostgreSQL's
totals stay exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.state.base import SpendBatch
from gateway.state.postgres_client import Pool
from gateway.state.redis import RedisBackend

log = logging.getLogger("gateway.state.postgres")

SEED_CHECK_S = 30.0
"""How often a budget read looks for Redis's seed mark (a lost Redis is re-seeded)."""
SEED_MARK = "spend-seeded"
"""The blob key whose presence says Redis holds the totals."""

_MARK = """
INSERT INTO gw_spend_marks (owner, seq) VALUES ($1, $2)
ON CONFLICT (owner) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now() WHERE gw_spend_marks.seq < EXCLUDED.seq
RETURNING seq
"""
_TOTALS = """
INSERT INTO gw_spend_totals (counter, usd) SELECT * FROM unnest($1::text[], $2::float8[])
ON CONFLICT (counter) DO UPDATE SET usd = gw_spend_totals.usd + EXCLUDED.usd
"""
_BATCH = "INSERT INTO gw_spend_batches (owner, seq, increments) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING"


class PostgresSpend:
    """The backend's ``incr_spend``, ``read_spend``, ``apply_spend`` and ``read_budget``."""

    def __init__(self, pool: Pool, redis: RedisBackend) -> None:
        self._pg = pool
        self._redis = redis
        self.seed_checked = float("-inf")
        """When the seed mark was last looked for (monotonic seconds)."""

    async def incr(self, increments: Mapping[str, float]) -> None:
        if not increments:
            return
        counters, amounts = _sorted(increments)
        await self._pg.run(lambda c: c.execute(_TOTALS, counters, amounts))
        await self._redis.incr_spend(increments)

    async def read(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        sql = "SELECT counter, usd FROM gw_spend_totals WHERE counter = ANY($1::text[])"
        rows = await self._pg.run(lambda c: c.fetch(sql, list(keys)))
        found = {row[0]: float(row[1]) for row in rows}
        return {k: found.get(k, 0.0) for k in keys}

    async def apply(self, batch: SpendBatch) -> bool:
        applied = False
        if batch.increments:
            applied = await self._pg.run(lambda c: _apply(c, batch))
        await self._redis.apply_spend(batch)  # once per batch by Redis's own mark: a retry lands here
        return applied

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        now = time.monotonic()
        if now - self.seed_checked >= SEED_CHECK_S:
            await self._seed()
            self.seed_checked = now
        return await self._redis.read_budget(keys, owner)

    async def _seed(self) -> None:
        """Copy PostgreSQL's totals into a Redis that lost them (no seed mark)."""
        if await self._redis.blob_get(SEED_MARK) is not None:
            return
        rows = await self._pg.run(lambda c: c.fetch("SELECT counter, usd FROM gw_spend_totals"))
        restored = await self._redis.spend.seed({row[0]: float(row[1]) for row in rows})
        await self._redis.blob_put(SEED_MARK, b"1", 10 * 365 * 24 * 3600.0)
        if restored:
            log.warning("redis held no spend totals: %d counter(s) copied back from postgresql", restored)


async def _apply(conn: Any, batch: SpendBatch) -> bool:
    async with conn.transaction():
        if await conn.fetchval(_MARK, batch.owner, batch.seq) is None:
            return False  # this batch, or a later one of the owner, was applied already
        counters, amounts = _sorted(batch.increments)
        increments = orjson.dumps(dict(zip(counters, amounts, strict=True))).decode()
        await conn.execute(_BATCH, batch.owner, batch.seq, increments)
        await conn.execute(_TOTALS, counters, amounts)
        return True


def _sorted(increments: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Counters and amounts in counter order: concurrent writers lock the rows in one
    order, so two batches never deadlock."""
    counters = sorted(increments)
    return counters, [float(increments[k]) for k in counters]
