"""The Redis state backend against real redis-server processes: the shared
contract (standalone, Sentinel, Cluster, and the embedded backend for
comparison), replicas sharing state, outages (fail fast, recover without a new
backend), the spend ledger across an outage, and the ``limits`` storage."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from gateway.state.base import BackendUnavailable, SlotSpec, StateBackend, WindowAdjust, WindowHit, WindowSpec
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from gateway.state.redis import RedisBackend
from tests.ports import free_port
from tests.redis_server import RedisServer, wait_for_pong

pytest.register_assert_rewrite("tests.state_contract")
from tests import state_contract as contract  # noqa: E402

FAST = 3.0  # seconds: "an outage never hangs a request" (the real bound is ~socket_timeout_s)


class Proc:
    """A redis-server (or sentinel) started with extra arguments; waits for PONG."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_pong(self.port, self.args[0])

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def cli(self, *args: str) -> bytes:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, check=True).stdout


def cluster_node(tmp: Path) -> Proc:
    """A one-node Redis Cluster owning every slot (its bus port picked free too)."""
    port = free_port()
    base = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", ""]
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port())]
    node = Proc([*base, *cluster], port)
    node.start()
    node.cli("cluster", "addslotsrange", "0", "16383")
    wait_for(lambda: b"cluster_state:ok" in node.cli("cluster", "info"))
    return node


def sentinel_for(master: RedisServer, tmp: Path) -> Proc:
    port = free_port()
    conf = tmp / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp}\nsentinel monitor gw 127.0.0.1 {master.port} 1\n")
    sentinel = Proc(["redis-server", str(conf), "--sentinel"], port)
    sentinel.start()
    return sentinel


