"""The Redis backend's script batch: at most IN_FLIGHT batches out at once, the calls made
meanwhile carried by the next one, each caller answered with its own call's reply, and no
call ever left behind (a sender that ends, or is cancelled, with calls queued). The
transport here is a recorder that holds each batch until the test lets it go (what travels
to Redis is tested on a real server in tests/e2e/test_redis_packed.py and test_state_redis.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio

from gateway.state.base import BackendUnavailable
from gateway.state.script_batch import IN_FLIGHT, ScriptBatch
from gateway.state.script_transport import ScriptCall


class Held:
    """Each batch waits for :meth:`release`; its replies are each call's first argument."""

    name = "held"

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gates: list[asyncio.Event] = []

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        self.batches.append([args[0] for _, _, args in calls])
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return [args[0] for _, _, args in calls]

    def release(self, i: int) -> None:
        self.gates[i].set()

    async def aclose(self) -> None:
        pass


@pytest.fixture
def script() -> Any:
    return redis.asyncio.Redis().register_script("return ARGV[1]")  # no I/O: only its SHA is used


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_calls_of_one_turn_share_a_batch(script: Any) -> None:
    held = Held()
    batch = ScriptBatch(redis.asyncio.Redis(), 5.0, held)
    out = [batch.submit(script, [b"k"], [b"t%d" % i]) for i in range(3)]
    await turn()
    assert held.batches == [[b"t0", b"t1", b"t2"]]
    held.release(0)
    assert await asyncio.gather(*out) == [b"t0", b"t1", b"t2"]


async def test_calls_made_while_batches_are_out_go_in_the_next_one(script: Any) -> None:
    held = Held()
    batch = ScriptBatch(redis.asyncio.Redis(), 5.0, held)
    first = []
    for i in range(IN_FLIGHT):  # a call a turn: IN_FLIGHT batches go out
        first.append(batch.submit(script, [b"k"], [b"a%d" % i]))
        await turn()
    assert held.batches == [[b"a%d" % i] for i in range(IN_FLIGHT)]
    later = []
    for i in range(5):  # in turns of their own, but IN_FLIGHT batches are out: they wait
        later.append(batch.submit(script, [b"k"], [b"c%d" % i]))
        await turn()
    assert len(held.batches) == IN_FLIGHT
    held.release(0)
    assert await first[0] == b"a0"
    await turn()
    assert held.batches[IN_FLIGHT:] == [[b"c%d" % i for i in range(5)]]  # all that waited, in one batch
    for i in range(1, len(held.gates)):
        held.release(i)
    assert await asyncio.gather(*first) == [b"a%d" % i for i in range(IN_FLIGHT)]
    assert await asyncio.gather(*later) == [b"c%d" % i for i in range(5)]


async def test_no_call_is_left_behind_when_senders_come_and_go(script: Any) -> None:
    """Many rounds of calls whose batches end at once: every call is answered (a call queued
    just as a sender ends starts a new one)."""

    class Instant:
        name = "instant"

        async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
            await asyncio.sleep(0)
            return [args[0] for _, _, args in calls]

        async def aclose(self) -> None:
            pass

    batch = ScriptBatch(redis.asyncio.Redis(), 5.0, Instant())

    async def caller(i: int) -> bytes:
        out = b""
        for j in range(20):  # the next call as soon as the last is answered, before its sender has ended
            out = await batch.submit(script, [b"k"], [b"%d-%d" % (i, j)])
        return out

    async with asyncio.timeout(10):
        assert await asyncio.gather(*(caller(i) for i in range(16))) == [b"%d-19" % i for i in range(16)]


async def test_a_call_made_as_every_sender_ends_starts_a_new_one(script: Any) -> None:
    """IN_FLIGHT batches answered in the same turn, and each caller's next call made at once
    when it wakes: before the senders' tasks are done, so a sender count kept by their done
    callbacks would still read IN_FLIGHT and leave these calls unsent for good."""
    held = Held()
    batch = ScriptBatch(redis.asyncio.Redis(), 5.0, held)

    async def twice(i: int) -> bytes:
        await batch.submit(script, [b"k"], [b"first%d" % i])
        return bytes(await batch.submit(script, [b"k"], [b"second%d" % i]))

    tasks = []
    for i in range(IN_FLIGHT):
        tasks.append(asyncio.create_task(twice(i)))
        await turn()
    assert len(held.batches) == IN_FLIGHT
    for i in range(IN_FLIGHT):
        held.release(i)  # all in this turn
    async with asyncio.timeout(5):
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.01)
            for gate in held.gates:
                gate.set()
    assert [t.result() for t in tasks] == [b"second%d" % i for i in range(IN_FLIGHT)]


async def test_a_cancelled_sender_fails_the_calls_queued_behind_it(script: Any) -> None:
    held = Held()
    batch = ScriptBatch(redis.asyncio.Redis(), 5.0, held)
    out = []
    for i in range(IN_FLIGHT):
        out.append(batch.submit(script, [b"k"], [b"x%d" % i]))
        await turn()
    waiting = batch.submit(script, [b"k"], [b"queued"])
    await turn()
    assert len(held.batches) == IN_FLIGHT
    for task in list(batch._senders):  # as at shutdown
        task.cancel()
    await turn()
    with pytest.raises(BackendUnavailable, match="cancelled"):
        await waiting
    for future in out:  # the batches in flight: their callers hear of the cancellation
        with pytest.raises(asyncio.CancelledError):
            await future
