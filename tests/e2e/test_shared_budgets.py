"""Budgets decided in Redis for every replica (gateway/state/shared_budgets.py) and spend
writes acknowledged by Redis replicas (``state.spend_replicas``), on real redis-servers:
a master with a replica, the replica paused (SIGSTOP) to make ``WAIT`` fall short."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from gateway.state.base import BackendUnavailable, SpendBatch
from gateway.state.ledger import SpendLedger
from gateway.state.redis import RedisBackend
from tests.e2e.test_state_redis import Proc, wait_for
from tests.ports import free_port
from tests.redis_server import RedisServer

COUNTER = "spend:team:t1:2026-12-06"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def backend(server: RedisServer) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(server.url, socket_timeout_s=0.5)
    yield b
    await b.aclose()


def holds(server: RedisServer) -> dict[bytes, float]:
    """Each process's hold on COUNTER."""
    client = redis.Redis(port=server.port)
    try:
        raw: dict[bytes, bytes] = client.hgetall(f"gw:hold:{{s}}:{COUNTER}")  # type: ignore[assignment]
        return {owner: float(usd) for owner, usd in raw.items()}
    finally:
        client.close()


async def test_two_owners_cannot_reserve_past_a_budget_together(backend: RedisBackend) -> None:
    # a budget of 1.0 USD, requests estimated at 0.4: two fit beside each other, a third does not
    first = await backend.reserve_budget([COUNTER], [1.0], "a", 0.4, 60)
    second = await backend.reserve_budget([COUNTER], [1.0], "b", 0.4, 60)
    third = await backend.reserve_budget([COUNTER], [1.0], "a", 0.4, 60)
    assert first[0] and second[0] and not third[0]
    assert third[1] == [0.0] and third[2] == [pytest.approx(0.8)], "refused with the figures that refused it"


async def test_a_release_goes_with_the_batch_that_carries_the_cost(backend: RedisBackend, server: RedisServer) -> None:
    assert (await backend.reserve_budget([COUNTER], [1.0], "a", 0.4, 60))[0]
    assert holds(server) == {b"a": pytest.approx(0.4)}
    batch = SpendBatch("a", 1, {COUNTER: 0.3, f"hold:{COUNTER}": -0.4})
    assert await backend.apply_spend(batch)
    assert holds(server) == {}, "the hold dropped in the step that added the cost"
    assert (await backend.read_spend([COUNTER]))[COUNTER] == pytest.approx(0.3)
    # a retry of the same batch (a timeout after Redis applied it) changes nothing
    assert not await backend.apply_spend(batch)
    assert holds(server) == {} and (await backend.read_spend([COUNTER]))[COUNTER] == pytest.approx(0.3)
    # 0.3 spent of 0.35: alone a request passes (nothing held), beside a hold one does not
    admitted, totals, held = await backend.reserve_budget([COUNTER], [0.35], "b", 0.4, 60)
    assert admitted and totals == [pytest.approx(0.3)] and held == [0.0]
    assert not (await backend.reserve_budget([COUNTER], [0.35], "c", 0.01, 60))[0]


async def test_the_holds_of_a_dead_process_lapse(backend: RedisBackend, server: RedisServer) -> None:
    assert (await backend.reserve_budget([COUNTER], [1.0], "dead", 0.9, 0.2))[0]
    assert not (await backend.reserve_budget([COUNTER], [1.0], "a", 0.5, 60))[0]
    await asyncio.sleep(0.3)
    admitted, _, held = await backend.reserve_budget([COUNTER], [1.0], "a", 0.5, 60)
    assert admitted and held == [0.0]
    assert set(holds(server)) == {b"a"}, "the dead process's hold was dropped"


async def test_the_ledger_releases_with_its_batch_once_while_redis_is_paused(server: RedisServer) -> None:
    backend = RedisBackend(server.url, socket_timeout_s=0.2)
    ledger = SpendLedger(backend, flush_interval_s=60, refresh_interval_s=60)
    shared = ledger.shared_budgets
    assert shared is not None, "the redis backend decides budgets in Redis"
    assert server.proc is not None
    try:
        assert (await shared.reserve([COUNTER], [1.0], 0.4)).admitted
        assert (await shared.reserve([COUNTER], [1.0], 0.4)).admitted
        assert holds(server) == {ledger.owner.encode(): pytest.approx(0.8)}
        assert ledger.stats().reservations == 2 and ledger.stats().reserved_usd == pytest.approx(0.8)
        shared.release([COUNTER], 0.4)  # charged 0.25
        ledger.add({COUNTER: 0.25})
        shared.release([COUNTER], 0.4)  # failed upstream: no cost
        assert ledger.stats().reservations == 0 and ledger.stats().reserved_usd == 0
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            assert not await ledger.flush(), "Redis does not answer: the batch and its releases are kept"
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert await ledger.flush()  # the same batch again: Redis may have applied it late, once
        assert holds(server) == {}, "released with their batch, once"
        assert (await backend.read_spend([COUNTER]))[COUNTER] == pytest.approx(0.25), "counted once"
    finally:
        await backend.aclose()


# --- spend_replicas: WAIT after each spend batch ------------------------------------------------------------


@pytest.fixture
def replicated(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("replica")
    replica = Proc(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--replicaof",
            "127.0.0.1",
            str(server.port),
        ],
        port,
    )
    replica.start()
    wait_for(lambda: b"master_link_status:up" in replica.cli("info", "replication"))
    yield replica
    if replica.proc is not None:
        os.kill(replica.proc.pid, signal.SIGCONT)
    replica.kill()


async def test_a_batch_counts_as_written_only_once_a_replica_has_it(server: RedisServer, replicated: Proc) -> None:
    backend = RedisBackend(server.url, socket_timeout_s=0.5, spend_replicas=1, spend_replica_wait_s=0.1)
    try:
        assert await backend.apply_spend(SpendBatch("o", 1, {COUNTER: 1.0}))
        assert replicated.proc is not None
        os.kill(replicated.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
        batch = SpendBatch("o", 2, {COUNTER: 2.0})
        with pytest.raises(BackendUnavailable, match=r"reached 0 of state\.spend_replicas=1"):
            await backend.apply_spend(batch)
        os.kill(replicated.proc.pid, signal.SIGCONT)
        # written again under its id: applied once (the master had it), acknowledged now
        assert not await backend.apply_spend(batch)
        assert (await backend.read_spend([COUNTER]))[COUNTER] == pytest.approx(3.0)
        wait_for(lambda: replicated.cli("get", f"gw:spend:{{s}}:{COUNTER}").strip() == b"3")
    finally:
        await backend.aclose()


async def test_a_master_without_a_replica_refuses_to_call_a_batch_written(server: RedisServer) -> None:
    backend = RedisBackend(server.url, socket_timeout_s=0.5, spend_replicas=1, spend_replica_wait_s=0.05)
    try:
        with pytest.raises(BackendUnavailable, match="spend_replicas"):
            await backend.apply_spend(SpendBatch("o", 1, {COUNTER: 1.0}))
    finally:
        await backend.aclose()