def wait_for(ok: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def fails_fast(call: Callable[[], Awaitable[object]], error: type[Exception] = BackendUnavailable) -> None:
    start = time.monotonic()
    with pytest.raises(error):
        await call()
    assert time.monotonic() - start < FAST


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def backend(server: RedisServer) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(server.url, socket_timeout_s=0.2)
    yield b
    await b.aclose()


@pytest.fixture
async def any_transport(server: RedisServer) -> AsyncIterator[RedisBackend]:
    """The backend, its request-path scripts on redis-py pipelines."""
    b = RedisBackend(server.url, socket_timeout_s=0.2)
    assert b.script_transport == "redis-py"
    yield b
    await b.aclose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One cluster node for the module (a master is writable only ~2 s after it starts)."""
    node = cluster_node(tmp_path_factory.mktemp("cluster"))
    yield node
    node.kill()


@pytest.fixture(params=["embedded", "redis", "sentinel", "cluster"])
async def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    procs: list[Proc] = []
    # The contract is about results, not timeouts: a loaded 2-core CI machine can take longer than
    # the default 0.5 s to accept the 200 connections of check_spend_concurrent at once.
    timeout = 3.0
    with RedisServer() as srv:
        if request.param == "embedded":
            b: StateBackend = EmbeddedBackend(str(tmp_path / "gw.db"))
        elif request.param == "redis":
            b = RedisBackend(srv.url, socket_timeout_s=timeout)
        elif request.param == "sentinel":
            procs.append(sentinel_for(srv, tmp_path))
            b = RedisBackend(f"redis+sentinel://127.0.0.1:{procs[0].port}/gw/2", socket_timeout_s=timeout)
        else:
            node: Proc = request.getfixturevalue("cluster")
            node.cli("flushall")
            b = RedisBackend(f"redis+cluster://127.0.0.1:{node.port}", socket_timeout_s=timeout)
        try:
            yield b
        finally:
            await b.aclose()
            for proc in procs:
                proc.kill()


# --- the contract --------------------------------------------------------------------------------


async def test_contract(any_backend: StateBackend) -> None:
    await contract.check_all(any_backend)


async def test_sentinel_url_selects_the_database(tmp_path: Path) -> None:
    with RedisServer() as srv:
        sentinel = sentinel_for(srv, tmp_path)
        b = RedisBackend(f"redis+sentinel://127.0.0.1:{sentinel.port}/gw/3")
        try:
            await b.put("keys", "k", {})
            with redis.Redis(port=srv.port, db=3) as raw:
                assert raw.exists("gw:rec:{keys}:k") == 1
        finally:
            await b.aclose()
            sentinel.kill()


async def test_replicas_share_state(server: RedisServer) -> None:
    a, b = RedisBackend(server.url), RedisBackend(server.url)
    try:
        await a.put("keys", "k1", {"team": "t"})
        assert await b.get("keys", "k1") == {"team": "t"}
        assert await b.delete("keys", "k1") is True
        assert await a.get("keys", "k1") is None
        await a.incr_spend({"team:t": 0.5})
        await b.incr_spend({"team:t": 0.25})
        assert await a.read_spend(["team:t"]) == await b.read_spend(["team:t"]) == {"team:t": 0.75}
        await a.cache_set("c", b"shared", 60)
        assert await b.cache_get("c") == b"shared"
        await a.blob_put("resp_1", b"stored", 60)
        assert await b.blob_get("resp_1") == b"stored"
        with redis.Redis(port=server.port) as raw:
            assert 0 < raw.pttl("gw:blob:resp_1") <= 60_000, "its own namespace, with its TTL"
        assert await b.blob_delete("resp_1") is True
        assert await a.blob_get("resp_1") is None
        assert await a.acquire_slot("s", 1, 30) is True
        assert await b.acquire_slot("s", 1, 30) is False
        await a.release_slot("s")
        assert await b.acquire_slot("s", 1, 30) is True
        item = RateLimitItemPerMinute(1)
        assert await FixedWindowRateLimiter(a.limits_storage()).hit(item, "k") is True
        assert await FixedWindowRateLimiter(b.limits_storage()).hit(item, "k") is False
    finally:
        await a.aclose()
        await b.aclose()


async def test_slot_of_a_crashed_holder_expires(backend: RedisBackend) -> None:
    assert await backend.acquire_slot("s", 1, 0.03) is True  # the holder "crashes": never releases
    assert await backend.acquire_slot("s", 1, 0.03) is False
    await asyncio.sleep(0.05)
    assert await backend.acquire_slot("s", 1, 30) is True


# --- the hot-path scripts: batched per event-loop turn ------------------------------------------


async def test_scripts_of_one_turn_share_a_pipeline_and_stay_exact(
    server: RedisServer, any_transport: RedisBackend
) -> None:
    """60 requests at once against a 50-request window and 40 slots: each answer
    is exact, and they reach Redis as one pipeline on one connection (60 separate
    calls would each take a connection of the pool)."""
    client = redis.Redis(port=server.port)
    await any_transport.hit_windows([WindowSpec("warm", 60, 1, 5)])  # the script is loaded
    before = client.info("stats")["total_connections_received"]
    hits = await asyncio.gather(
        *(
            any_transport.hit_windows([WindowSpec("turn", 60, 1, 50)], [SlotSpec("turn-slot", 40, 30)])
            for _ in range(60)
        )
    )
    connections = client.info("stats")["total_connections_received"] - before
    admitted = [h for h in hits if h.refused < 0]
    assert len(admitted) == 40, "the slots refuse the 41st"
    assert sorted(h.counts[0] for h in admitted) == list(range(1, 41)), "each sees its own charge"
    assert {h.refused for h in hits if h.refused >= 0} == {1}, "index 1: the slot after the one window"
    assert connections <= 1, f"{connections} new connections for 60 calls of one turn: not batched"
    await asyncio.gather(*(any_transport.adjust_windows([], ["turn-slot"]) for _ in admitted))
    assert client.get("gw:win:{w}:slot:turn-slot") is None, "every slot given back"
    client.close()


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


async def test_scripts_are_loaded_again_after_redis_lost_them(server: RedisServer, any_transport: RedisBackend) -> None:
    assert (await any_transport.hit_windows([WindowSpec("flush", 60, 2, 10)])).counts == [2]
    client = redis.Redis(port=server.port)
    client.script_flush()  # as after a restart (scripts are not persisted)
    loads = _calls(client, "script|load")
    hits = await asyncio.gather(*(any_transport.hit_windows([WindowSpec("flush", 60, 1, 10)]) for _ in range(3)))
    assert _calls(client, "script|load") - loads == 1, "loaded once for the turn, not once per call"
    client.close()
    assert sorted(h.counts[0] for h in hits) == [3, 4, 5]
    await any_transport.adjust_windows([WindowAdjust("flush", 60, 5, time.time() + 60)])
    assert (await any_transport.hit_windows([WindowSpec("flush", 60, 0, 100)])).counts == [10]


async def test_a_failed_pipeline_fails_every_caller_of_the_turn(
    server: RedisServer, any_transport: RedisBackend
) -> None:
    await any_transport.ping()
    server.kill()
    results = await asyncio.gather(
        *(any_transport.hit_windows([WindowSpec("down", 60, 1, 10)]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, BackendUnavailable) for r in results), results


async def test_a_caller_that_gives_up_does_not_break_the_others(any_transport: RedisBackend) -> None:
    await any_transport.ping()
    quitter = asyncio.ensure_future(any_transport.hit_windows([WindowSpec("quit", 60, 1, 10)]))
    stayer = asyncio.ensure_future(any_transport.hit_windows([WindowSpec("quit", 60, 1, 10)]))
    await asyncio.sleep(0)
    quitter.cancel()
    assert (await stayer).refused == -1
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_a_refused_call_fails_alone_in_its_turn(server: RedisServer, any_transport: RedisBackend) -> None:
    client = redis.Redis(port=server.port)
    client.rpush("gw:win:{w}:wrong-type", "x")  # the script's GET of this key is refused (WRONGTYPE)
    client.close()
    results = await asyncio.gather(
        any_transport.hit_windows([WindowSpec("fine", 60, 1, 10)]),
        any_transport.hit_windows([WindowSpec("wrong-type", 60, 1, 10)]),
        any_transport.hit_windows([WindowSpec("fine", 60, 1, 10)]),
        return_exceptions=True,
    )
    assert isinstance(results[1], BackendUnavailable) and "WRONGTYPE" in str(results[1])
    assert [r.counts for r in (results[0], results[2]) if isinstance(r, WindowHit)] == [[1], [2]]


async def test_the_scripts_travel_on_the_pool_s_connection() -> None:
    """The request-path scripts go on the pool's connection, like every other command."""
    with RedisServer() as srv:
        b = RedisBackend(srv.url)
        client = redis.Redis(port=srv.port)
        before = client.info("stats")["total_connections_received"]
        try:
            await b.ping()
            for _ in range(3):
                await b.hit_windows([WindowSpec("where", 60, 1, 10)], [SlotSpec("where-slot", 5, 30)])
                await b.adjust_windows([], ["where-slot"])
            assert client.info("stats")["total_connections_received"] - before == 1
            assert _calls(client, "evalsha") == 8, "each of the two scripts refused once (NOSCRIPT), then six calls"
        finally:
            client.close()
            await b.aclose()


def test_the_transport_follows_the_url() -> None:
    """Construction does no I/O: no server needed."""
    for url in ("redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/gw", "rediss://127.0.0.1:1/0"):
        assert RedisBackend(url).script_transport == "redis-py", url
    assert RedisBackend("unix:///tmp/no-such.sock").script_transport == "redis-py"
    assert RedisBackend("redis+cluster://127.0.0.1:1").script_transport == "cluster"


# --- outages ---------------------------------------------------------------------------------------


async def test_outage_fails_fast_then_recovers(server: RedisServer, backend: RedisBackend) -> None:
    """Every call fails fast while Redis is down; the same backend works again after."""
    limiter = FixedWindowRateLimiter(backend.limits_storage())
    item = RateLimitItemPerMinute(100)
    await backend.put("keys", "k", {"v": 1})
    assert await limiter.hit(item, "x") is True
    server.kill()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: backend.get("keys", "k"),
        lambda: backend.put("keys", "k", {}),
        lambda: backend.delete("keys", "k"),
        lambda: backend.scan("keys"),
        lambda: backend.incr_spend({"a": 1.0}),
        lambda: backend.read_spend(["a"]),
        lambda: backend.cache_get("c"),
        lambda: backend.cache_set("c", b"v", 60),
        lambda: backend.blob_put("b", b"v", 60),
        lambda: backend.blob_put_many([("b", b"v", 60), ("c", b"w", 60)]),
        lambda: backend.blob_get("b"),
        lambda: backend.blob_delete("b"),
        lambda: backend.acquire_slot("s", 1, 30),
        lambda: backend.release_slot("s"),
        lambda: backend.hit_windows([WindowSpec("w", 60, 1, 5)], [SlotSpec("s", 1, 30)]),
        lambda: backend.adjust_windows([WindowAdjust("w", 60, 1, time.time() + 60)], ["s"]),
        backend.ping,
    ]
    for call in calls:
        await fails_fast(call)
    await fails_fast(lambda: limiter.hit(item, "x"), StorageError)  # the limits library's own error

    server.start()
    assert await backend.ping() is True
    await backend.put("keys", "k", {"v": 2})
    assert await backend.get("keys", "k") == {"v": 2}
    await backend.incr_spend({"a": 1.0})
    assert await backend.read_spend(["a"]) == {"a": 1.0}
    assert await limiter.hit(item, "x") is True


