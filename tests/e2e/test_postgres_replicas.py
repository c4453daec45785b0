"""Two gateway replicas on one PostgreSQL and one Redis (``state.backend: postgres``),
real processes on loopback: the replica properties of test_replicas.py (a global rate
limit, a shared cache, a team budget and a revocation seen by every replica); spend
exact to a nano-dollar in PostgreSQL after a kill -9 under load of a replica (its
spend journal replayed), of Redis (no persistence: restarted empty) and of PostgreSQL;
and, while PostgreSQL is down, admin writes refused with 503 while keys a replica has
seen keep working. Bounded in requests and time; the figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, sent_when_refused, wait_until
from tests.e2e.test_replicas import call, unique
from tests.e2e.test_spend_exact import MODEL, NANO, Load, config, metric
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

GLOBAL = "spend:global:all:____-__-__"  # every day's global spend counter
_databases = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def new_database(pg: PostgresServer) -> str:
    """The URL of a fresh database of ``pg`` (each test counts its own spend)."""
    name = f"replicas{next(_databases)}_{os.getpid()}"

    async def create() -> None:
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    return pg.url.rsplit("/", 1)[0] + "/" + name


def pg_state(redis_url: str, db_url: str, workdir: Path) -> str:
    """The ``state`` section: PostgreSQL + Redis, the spend journal in ``workdir``; quick
    flushes and refreshes, and PostgreSQL calls that fail fast while it is down."""
    return (
        f"state: {{backend: postgres, url: '{redis_url}', path: '{workdir / 'state.db'}',"
        " flush_interval_s: 0.2, refresh_interval_s: 0.2,"
        f" postgres: {{url: '{db_url}', connect_timeout_s: 0.5, statement_timeout_s: 2}}}}\n"
    )


def pg_spend(db_url: str, pattern: str = GLOBAL) -> Decimal:
    """The sum of PostgreSQL's spend totals whose counter is LIKE ``pattern``."""

    async def read() -> Decimal:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT usd FROM gw_spend_totals WHERE counter LIKE $1", pattern)
        finally:
            await conn.close()
        return sum((Decimal(repr(row[0])) for row in rows), Decimal(0))

    return asyncio.run(read())


class SpendTotalsLocked:
    """PostgreSQL's spend totals locked against writes (``SHARE``: reads go on) while the
    block runs: every replica's flush waits (or times out and is retried) until it ends."""

    def __init__(self, db_url: str) -> None:
        self._url = db_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncpg.Connection | None = None

    def __enter__(self) -> SpendTotalsLocked:
        async def lock() -> asyncpg.Connection:
            conn = await asyncpg.connect(self._url)
            try:
                await conn.execute("BEGIN; LOCK TABLE gw_spend_totals IN SHARE MODE")
            except BaseException:
                conn.terminate()
                raise
            return conn

        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._loop.run_until_complete(lock())
        except BaseException:
            self._loop.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._conn is not None
        try:
            self._loop.run_until_complete(self._conn.execute("ROLLBACK"))
        finally:
            try:
                self._loop.run_until_complete(self._conn.close(timeout=5))
            finally:
                self._loop.close()


def start_pair(text_of: dict[str, str], tmp_path: Path) -> tuple[GatewayProcess, GatewayProcess]:
    """Replicas ``a`` and ``b``, each in its own workdir under ``tmp_path``."""
    started: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir(exist_ok=True)
            started.append(GatewayProcess(text_of[name], tmp_path / name))
    except BaseException:
        for gw in started:
            gw.stop()
        raise
    return started[0], started[1]


def spend_texts(mock: Mock, redis_url: str, db_url: str, tmp_path: Path) -> dict[str, str]:
    return {name: config(mock.url, pg_state(redis_url, db_url, tmp_path / name)) for name in ("a", "b")}


def redis_total(server: RedisServer, prefix: str) -> Decimal:
    """The sum of Redis's daily spend counters ``<prefix>YYYY-MM-DD``."""
    client = redis.Redis(port=server.port)
    try:
        keys = [k for k in client.scan_iter(match=f"gw:spend:{{s}}:{prefix}*") if len(k.rsplit(b":", 1)[1]) == 10]
        values = client.mget(keys) if keys else []
        return sum((Decimal(v.decode() if isinstance(v, bytes) else v) for v in values if v is not None), Decimal(0))
    finally:
        client.close()


