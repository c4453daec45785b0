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

Redis that lost its data (restarted without persistence) is re-seeded before it
takes another batch: every Redis apply first looks for the seed mark (and budget
reads do, every :data:`SEED_CHECK_S`). When it is gone, one replica claims the
seeding in Redis (an expiring token), reads a snapshot of PostgreSQL's totals AND
of the owners' marks, copies both over Redis's counters and marks, and sets the
seed mark; until then every other replica's Redis apply fails (the ledger retries
it). So a batch is counted once in Redis too: one in the snapshot is skipped by
its mark, one after it is applied, and one that reached a Redis restarted between
its mark check and its apply is in the snapshot (PostgreSQL had it before that
restart, the snapshot is read after it) that overwrites it. A claim lost to a
restart, or a seed finished by another replica first, writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.state.base import BackendUnavailable, SpendBatch
from gateway.state.postgres_client import Pool
from gateway.state.redis import RedisBackend

log = logging.getLogger("gateway.state.postgres")

SEED_CHECK_S = 30.0
"""How often a budget read looks for Redis's seed mark (a flush looks every time)."""
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
        """When the seed mark was last looked for by a budget read (monotonic seconds)."""

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
        if not await self._seed():
            raise BackendUnavailable("redis: its spend totals are being copied back from postgresql")
        await self._redis.apply_spend(batch)  # once per batch by Redis's own mark: a retry lands here
        return applied

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        now = time.monotonic()
        if now - self.seed_checked >= SEED_CHECK_S:
            await self._seed()
            self.seed_checked = now
        return await self._redis.read_budget(keys, owner)

    async def _seed(self) -> bool:
        """Whether Redis holds PostgreSQL's totals (its seed mark); where it does not, copy
        them in (see the module docstring): False while another replica is doing so."""
        seed = self._redis.spend.seed
        if await seed.done():
            return True
        token = uuid.uuid4().hex
        if not await seed.claim(token):
            return False
        # The snapshot after the claim: it has every batch applied to this Redis before the mark
        # (those passed the mark check on a Redis restarted since, so PostgreSQL had them first).
        try:
            totals, marks = await self._pg.run(_snapshot)
        except BackendUnavailable:
            with contextlib.suppress(BackendUnavailable):  # give the claim back (else it expires)
                await seed.release(token)
            raise
        copied = await seed.write(token, [(c, float(usd)) for c, usd in totals], [(o, int(q)) for o, q in marks])
        if copied and totals:
            log.warning("redis held no spend totals: %d counter(s) copied back from postgresql", len(totals))
        return copied


async def _snapshot(conn: Any) -> tuple[list[Any], list[Any]]:
    """Every spend total and every owner's mark, as of one moment."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetch("SELECT counter, usd FROM gw_spend_totals")
        marks = await conn.fetch("SELECT owner, seq FROM gw_spend_marks")
    return list(totals), list(marks)


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