async def test_hung_redis_times_out(server: RedisServer, backend: RedisBackend) -> None:
    await backend.ping()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        await fails_fast(lambda: backend.get("keys", "k"))
        await fails_fast(lambda: backend.incr_spend({"a": 1.0}))
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert await backend.ping() is True


async def test_cluster_outage_and_recovery(cluster: Proc) -> None:
    node = cluster
    b = RedisBackend(f"redis+cluster://127.0.0.1:{node.port}", socket_timeout_s=0.2)
    try:
        node.cli("flushall")
        await b.incr_spend({"a": 0.5})
        node.kill()
        await fails_fast(lambda: b.incr_spend({"a": 0.5}))
        await fails_fast(lambda: b.read_spend(["a"]))
        node.start()  # same directory: it reloads nodes.conf and owns every slot again
        wait_for(lambda: b"cluster_state:ok" in node.cli("cluster", "info"))
        await b.incr_spend({"a": 0.25})
        assert await b.read_spend(["a"]) == {"a": 0.25}  # no persistence configured: a fresh dataset
    finally:
        await b.aclose()


# --- the spend ledger on Redis -----------------------------------------------------------------------


async def test_ledger_survives_an_outage(server: RedisServer, backend: RedisBackend) -> None:
    ledger = SpendLedger(backend, flush_interval_s=60, refresh_interval_s=1)
    ledger.add({"team:a": 0.5, "key:k": 0.5})
    assert await ledger.flush() is True
    ledger.add({"team:a": 0.25})
    server.kill()
    ledger.add({"team:a": 1.0, "key:k": 0.125})
    assert await ledger.flush() is False
    ledger.add({"team:a": 2.0})
    assert await ledger.flush() is False
    assert ledger.flush_failures == 2
    assert ledger.pending() == {"team:a": 3.25, "key:k": 0.125}
    server.start()  # the dataset is empty again (no persistence): count from here
    assert await ledger.flush() is True
    assert ledger.pending() == {}
    assert await backend.read_spend(["team:a", "key:k"]) == {"team:a": 3.25, "key:k": 0.125}


