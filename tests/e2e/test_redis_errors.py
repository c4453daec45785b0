"""Every Redis client error is "backend unavailable", never an internal error:
the classes a call can raise (a closed transport's RuntimeError included), the
connection closed or killed under the client in several states on every call
path (records, spend, windows through the script batch, the ``limits``
storage), on the event loop the gateway runs (uvloop), and a gateway under
load whose Redis connections are killed again and again (never a 500)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import uvloop
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import ClusterDownError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.state.base import BackendUnavailable, SpendBatch, WindowAdjust, WindowSpec
from gateway.state.redis import RedisBackend
from gateway.state.redis_client import REDIS_ERRORS, RedisConnection
from gateway.state.script_batch import ScriptBatch
from gateway.state.script_transport import ScriptCall
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config
from tests.redis_server import RedisServer

Call = Callable[[], Awaitable[object]]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


async def closed_transport_error() -> RuntimeError:
    """What uvloop raises when a closed transport is written to (the 500 of old)."""
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.transport.abort()
    await asyncio.sleep(0.01)
    try:
        writer.write(b"PING\r\n")
    except RuntimeError as exc:
        return exc
    finally:
        for w in (writer, *accepted):
            w.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)
    raise AssertionError("writing to a closed uvloop transport did not fail")


def failures(transport_closed: RuntimeError) -> list[Exception]:
    return [
        transport_closed,
        asyncio.IncompleteReadError(b"$5\r\nab", 5),  # the server went away mid-reply
        EOFError("stream ended"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        RedisConnectionError("Error 111 connecting"),
        RedisTimeoutError("Timeout reading"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        TimeoutError(),
    ]


class Failing:
    """A script transport whose whole batch fails with ``error`` (the batch's
    mapping is under test, not the transport)."""

    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        raise self.error

    async def aclose(self) -> None:
        pass


def test_every_client_failure_is_backend_unavailable() -> None:
    async def check() -> None:
        conn = RedisConnection("redis://127.0.0.1:1/0", socket_timeout_s=0.2, max_connections=4)
        for error in failures(await closed_transport_error()):
            assert isinstance(error, REDIS_ERRORS), type(error)

            async def fail(error: Exception = error) -> None:
                raise error

            with pytest.raises(BackendUnavailable, match=type(error).__name__):
                await conn.call(fail())
            backend = RedisBackend("redis://127.0.0.1:1/0")
            batch = ScriptBatch(backend.windows.batch._client, 1.0, Failing(error))
            results = await asyncio.gather(
                *(batch.submit(backend.windows._hit, [b"k"], [b"[]"]) for _ in range(3)), return_exceptions=True
            )
            assert all(isinstance(r, BackendUnavailable) for r in results), results
            assert backend.limits_storage().base_exceptions == REDIS_ERRORS  # limits wraps them: StorageError
            await backend.aclose()
        await conn.aclose()

    uvloop.run(check())


def call_paths(b: RedisBackend, n: int) -> dict[str, Call]:
    limiter = FixedWindowRateLimiter(b.limits_storage())
    return {
        "records": lambda: b.get("keys", "k"),
        "record put": lambda: b.put("keys", "k", {"n": n}),
        "spend": lambda: b.apply_spend(SpendBatch("errors", n, {"a": 0.5}, {"a": 0.25})),
        "budget read": lambda: b.read_budget(["a"], "other"),
        "windows": lambda: b.hit_windows([WindowSpec("w", 60, 1, 10**6)]),
        "window adjust": lambda: b.adjust_windows([WindowAdjust("w", 60, 1, time.time() + 60)]),
        "cache": lambda: b.cache_get("c"),
        "log": lambda: b.append_log("errors", {"n": n}),
        "limits": lambda: limiter.hit(RateLimitItemPerMinute(10**6), "x"),
    }


async def outcomes(paths: dict[str, Call]) -> Counter[str]:
    seen: Counter[str] = Counter()
    results = await asyncio.gather(*(call() for call in paths.values()), return_exceptions=True)
    for name, result in zip(paths, results, strict=True):
        if isinstance(result, (BackendUnavailable, StorageError)):
            seen["unavailable"] += 1
        elif isinstance(result, BaseException):
            seen[f"{name}: {type(result).__name__}: {result}"] += 1
        else:
            seen["ok"] += 1
    return seen


def test_connections_closed_under_the_client_in_every_state(server: RedisServer) -> None:
    admin = redis.Redis(port=server.port)

    async def scenario() -> Counter[str]:
        seen: Counter[str] = Counter()
        b = RedisBackend(server.url, socket_timeout_s=0.3)
        assert server.proc is not None
        for n in range(1, 4):
            paths = call_paths(b, n)
            seen += await outcomes(paths)  # connections open and idle in the pool
            client = b._client
            assert isinstance(client, redis.asyncio.Redis)
            pool = client.connection_pool
            for conn in list(pool._available_connections):  # closed under the client, idle
                if conn._writer is not None:
                    conn._writer.transport.abort()
            seen += await outcomes(paths)
            admin.client_kill_filter(_type="normal", skipme=True)  # killed by the server, idle
            seen += await outcomes(paths)
            server.proc.send_signal(signal.SIGSTOP)  # in flight: the server hangs, then is killed
            flying = asyncio.ensure_future(outcomes(paths))
            await asyncio.sleep(0.05)
            for conn in list(pool._in_use_connections):
                if conn._writer is not None:
                    conn._writer.transport.abort()
            server.proc.send_signal(signal.SIGCONT)
            seen += await flying
            flying = asyncio.ensure_future(outcomes(paths))  # the client closed while calls are in flight
            await b.aclose()
            seen += await flying
        server.kill()  # the server gone
        seen += await outcomes(call_paths(b, 9))
        server.start()
        seen += await outcomes(call_paths(b, 10))  # and back: the same backend works again
        await b.aclose()
        return seen

    try:
        seen = uvloop.run(scenario())
    finally:
        admin.close()
    assert set(seen) <= {"ok", "unavailable"}, seen
    assert seen["unavailable"] > 0 and seen["ok"] > 0, seen


def test_a_gateway_whose_redis_connections_are_killed_under_load_never_answers_500(
    mock: Mock, server: RedisServer, tmp_path: Path
) -> None:
    state = f"state: {{backend: redis, url: '{server.url}'}}\n"
    gw = GatewayProcess(state + e2e_config(mock.url), tmp_path)
    admin = redis.Redis(port=server.port)
    answers: list[int] = []  # list.append is atomic across threads
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=15) as c:
            for i in range(60):
                if stop.is_set():
                    return
                content = f"hello {i % 7}"  # temperature 0: cache hits and misses both
                body = {"model": "chat", "messages": [{"role": "user", "content": content}], "temperature": 0}
                answers.append(c.post("/v1/chat/completions", json=body).status_code)

    workers = [threading.Thread(target=load) for _ in range(8)]
    try:
        for worker in workers:
            worker.start()
        kills = 0
        while any(w.is_alive() for w in workers) and kills < 200:
            admin.client_kill_filter(_type="normal", skipme=True)  # every gateway connection, again and again
            kills += 1
            time.sleep(0.01)
        for worker in workers:  # the load runs to its end (the kills may have ended first on a slow machine)
            worker.join(timeout=60)
        log = gw.log()
    finally:
        stop.set()
        admin.close()
        gw.stop()
    statuses = Counter(answers)
    print(f"\nRedis connections killed {kills} times under load: answers by status {dict(statuses)}")
    assert sum(statuses.values()) == 8 * 60
    assert set(statuses) <= {200, 503}, statuses
    assert "unexpected error" not in log and "Traceback" not in log
