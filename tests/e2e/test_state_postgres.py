"""The PostgreSQL + Redis state backend against a real PostgreSQL (Debian's package)
and real redis-server processes: the shared contract, two replicas sharing records
through Redis's copies, the schema's migrations, PostgreSQL down (cached reads keep
working, writes fail fast), Redis losing its data (spend totals re-seeded, stored
responses read from PostgreSQL), and the append-only audit log."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.config.state import StateSettings
from gateway.state.base import BackendUnavailable, SpendBatch
from gateway.state.factory import create_report_reader
from gateway.state.postgres import PostgresBackend
from gateway.state.postgres_client import Pool
from gateway.state.postgres_records import copy_key
from gateway.state.postgres_schema import MIGRATIONS, SchemaTooNew, version_of
from gateway.state.redis import RedisBackend
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

pytest.register_assert_rewrite("tests.state_contract")
from tests import state_contract as contract  # noqa: E402

FAST = 5.0  # seconds: a call while PostgreSQL is down fails within its connect timeout, never hangs
_databases = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def db_url(pg: PostgresServer) -> str:
    """A fresh database of the module's server, for one test."""
    name = f"t{next(_databases)}_{int(time.time() * 1000) % 10**8}"
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return pg.url.rsplit("/", 1)[0] + "/" + name


def make(db_url: str, redis_url: str, **pool: float) -> PostgresBackend:
    return PostgresBackend(Pool(db_url, **pool), RedisBackend(redis_url, socket_timeout_s=3.0))  # type: ignore[arg-type]


@pytest.fixture
async def backend(db_url: str, redis_server: RedisServer) -> AsyncIterator[PostgresBackend]:
    b = make(db_url, redis_server.url)
    yield b
    await b.aclose()


async def test_contract(backend: PostgresBackend) -> None:
    await contract.check_all(backend)


async def test_every_kind_of_record_lands_in_postgres(backend: PostgresBackend, db_url: str) -> None:
    await backend.put("keys", "h1", {"id": "k1", "name": "ci"})
    await backend.apply_spend(SpendBatch("owner-1", 1, {"team:t": 0.5}))
    await backend.append_log("audit", {"action": "key.create"})
    await backend.blob_put("resp:1", b"stored", 3600)
    await backend.blobs_written()
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT record->>'name' FROM gw_records WHERE tbl='keys' AND id='h1'") == "ci"
        assert await conn.fetchval("SELECT usd FROM gw_spend_totals WHERE counter='team:t'") == 0.5
        batch = await conn.fetchrow("SELECT seq, increments::text FROM gw_spend_batches WHERE owner='owner-1'")
        assert batch is not None
        assert (batch["seq"], batch["increments"]) == (1, '{"team:t": 0.5}')
        assert await conn.fetchval("SELECT record->>'action' FROM gw_logs WHERE stream='audit'") == "key.create"
        assert await conn.fetchval("SELECT value FROM gw_blobs WHERE key='resp:1'") == b"stored"
        assert await version_of(conn) == len(MIGRATIONS)
    finally:
        await conn.close()


async def test_the_audit_log_is_append_only_in_the_database(backend: PostgresBackend, db_url: str) -> None:
    await backend.append_log("audit", {"action": "key.revoke"})
    await backend.apply_spend(SpendBatch("o", 1, {"team:t": 1.0}))
    conn = await asyncpg.connect(db_url)
    try:
        for statement in ("UPDATE gw_logs SET record = '{}'::jsonb", "DELETE FROM gw_logs"):
            with pytest.raises(asyncpg.RaiseError, match="gw_logs is append-only"):
                await conn.execute(statement)
        with pytest.raises(asyncpg.RaiseError, match="gw_spend_batches is append-only"):
            await conn.execute("UPDATE gw_spend_batches SET seq = 0")
    finally:
        await conn.close()
    assert [r["action"] for r in await backend.read_log("audit", 10)] == ["key.revoke"]


async def test_replicas_share_records_through_the_copies(db_url: str, redis_server: RedisServer) -> None:
    a, b = make(db_url, redis_server.url), make(db_url, redis_server.url)
    try:
        assert await b.get("keys", "h") is None  # remembered as absent (a tombstone copy)
        await a.put("keys", "h", {"v": 1})
        assert await b.get("keys", "h") == {"v": 1}, "a write replaces the copy, tombstone included"
        await a.put("keys", "h", {"v": 2})
        assert await b.get("keys", "h") == {"v": 2}
        assert await b.delete("keys", "h") is True
        assert await a.get("keys", "h") is None, "a revoked record is gone for every replica at once"
        await a.apply_spend(SpendBatch("a", 1, {"team:t": 1.0}))
        await b.apply_spend(SpendBatch("b", 1, {"team:t": 0.25}))
        assert (await a.read_budget(["team:t"], "a"))[0] == {"team:t": 1.25}
        assert await b.read_spend(["team:t"]) == {"team:t": 1.25}
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_stale_reader_cannot_put_a_deleted_record_back(backend: PostgresBackend) -> None:
    """The copy a miss fills is written only where none is (SET NX): a reader that read
    the row before a delete finds the delete's tombstone and leaves it."""
    await backend.put("keys", "h", {"v": 1})
    await backend.delete("keys", "h")
    assert await backend.redis.blob_put_new("rec:keys:h", b'{"v":1}', 60) is False
    assert await backend.get("keys", "h") is None


