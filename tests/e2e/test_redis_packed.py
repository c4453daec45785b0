"""``RedisConnection.packed``: the lean pipeline the request-path scripts and the blob
puts travel on, against a real redis-server. Replies come back in order with an error
reply in its command's place; a connection whose exchange was cut (a timeout, a
cancelled caller, a connection killed under it) never hands a late reply to the next
caller; a Cluster client is refused; a blob put that Redis refuses is "backend
unavailable" naming Redis's error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.exceptions import ResponseError

from gateway.state.base import BackendUnavailable
from gateway.state.redis import RedisBackend
from gateway.state.redis_client import RedisConnection
from tests.redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def conn(server: RedisServer) -> AsyncIterator[RedisConnection]:
    connection = RedisConnection(server.url, socket_timeout_s=2.0, max_connections=4)
    yield connection
    await connection.aclose()


async def test_replies_come_in_order_with_an_error_reply_in_its_place(conn: RedisConnection) -> None:
    replies = await conn.packed(
        [
            (b"SET", b"packed:s", b"text"),
            (b"INCR", b"packed:s"),  # a string that is not a number: an error reply
            (b"INCRBY", b"packed:n", 5),
            (b"GET", b"packed:s"),
        ]
    )
    assert replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert "not an integer" in str(replies[1])
    assert replies[2:] == [5, b"text"]
    assert await conn.packed([(b"INCRBY", b"packed:n", 2)]) == [7]  # the connection is still in step


async def test_a_cancelled_exchange_leaves_no_reply_for_the_next_caller(conn: RedisConnection) -> None:
    """A batch cut off while Redis still works on it (BLPOP holds the reply back): the
    connection is dropped, so the next batch on the pool reads its own replies."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await conn.packed([(b"SET", b"packed:a", b"1"), (b"BLPOP", b"packed:empty", b"0.6"), (b"GET", b"packed:a")])
    for _ in range(4):  # every pooled connection, the dropped one included
        assert await conn.packed([(b"ECHO", b"mine"), (b"GET", b"packed:a")]) == [b"mine", b"1"]
    await asyncio.sleep(0.6)  # BLPOP's late nil would be read now by a desynchronised connection
    assert await asyncio.gather(*(conn.packed([(b"ECHO", str(i).encode())]) for i in range(4))) == [
        [str(i).encode()] for i in range(4)
    ]


async def test_a_connection_killed_under_the_client_is_tried_again(server: RedisServer, conn: RedisConnection) -> None:
    assert await conn.packed([(b"SET", b"packed:k", b"before")]) == [b"OK"]
    killer = redis.Redis.from_url(server.url)
    try:
        assert killer.client_kill_filter(_type="normal", skipme=True) >= 1  # the pooled connection
    finally:
        killer.close()
    assert await conn.packed([(b"GET", b"packed:k")]) == [b"before"]


async def test_a_socket_timeout_is_backend_unavailable_and_the_pool_stays_usable(server: RedisServer) -> None:
    conn = RedisConnection(server.url, socket_timeout_s=0.2, max_connections=2)
    try:
        with pytest.raises(BackendUnavailable, match="Timeout"):
            await conn.call(conn.packed([(b"BLPOP", b"packed:none", b"1")]))
        await asyncio.sleep(1.0)
        assert await conn.call(conn.packed([(b"PING",)])) == [b"PONG"]
    finally:
        await conn.aclose()


async def test_a_cluster_client_is_refused_before_any_io() -> None:
    conn = RedisConnection("redis+cluster://127.0.0.1:1", socket_timeout_s=0.2, max_connections=2)
    with pytest.raises(TypeError, match="Cluster"):
        await conn.packed([(b"PING",)])


@pytest.fixture
async def backend(server: RedisServer) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(server.url, socket_timeout_s=1.0)
    yield b
    await b.aclose()


async def test_blob_puts_refused_by_redis_are_backend_unavailable(server: RedisServer, backend: RedisBackend) -> None:
    await backend.blob_put_many([("one", b"1", 60.0), ("two", b"2", 60.0)])
    assert [await backend.blob_get("one"), await backend.blob_get("two")] == [b"1", b"2"]
    admin = redis.Redis.from_url(server.url)
    try:
        admin.config_set("maxmemory", "1")  # full: every write is refused with OOM
        admin.config_set("maxmemory-policy", "noeviction")
        with pytest.raises(BackendUnavailable, match="OutOfMemoryError: command not allowed"):
            await backend.blob_put_many([("three", b"3", 60.0)])
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
    await backend.blob_put_many([("three", b"3", 60.0)])
    assert await backend.blob_get("three") == b"3"