def same_cost(*loads: Load) -> Decimal:
    """The one cost every answer had (one body, one price)."""
    costs = {Decimal(cost) for load in loads for status, cost in load.results if status == 200 and cost}
    assert len(costs) == 1, costs
    return costs.pop()


# --- two replicas: what test_replicas.py shows on Redis holds on PostgreSQL + Redis ---------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    mock: Mock, pg: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    db_url = new_database(pg)
    tmp = tmp_path_factory.mktemp("pg-replicas")
    texts = {name: pg_state(redis_server.url, db_url, tmp / name) + e2e_config(mock.url) for name in ("a", "b")}
    a, b = start_pair(texts, tmp)
    yield a, b
    a.stop()
    b.stop()


def test_rpm_limit_is_global(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    key = a.http.post("/admin/keys", json={"name": unique("rpm"), "rpm": 30}).json()["key"]
    statuses = [call(a if i % 2 else b, key).status_code for i in range(50)]
    admitted = statuses.count(200)
    assert 29 <= admitted <= 31, f"two replicas sharing a 30 RPM key admitted {admitted}"
    assert statuses.count(429) == 50 - admitted


def test_cache_is_shared(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("shared")}], "temperature": 0}
    key = a.http.post("/admin/keys", json={"name": unique("cache")}).json()["key"]
    miss = call(a, key, body)
    assert miss.headers["x-gateway-cache"] == "miss"
    assert a.finished(miss)  # the answer is stored in the cache after it is sent
    assert call(b, key, body).headers["x-gateway-cache"] == "hit"
    assert mock.calls("mock-gpt") == 1