async def test_postgres_down_cached_reads_work_writes_fail_fast(
    pg: PostgresServer, db_url: str, redis_server: RedisServer
) -> None:
    b = make(db_url, redis_server.url, connect_timeout_s=0.5, statement_timeout_s=1.0)
    try:
        await b.put("keys", "h", {"team": "t"})
        await b.get("keys", "h")
        pg.kill()
        try:
            assert await b.get("keys", "h") == {"team": "t"}, "served from Redis's copy"
            for write in (
                lambda: b.put("keys", "h2", {}),
                lambda: b.append_log("audit", {"a": 1}),
                lambda: b.apply_spend(SpendBatch("o", 1, {"team:t": 1.0})),
            ):
                start = time.monotonic()
                with pytest.raises(BackendUnavailable, match="postgresql"):
                    await write()
                assert time.monotonic() - start < FAST
            assert b.pg.up is False and b.pg.failures >= 3
            assert await b.hit_windows([]) is not None, "the hot path (Redis) is untouched"
        finally:
            pg.start()
        # the pool reconnects by itself; the batch the ledger retries lands once
        assert await b.apply_spend(SpendBatch("o", 1, {"team:t": 1.0})) is True
        assert await b.apply_spend(SpendBatch("o", 1, {"team:t": 1.0})) is False
        assert await b.read_spend(["team:t"]) == {"team:t": 1.0}
        assert b.pg.up is True
    finally:
        await b.aclose()


async def test_redis_losing_its_data_loses_no_spend_or_stored_response(
    backend: PostgresBackend, redis_server: RedisServer
) -> None:
    await backend.apply_spend(SpendBatch("o", 1, {"team:t": 2.5, "key:k": 2.5}))
    assert (await backend.read_budget(["team:t"], "o"))[0] == {"team:t": 2.5}
    await backend.put("keys", "h", {"v": 1})
    await backend.blob_put("resp:x", b"turn one", 3600)
    await backend.blob_put("resp:y", b"turn two", 3600)
    await backend.blobs_written()
    redis_server.restart()  # no persistence: everything Redis held is gone
    backend.spend.seed_checked = float("-inf")  # as SEED_CHECK_S later
    assert (await backend.read_budget(["team:t", "key:k"], "o"))[0] == {"team:t": 2.5, "key:k": 2.5}
    assert await backend.get("keys", "h") == {"v": 1}
    assert await backend.blob_get("resp:x") == b"turn one"
    await backend.blob_put("resp:z", b"turn three", 3600)  # Redis holds this one again
    await backend.blobs_written()
    many = await backend.blob_get_many(["resp:x", "resp:z", "resp:none", "resp:y"])
    assert many == [b"turn one", b"turn three", None, b"turn two"], "from Redis where it has them, else PostgreSQL"
    await backend.apply_spend(SpendBatch("o", 2, {"team:t": 0.5}))
    assert (await backend.read_budget(["team:t"], "o"))[0] == {"team:t": 3.0}
    assert await backend.read_spend(["team:t"]) == {"team:t": 3.0}


async def test_replicas_starting_together_migrate_once(db_url: str, redis_server: RedisServer) -> None:
    pools = [Pool(db_url) for _ in range(4)]
    try:
        await asyncio.gather(*(p.run(lambda c: c.fetchval("SELECT 1")) for p in pools))
        versions = await pools[0].run(lambda c: c.fetch("SELECT version FROM gw_schema"))
        assert [r[0] for r in versions] == [len(MIGRATIONS)]
    finally:
        for p in pools:
            await p.aclose()


async def test_a_database_of_a_newer_release_is_refused(db_url: str) -> None:
    pool = Pool(db_url)
    try:
        await pool.run(lambda c: c.execute("SELECT 1"))
        await pool.run(lambda c: c.execute("UPDATE gw_schema SET version = 99"))
    finally:
        await pool.aclose()
    fresh = Pool(db_url)
    try:
        with pytest.raises(SchemaTooNew, match=f"version 99, but this gateway knows versions up to {len(MIGRATIONS)}"):
            await fresh.run(lambda c: c.fetchval("SELECT 1"))
    finally:
        await fresh.aclose()