async def test_ledger_totals_exact_across_an_outage_with_persistence() -> None:
    with RedisServer(persist=True) as srv:
        b = RedisBackend(srv.url, socket_timeout_s=0.2)
        ledger = SpendLedger(b, flush_interval_s=60, refresh_interval_s=1)
        try:
            expected = 0.0
            for i in range(20):
                amount = 0.125 * (i + 1)
                ledger.add({"team:a": amount})
                expected += amount
                if i == 5:
                    assert await ledger.flush() is True
                    srv.kill()
                if i in (8, 12):
                    assert await ledger.flush() is False
                if i == 15:
                    srv.start()  # appendonly: the flushed part is still there
            assert await ledger.close() == {}
            assert await b.read_spend(["team:a"]) == {"team:a": expected}
        finally:
            await b.aclose()


async def test_ledger_close_flushes(backend: RedisBackend) -> None:
    ledger = SpendLedger(backend, flush_interval_s=60, refresh_interval_s=1)
    await ledger.start()
    ledger.add({"team:a": 1.5})
    assert await ledger.close() == {}
    assert await backend.read_spend(["team:a"]) == {"team:a": 1.5}


async def test_ledger_refresh_sees_other_replicas(server: RedisServer) -> None:
    a, b = RedisBackend(server.url), RedisBackend(server.url, socket_timeout_s=0.2)
    mine = SpendLedger(a, flush_interval_s=60, refresh_interval_s=60)
    other = SpendLedger(b, flush_interval_s=60, refresh_interval_s=60)
    try:
        other.add({"team:a": 4.0})
        await other.flush()
        mine.add({"team:a": 0.5})
        assert mine.known(["team:a"]) == {"team:a": 0.5}
        await mine.refresh(["team:a"])
        assert mine.known(["team:a"]) == {"team:a": 4.5}
        server.kill()
        await mine.refresh(["team:a"])  # fetched within the interval: no I/O, no error
        assert mine.known(["team:a"]) == {"team:a": 4.5}
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_flush_that_timed_out_but_was_applied_is_not_counted_again(
    server: RedisServer, backend: RedisBackend
) -> None:
    """Redis paused: the flush times out with its call already in Redis's socket; Redis applies it
    when it resumes, and the retry of the same batch (same owner and seq) is skipped."""
    ledger = SpendLedger(backend, flush_interval_s=60, refresh_interval_s=1)
    ledger.add({"team:a": 0.5})
    assert await ledger.flush() is True
    ledger.add({"team:a": 0.25, "key:k": 1.0})
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        assert await ledger.flush() is False, "timed out"
        ledger.add({"team:a": 2.0})  # newer spend: a batch of its own, after the held one
        assert await ledger.flush() is False
    finally:
        server.proc.send_signal(signal.SIGCONT)
    client = redis.Redis(port=server.port)
    wait_for(lambda: client.get("gw:spend:{s}:team:a") == b"0.75", 5)  # the timed-out call, applied late
    client.close()
    assert await ledger.flush() is True, "the held batch again (skipped), then the newer one"
    assert await backend.read_spend(["team:a", "key:k"]) == {"team:a": 2.75, "key:k": 1.0}
    assert ledger.stats().duplicate_batches == 1
    assert ledger.pending() == {}