def test_team_budget_is_refused_on_every_replica(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    team = unique("team")
    assert a.http.post("/admin/teams", json={"id": team, "budget_daily_usd": 0.000001}).status_code == 201
    key = b.http.post("/admin/keys", json={"name": unique("k"), "team": team}).json()["key"]
    assert call(a, key).status_code == 200
    for replica in (a, b):
        assert wait_until(lambda r=replica: call(r, key).status_code == 429, timeout=3)
        assert call(replica, key).json()["error"]["code"] == "insufficient_quota"


def test_a_revoked_key_is_refused_on_every_replica_within_a_second(
    replicas: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = replicas
    created = a.http.post("/admin/keys", json={"name": unique("rev")}).json()
    assert call(b, created["key"]).status_code == 200  # cached on b: in its key cache and Redis's copy
    assert a.http.delete(f"/admin/keys/{created['id']}").status_code == 200
    revoked_at = time.monotonic()
    refused_at = sent_when_refused(lambda: call(b, created["key"]).status_code)
    assert refused_at is not None and refused_at - revoked_at < 1.0 + 0.5  # refresh 0.2 s here; by default 1 s
    assert call(a, created["key"]).status_code == 401


def test_postgres_down_admin_writes_refused_seen_keys_served(
    replicas: tuple[GatewayProcess, GatewayProcess], pg: PostgresServer
) -> None:
    a, b = replicas
    team = unique("team")
    assert a.http.post("/admin/teams", json={"id": team}).status_code == 201
    key = a.http.post("/admin/keys", json={"name": unique("seen"), "team": team}).json()["key"]
    assert call(a, key).status_code == 200 and call(b, key).status_code == 200  # seen by both
    pg.kill()
    try:
        for replica in (a, b):
            refused = replica.http.post("/admin/keys", json={"name": unique("while-down")})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "state_backend_unavailable"
        time.sleep(0.5)  # past the key cache's 0.2 s: the record is read again (from Redis's copy)
        statuses = [call(a if i % 2 else b, key).status_code for i in range(20)]
        assert statuses == [200] * 20, statuses
    finally:
        pg.start()
    # the pools reconnect by themselves
    assert wait_until(lambda: a.http.post("/admin/keys", json={"name": unique("after")}).status_code == 201, 10)


# --- kill -9 under load: every answered cost is in PostgreSQL, to a nano-dollar ----------------------------


def test_kill_9_of_a_replica_under_load_loses_no_answered_spend(mock: Mock, pg: PostgresServer, tmp_path: Path) -> None:
    """Replica a killed under load (b serving too), restarted on its workdir: its spend journal
    brings PostgreSQL (and Redis) to every answered cost, plus whole requests charged as it died."""
    mock.behave(MODEL, latency_ms=5)
    db_url = new_database(pg)
    with RedisServer() as redis_server:
        texts = spend_texts(mock, redis_server.url, db_url, tmp_path)
        a, b = start_pair(texts, tmp_path)
        journal = tmp_path / "a" / "state.db.spend-journal"
        load_a, load_b = Load(a.url, concurrency=8, limit=600).start(), Load(b.url, concurrency=8, limit=600).start()
        try:
            load_a.wait_for(200)
            # PostgreSQL's totals held (a flush waits on the lock): what a answers from now on is in
            # its journal only, so the kill surely leaves answered spend that PostgreSQL lacks
            with SpendTotalsLocked(db_url):
                answered_before = load_a.count(200)
                load_a.wait_for(len(load_a.results) + 50)
                assert load_a.count(200) >= answered_before + 40
                os.kill(a.proc.pid, signal.SIGKILL)
                a.proc.wait(timeout=10)
        finally:
            load_a.stop()
            load_b.stop()
            a.stop()
            b.stop()  # graceful: its last flush
        left = [p for p in journal.iterdir() if p.name.endswith(".spend")]
        unflushed = pg_spend(db_url)
        again = GatewayProcess(texts["a"], tmp_path / "a")  # the same workdir: the journal is replayed
        try:
            replayed = metric(again, "gateway_spend_journal_replayed_batches_total")
        finally:
            again.stop()
        recorded, answered = pg_spend(db_url), load_a.answered() + load_b.answered()
        in_redis = redis_total(redis_server, "spend:global:all:")
    cost, cut_off = same_cost(load_a, load_b), load_a.count(0) + load_b.count(0)
    print(
        f"\nkill -9 of a replica (postgres): {load_a.count(200)} + {load_b.count(200)} answered (200), {cut_off} cut "
        f"off; answered {answered} USD, in PostgreSQL at the kill {unflushed} USD, after the restart {recorded} USD "
        f"({int(replayed)} journal batch(es) replayed, {len(left)} segment(s) left); recorded - answered = "
        f"{recorded - answered} USD; Redis {in_redis} USD"
    )
    assert load_a.count(200) >= 200 and load_b.count(200) >= 100
    assert left and replayed >= 1 and unflushed < answered, "some answered spend was only in a's journal"
    assert recorded - answered > -NANO, "no answered cent is lost (to a nano-dollar)"
    # above what was answered: requests charged in the instant of the kill whose answer never left
    extra = (recorded - answered) / cost
    assert abs(extra - round(extra)) < Decimal("1e-6") and 0 <= round(extra) <= cut_off
    assert abs(in_redis - recorded) < NANO, "Redis's totals (the budgets) got the replayed batches too"
    assert not any(p.name.endswith(".spend") for p in journal.iterdir()), "applied and deleted"


def test_kill_9_of_redis_under_load_loses_no_answered_spend(mock: Mock, pg: PostgresServer, tmp_path: Path) -> None:
    """Redis without persistence, killed and restarted empty: PostgreSQL has every answered
    cost, and Redis's totals (what budgets read) are PostgreSQL's again once it is back."""
    mock.behave(MODEL, latency_ms=5)
    db_url = new_database(pg)
    team = unique("team")
    with RedisServer(persist=False) as redis_server:
        a, b = start_pair(spend_texts(mock, redis_server.url, db_url, tmp_path), tmp_path)
        try:
            assert a.http.post("/admin/teams", json={"id": team, "budget_daily_usd": 1000}).status_code == 201
            key = a.http.post("/admin/keys", json={"name": unique("k"), "team": team}).json()["key"]
            load_a = Load(a.url, key=key, concurrency=8, limit=100_000)
            load_b = Load(b.url, key=key, concurrency=8, limit=100_000)
            try:
                load_a.start()
                load_b.start()
                load_a.wait_for(100)
                redis_server.kill()
                killed_at = len(load_a.results) + len(load_b.results)
                time.sleep(1.5)
                redis_server.start()  # empty: no persistence
                during = len(load_a.results) + len(load_b.results) - killed_at
                load_a.wait_for(len(load_a.results) + 100)
                load_b.wait_for(len(load_b.results) + 100)
            finally:
                load_a.stop()
                load_b.stop()
            failures = metric(a, 'gateway_state_backend_errors_total{operation="spend_flush"}')
            failures += metric(b, 'gateway_state_backend_errors_total{operation="spend_flush"}')
        finally:
            a.stop()
            b.stop()  # graceful: the last flushes
        in_redis = {name: redis_total(redis_server, f"spend:{name}:") for name in ("global:all", f"team:{team}")}
    recorded = {name: pg_spend(db_url, f"spend:{name}:____-__-__") for name in in_redis}
    answered = load_a.answered() + load_b.answered()
    total, ok = len(load_a.results) + len(load_b.results), load_a.count(200) + load_b.count(200)
    print(
        f"\nkill -9 of Redis 1.5 s (postgres): {ok} of {total} answered (200), {during} during the outage, "
        f"{int(failures)} spend flush(es) failed; answered {answered} USD, in PostgreSQL {recorded} USD, "
        f"in Redis after it came back {in_redis} USD"
    )
    assert failures >= 1, "flushes met the outage"
    assert ok >= 200 and load_a.count(0) + load_b.count(0) == 0
    for name, in_pg in recorded.items():
        assert abs(in_pg - answered) < NANO, f"{name}: exact to a nano-dollar in PostgreSQL"
        assert abs(in_redis[name] - answered) < NANO, f"{name}: Redis re-seeded, then each batch counted once"


def test_kill_9_of_postgres_under_load_keeps_serving_and_loses_no_spend(
    mock: Mock, pg: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL killed for 2 s under load: the replicas keep answering (Redis holds the hot
    path), flushes fail and are retried, and PostgreSQL and Redis end exact."""
    mock.behave(MODEL, latency_ms=5)
    db_url = new_database(pg)
    with RedisServer() as redis_server:
        a, b = start_pair(spend_texts(mock, redis_server.url, db_url, tmp_path), tmp_path)
        load_a, load_b = Load(a.url, concurrency=8, limit=100_000), Load(b.url, concurrency=8, limit=100_000)
        try:
            load_a.start()
            load_b.start()
            load_a.wait_for(100)
            pg.kill()
            try:
                killed_at = [len(load_a.results), len(load_b.results)]
                time.sleep(2.0)
                outage = load_a.results[killed_at[0] :] + load_b.results[killed_at[1] :]
            finally:
                pg.start()  # crash recovery from the write-ahead log
            load_a.wait_for(len(load_a.results) + 100)
            load_b.wait_for(len(load_b.results) + 100)
            load_a.stop()
            load_b.stop()
            failures = metric(a, 'gateway_state_backend_errors_total{operation="spend_flush"}')
            failures += metric(b, 'gateway_state_backend_errors_total{operation="spend_flush"}')
        finally:
            load_a.stop()
            load_b.stop()
            a.stop()
            b.stop()  # graceful: the last flushes
        in_redis = redis_total(redis_server, "spend:global:all:")
    recorded, answered = pg_spend(db_url), load_a.answered() + load_b.answered()
    served = sum(1 for status, _ in outage if status == 200)
    print(
        f"\nkill -9 of PostgreSQL 2 s (postgres): {load_a.count(200) + load_b.count(200)} answered (200), "
        f"{served} of {len(outage)} during the outage; {int(failures)} spend flush(es) failed; answered "
        f"{answered} USD, recorded {recorded} USD, difference {recorded - answered} USD; Redis {in_redis} USD"
    )
    assert len(outage) >= 50 and served >= 0.9 * len(outage), "traffic continues while PostgreSQL is down"
    assert failures >= 1, "flushes met the outage"
    assert abs(recorded - answered) < NANO, "exact (to a nano-dollar): nothing lost, nothing counted twice"
    assert abs(in_redis - recorded) < NANO, "Redis's totals (the budgets) too"