async def test_a_saturated_pool_fails_the_call_and_counts_it(db_url: str, redis_server: RedisServer) -> None:
    b = make(db_url, redis_server.url, max_connections=1, acquire_timeout_s=0.2)
    try:
        await b.scan("keys")
        slow = asyncio.create_task(b.pg.run(lambda c: c.execute("SELECT pg_sleep(1)")))
        await asyncio.sleep(0.1)
        assert b.pg.in_use() == 1
        with pytest.raises(BackendUnavailable, match="every one of the pool's 1 connections is busy"):
            await b.scan("keys")
        assert b.pg.saturated == 1
        await slow
    finally:
        await b.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_read_replica_serves_reports_and_its_lag_is_measured(
    pg: PostgresServer, db_url: str, redis_server: RedisServer
) -> None:
    """``state.postgres.read_url``: a streaming hot standby (pg_basebackup) of the test server.
    ``gateway report`` reads it (create_report_reader); the backend measures its lag (0 once
    it has replayed what it received) and says when it cannot reach it."""
    replica_server = PostgresServer(replica_of=pg)
    replica_server.start()
    replica_url = db_url.replace(f":{pg.port}/", f":{replica_server.port}/")
    b = PostgresBackend(Pool(db_url), RedisBackend(redis_server.url), replica=Pool(replica_url, migrate_schema=False))
    settings = StateSettings.model_validate(
        {"backend": "postgres", "url": redis_server.url, "postgres": {"url": db_url, "read_url": replica_url}}
    )
    reader = create_report_reader(settings)
    try:
        await b.put("teams", "t1", {"id": "t1"})
        await b.apply_spend(SpendBatch("o", 1, {"spend:team:t1": 1.5}))
        assert isinstance(reader, PostgresBackend)
        assert await reader.pg.run(lambda c: c.fetchval("SELECT pg_is_in_recovery()")) is True, "reads the replica"

        async def replayed() -> bool:
            try:
                spend = await reader.read_spend(["spend:team:t1"])
                return spend == {"spend:team:t1": 1.5} and await reader.scan("teams") == [{"id": "t1"}]
            except BackendUnavailable:  # the replica has not replayed the tables' creation yet
                return False

        assert await eventually(replayed), "the replica has the primary's records and spend"
        assert await b.replica.replica_lag() == 0.0 if b.replica else False
        facts = b.facts()
        assert (facts.replica_up, facts.replica_lag_s) == (True, 0.0)
        with pytest.raises(BackendUnavailable):  # a hot standby takes no writes
            await reader.pg.run(lambda c: c.execute("INSERT INTO gw_spend_totals VALUES ('x', 1)"))
        replica_server.kill()
        assert b.replica is not None and await b.replica.replica_lag() is None
        assert b.facts().replica_up is False
    finally:
        await reader.aclose()
        await b.aclose()
        replica_server.stop()


def test_a_newer_database_stops_the_gateway_and_the_report_command(db_url: str, tmp_path: Path) -> None:
    async def stamp() -> None:
        pool = Pool(db_url)
        try:
            await pool.run(lambda c: c.execute("UPDATE gw_schema SET version = 99"))
        finally:
            await pool.aclose()

    asyncio.run(stamp())
    with RedisServer() as redis:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            f"state: {{backend: postgres, url: '{redis.url}', path: '{tmp_path / 'state.db'}',"
            f" postgres: {{url: '{db_url}'}}}}\nmodels: {{}}\n"
        )
        env = {**os.environ, "GATEWAY_MASTER_KEY": "sk-test-master-key-0123456789"}
        for argv in (["report", "daily"], ["serve", "--port", "0"]):
            done = subprocess.run(
                [sys.executable, "-m", "gateway", *argv, "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
            assert done.returncode != 0, argv
            assert "schema version 99, but this gateway knows versions up to" in done.stderr, done.stderr[-2000:]


async def test_a_write_with_redis_down_fails_before_postgres_changes(
    backend: PostgresBackend, redis_server: RedisServer
) -> None:
    await backend.put("keys", "h", {"v": 1})
    redis_server.kill()
    try:
        with pytest.raises(BackendUnavailable, match="redis"):
            await backend.put("keys", "h", {"v": 2})
        with pytest.raises(BackendUnavailable, match="redis"):
            await backend.delete("keys", "h")
        assert await backend.scan("keys") == [{"v": 1}], "PostgreSQL unchanged: the admin may simply repeat it"
    finally:
        redis_server.start()


async def test_a_copy_redis_could_not_replace_is_repaired_when_it_is_back(db_url: str, tmp_path: Path) -> None:
    """Redis fails between the PostgreSQL write and the new copy: the write stands, and the copy a
    reader filled meanwhile (here: the old one, kept by Redis's append-only file) is deleted once
    Redis answers, so the next read is PostgreSQL's."""
    with RedisServer(persist=True) as redis:
        b = make(db_url, redis.url)
        try:
            await b.put("keys", "h", {"v": 1})
            assert await b.get("keys", "h") == {"v": 1}
            await asyncio.sleep(1.2)  # the append-only file has the copy (fsync every second)
            redis.kill()
            await b.pg.run(lambda c: c.execute("UPDATE gw_records SET record = '{\"v\": 2}' WHERE id = 'h'"))
            await b.copies.after_write(copy_key("keys", "h"), b'{"v": 2}')  # the last step of a write, Redis down
            assert b.copies.repairs == {copy_key("keys", "h")}
            redis.start()
            assert await eventually(lambda: _repaired(b), timeout_s=10)
            assert await b.get("keys", "h") == {"v": 2}
        finally:
            await b.aclose()


async def _repaired(b: PostgresBackend) -> bool:
    return not b.copies.repairs