async def test_reservations_are_shared_through_the_ledgers(server: RedisServer) -> None:
    a, b = RedisBackend(server.url), RedisBackend(server.url)
    mine = SpendLedger(a, flush_interval_s=60, refresh_interval_s=60)
    other = SpendLedger(b, flush_interval_s=60, refresh_interval_s=60)
    try:
        other.reserve(["spend:team:t:2026-11"], 0.75)
        other.reserve(["spend:team:t:2026-11"], 0.25)
        assert await other.flush() is True  # published with the flush, no spend needed
        mine.reserve(["spend:team:t:2026-11"], 0.5)
        await mine.refresh(["spend:team:t:2026-11"])
        assert mine.reserved(["spend:team:t:2026-11"]) == {"spend:team:t:2026-11": 1.5}, "ours and theirs"
        other.release(["spend:team:t:2026-11"], 0.75)
        other.release(["spend:team:t:2026-11"], 0.25)
        other.add({"spend:team:t:2026-11": 0.9})
        assert await other.flush() is True  # the spend and the release in one script
        fresh = SpendLedger(a, flush_interval_s=60, refresh_interval_s=60)
        await fresh.refresh(["spend:team:t:2026-11"])
        assert fresh.known(["spend:team:t:2026-11"]) == {"spend:team:t:2026-11": 0.9}
        assert fresh.reserved(["spend:team:t:2026-11"]) == {"spend:team:t:2026-11": 0.0}
    finally:
        await a.aclose()
        await b.aclose()


# --- blobs on a Redis Cluster: the keys live on several nodes --------------------------------------


async def test_blobs_many_at_once_on_a_cluster() -> None:
    """``blob_put_many`` and ``blob_get_many`` go through redis-py's cluster pipeline, which splits
    them by node; a stored conversation's chain is read back through it."""
    from gateway.canonical import JSON
    from gateway.state.response_store import Conversation, ResponseStore
    from tests.redis_cluster import RedisClusterServers

    with RedisClusterServers() as cluster:
        b = RedisBackend(cluster.url, socket_timeout_s=3.0)
        try:
            keys = [f"resp:k:{n}" for n in range(12)]
            nodes = {cluster.master_of(f"gw:blob:{key}") for key in keys}
            assert len(nodes) > 1, "the keys are spread over the masters"
            await b.blob_put_many([(key, key.encode() * 3, 60.0) for key in keys])
            got = await b.blob_get_many([*keys, "resp:k:none", keys[0]])
            assert got == [key.encode() * 3 for key in keys] + [None, keys[0].encode() * 3]
            store = ResponseStore(b, 3600, 1 << 20)
            previous: Conversation | None = None
            for n in range(4):
                words = "w " * (2000 if n == 0 else 5)  # a large first turn, never folded into the small ones
                turn: list[JSON] = [{"type": "message", "role": "user", "content": f"turn {n} {words}"}]
                assert await store.save("key-a", {"id": f"resp_{n}"}, turn, previous)
                previous = await store.conversation("key-a", f"resp_{n}")
                assert previous is not None
            assert previous is not None
            assert [link.response_id for link in previous.last.chain] == ["resp_0", "resp_2"]  # 1 folded into 2
            masters = {cluster.master_of(f"gw:blob:{store._key('key-a', rid)}") for rid in ("resp_0", "resp_2")}
            assert len(masters) == 2, "the chain is read from two masters"
            assert [item["content"].split(" ")[1] for item in previous.items] == ["0", "1", "2", "3"]
        finally:
            await b.aclose()
