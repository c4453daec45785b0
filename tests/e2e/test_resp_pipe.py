"""The lean pipelined connection of the request-path scripts, against a real
redis-server: replies of every kind, AUTH and SELECT, batches in flight at
once, and failures that must never leave a reply paired with the wrong command."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
import redis

from gateway.state.resp import RespConnectionError, RespError, RespPipe, command
from tests.redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def pipe_for(server: RedisServer, **kw: object) -> RespPipe:
    async def address() -> tuple[str, int]:
        return "127.0.0.1", server.port

    return RespPipe(address, **kw)  # type: ignore[arg-type]


async def test_every_kind_of_reply(server: RedisServer) -> None:
    pipe = pipe_for(server)
    try:
        replies = await pipe.call(
            [
                command(b"PING"),
                command(b"SET", b"k", b"v\r\nwith a newline"),
                command(b"GET", b"k"),
                command(b"GET", b"missing"),
                command(b"INCRBY", b"n", b"-5"),
                command(b"RPUSH", b"l", b"a", b"b"),
                command(b"LRANGE", b"l", b"0", b"-1"),
                command(b"NOSUCHCOMMAND"),
                command(b"PING"),
            ]
        )
    finally:
        await pipe.aclose()
    assert replies[:7] == [b"PONG", b"OK", b"v\r\nwith a newline", None, -5, 2, [b"a", b"b"]]
    assert isinstance(replies[7], RespError) and "unknown command" in str(replies[7])
    assert replies[8] == b"PONG", "an error reply does not shift the ones after it"


async def test_many_batches_in_flight_each_get_their_own_replies(server: RedisServer) -> None:
    pipe = pipe_for(server)
    try:
        results = await asyncio.gather(*(pipe.call([command(b"ECHO", b"%d" % i)] * 3) for i in range(200)))
    finally:
        await pipe.aclose()
    assert results == [[b"%d" % i] * 3 for i in range(200)]


async def test_auth_and_select(server: RedisServer) -> None:
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "s3cret-pass")
    try:
        good = pipe_for(server, password="s3cret-pass", db=3)
        try:
            assert await good.call([command(b"SET", b"in-db-3", b"yes")]) == [b"OK"]
        finally:
            await good.aclose()
        authed = redis.Redis(port=server.port, password="s3cret-pass", db=3)
        assert authed.get("in-db-3") == b"yes"
        authed.close()
        bad = pipe_for(server, password="wrong")
        with pytest.raises(RespConnectionError, match="refused the connection setup"):
            await bad.call([command(b"PING")])
        await bad.aclose()
        anonymous = pipe_for(server)
        (reply,) = await anonymous.call([command(b"GET", b"in-db-3")])
        assert isinstance(reply, RespError) and "NOAUTH" in str(reply)
        await anonymous.aclose()
    finally:
        redis.Redis(port=server.port, password="s3cret-pass").config_set("requirepass", "")
        admin.close()


async def test_an_abandoned_batch_closes_the_connection_so_late_replies_are_never_misread(server: RedisServer) -> None:
    pipe = pipe_for(server)
    assert await pipe.call([command(b"SET", b"a", b"1"), command(b"SET", b"b", b"2")]) == [b"OK", b"OK"]
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # accepts, never answers
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pipe.call([command(b"GET", b"a")])
    finally:
        server.proc.send_signal(signal.SIGCONT)
    try:  # the reply to GET a arrives late on the old connection; this batch is on a new one
        assert await pipe.call([command(b"GET", b"b")]) == [b"2"]
    finally:
        await pipe.aclose()


async def test_a_dead_server_fails_the_batches_in_flight_then_a_new_connection_works(server: RedisServer) -> None:
    pipe = pipe_for(server, connect_timeout_s=0.5)
    assert await pipe.call([command(b"PING")]) == [b"PONG"]
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    waiting = asyncio.ensure_future(pipe.call([command(b"PING")]))
    await asyncio.sleep(0.05)
    server.kill()  # SIGKILL while stopped: the connection is cut with the command unanswered
    with pytest.raises(RespConnectionError):
        await waiting
    with pytest.raises(OSError):
        await pipe.call([command(b"PING")])  # nothing listens
    server.start()
    try:
        assert await pipe.call([command(b"PING")]) == [b"PONG"]
    finally:
        await pipe.aclose()
