"""The embedded state backend (SQLite + memory), the spend ledger on top of it,
and the backend factory."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from gateway.config.state import StateSettings
from gateway.state.base import BackendUnavailable, SpendBatch
from gateway.state.embedded import ByteLRU, EmbeddedBackend
from gateway.state.factory import create_backend
from gateway.state.ledger import SpendLedger
from gateway.state.redis import RedisBackend
from gateway.state.spend_counters import SpendCounters

pytest.register_assert_rewrite("tests.state_contract")
from tests import state_contract as contract  # noqa: E402


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "state" / "gateway.db"))
    yield b
    await b.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the contract ------------------------------------------------------------------------------


async def test_contract(backend: EmbeddedBackend) -> None:
    assert backend.kind == "embedded"
    await contract.check_all(backend)


async def test_file_and_parent_dirs_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "gw.db"
    b = EmbeddedBackend(str(path))
    await b.put("keys", "k", {"v": 1})
    with sqlite3.connect(path) as conn:  # the write is on disk when put returns
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT json FROM records WHERE tbl = 'keys' AND id = 'k'").fetchone() == ('{"v":1}',)
    conn.close()
    await b.aclose()


async def test_records_and_spend_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    first = EmbeddedBackend(path)
    await first.put("keys", "k1", {"team": "a"})
    await first.put("keys", "k2", {"team": "b"})
    await first.delete("keys", "k2")
    await first.incr_spend({"team:a": 1.25})
    await first.cache_set("c", b"v", 60)
    await first.aclose()

    second = EmbeddedBackend(path)
    assert await second.get("keys", "k1") == {"team": "a"}
    assert await second.get("keys", "k2") is None
    assert await second.scan("keys") == [{"team": "a"}]
    await second.incr_spend({"team:a": 0.25})
    assert await second.read_spend(["team:a"]) == {"team:a": 1.5}
    assert await second.cache_get("c") is None  # the cache is memory only
    await second.aclose()


async def test_closed_backend_is_unavailable(tmp_path: Path) -> None:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    await b.put("keys", "k", {})
    await b.aclose()
    await b.aclose()  # idempotent
    for call in (b.ping, lambda: b.get("keys", "k"), lambda: b.incr_spend({"x": 1.0})):
        with pytest.raises(BackendUnavailable):
            await call()


async def test_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    b = EmbeddedBackend(str(tmp_path / "file" / "gw.db"))  # a parent that is a file
    with pytest.raises(BackendUnavailable):
        await b.ping()
    await b.aclose()


async def test_many_spend_keys_in_one_read(backend: EmbeddedBackend) -> None:
    keys = [f"key:{i}" for i in range(1200)]  # more than one SQL statement's worth of parameters
    await backend.incr_spend(dict.fromkeys(keys, 0.5))
    totals = await backend.read_spend([*keys, "missing"])
    assert len(totals) == 1201
    assert set(totals.values()) == {0.5, 0.0}


async def test_event_loop_not_blocked_by_writes(backend: EmbeddedBackend) -> None:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.gather(
        *(backend.put("keys", f"k{i}", {"i": i}) for i in range(100)),
        *(backend.incr_spend({"team:a": 0.5}) for _ in range(100)),
    )
    done.set()
    await task
    # The loop kept turning while the worker thread wrote (no timing bound: the
    # machine is shared; a blocked loop would give a handful of turns, not hundreds).
    assert len(gaps) >= 200
    assert await backend.read_spend(["team:a"]) == {"team:a": 50.0}
    assert len(await backend.scan("keys")) == 100


# --- the byte-bounded LRU cache -------------------------------------------------------------------


def test_lru_evicts_least_recently_used_to_stay_under_the_byte_bound() -> None:
    lru = ByteLRU(30)
    lru.set("a", b"x" * 9, 60)  # 10 bytes with the key
    lru.set("b", b"x" * 9, 60)
    lru.set("c", b"x" * 9, 60)
    assert lru.size == 30
    assert lru.get("a") is not None  # a is now the most recently used
    lru.set("d", b"x" * 9, 60)
    assert lru.get("b") is None
    assert [k for k in "acd" if lru.get(k) is not None] == ["a", "c", "d"]
    lru.set("e", b"x" * 19, 60)  # 20 bytes: two entries go
    assert lru.size <= 30
    assert lru.get("e") is not None
    assert len(lru) == 2


def test_lru_oversized_entries_and_overwrites() -> None:
    lru = ByteLRU(20)
    lru.set("big", b"x" * 40, 60)
    assert lru.get("big") is None
    assert lru.size == 0
    lru.set("k", b"x" * 9, 60)
    lru.set("k", b"x" * 4, 60)
    assert lru.size == 5
    lru.set("k", b"x" * 40, 60)  # too big: the old value goes too
    assert lru.get("k") is None
    assert lru.size == 0


def test_lru_per_entry_expiry() -> None:
    clock = Clock()
    lru = ByteLRU(1000, clock=clock)
    lru.set("short", b"1", 5)
    lru.set("long", b"2", 50)
    clock.now += 10
    assert lru.get("short") is None
    assert lru.get("long") == b"2"
    assert lru.size == len("long") + 1
    clock.now += 40
    assert lru.get("long") is None
    assert lru.size == 0


async def test_backend_cache_respects_max_bytes(tmp_path: Path) -> None:
    b = EmbeddedBackend(str(tmp_path / "gw.db"), cache_max_bytes=100)
    for i in range(10):
        await b.cache_set(f"k{i}", b"x" * 40, 60)
    assert [i for i in range(10) if await b.cache_get(f"k{i}") is not None] == [8, 9]
    await b.aclose()


# --- the spend ledger ----------------------------------------------------------------------------


class Flaky:
    """A backend whose spend calls fail while ``down`` (other calls pass through)."""

    kind = "flaky"

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.down = False
        self.reads = 0

    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        if self.down:
            raise BackendUnavailable("down")
        await self.inner.incr_spend(increments)

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        self.reads += 1
        if self.down:
            raise BackendUnavailable("down")
        return await self.inner.read_spend(keys)

    async def apply_spend(self, batch: SpendBatch) -> bool:
        if self.down:
            raise BackendUnavailable("down")
        return await self.inner.apply_spend(batch)

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        return await self.read_spend(keys), {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def make_ledger(backend: object, clock: Clock | None = None, flush_s: float = 60.0) -> SpendLedger:
    return SpendLedger(
        backend,  # type: ignore[arg-type]
        flush_interval_s=flush_s,
        refresh_interval_s=1.0,
        clock=clock or Clock(),
    )


def test_counters_a_write_moves_amounts_between_parts_and_never_changes_known() -> None:
    counters = SpendCounters()
    counters.add({"a": 1.0, "b": 0.5})
    counters.tally(("g",), [["a", "c"]], [2.0])
    assert counters.known(["a", "b", "c"]) == {"a": 1.0, "b": 0.5, "c": 0.0}, "tallies wait for a write"
    batch = counters.take(("me", 1))
    assert batch == {"a": 3.0, "b": 0.5, "c": 2.0}
    counters.add({"a": 0.25})
    assert counters.pending() == {"a": 3.25, "b": 0.5, "c": 2.0}, "in flight plus newly added"
    counters.settle(("me", 1), written=False)
    assert counters.pending() == {"a": 3.25, "b": 0.5, "c": 2.0}, "a failed write is pending still"
    assert counters.held() == [(("me", 1), {"a": 3.0, "b": 0.5, "c": 2.0})], "kept whole, not merged"
    counters.settle(("me", 1), written=True)
    assert counters.take(("me", 2)) == {"a": 0.25}
    counters.settle(("me", 2), written=True)
    assert counters.pending() == {}
    assert counters.take(("me", 3)) == {}
    assert counters.held() == []
    assert counters.known(["a", "b", "c"]) == {"a": 3.25, "b": 0.5, "c": 2.0}
    counters.fetched({"a": 10.0})  # the backend's total: other replicas' spend and ours
    counters.add({"a": 0.5})
    assert counters.known(["a", "b"]) == {"a": 10.5, "b": 0.5}


async def test_ledger_flush_failure_keeps_everything(backend: EmbeddedBackend) -> None:
    flaky = Flaky(backend)
    ledger = make_ledger(flaky)
    ledger.add({"team:a": 0.5, "key:x": 0.25})
    ledger.add({"team:a": 0.25, "zero": 0.0})
    assert ledger.pending() == {"team:a": 0.75, "key:x": 0.25}
    flaky.down = True
    assert await ledger.flush() is False
    ledger.add({"team:a": 1.0})
    assert await ledger.flush() is False
    assert ledger.flush_failures == 2
    assert ledger.pending() == {"team:a": 1.75, "key:x": 0.25}
    assert ledger.known(["team:a"]) == {"team:a": 1.75}
    flaky.down = False
    assert await ledger.flush() is True
    assert await ledger.flush() is True  # nothing left: no double count
    assert ledger.pending() == {}
    assert await backend.read_spend(["team:a", "key:x"]) == {"team:a": 1.75, "key:x": 0.25}
    assert ledger.known(["team:a", "key:x"]) == {"team:a": 1.75, "key:x": 0.25}


async def test_ledger_tallies_are_summed_per_group_then_spread_over_their_counters(backend: EmbeddedBackend) -> None:
    flaky = Flaky(backend)
    ledger = make_ledger(flaky)
    keys = [["req:a", "req:all"], ["tok:a", "tok:all"]]
    ledger.tally(("a",), keys, (1, 10))
    ledger.tally(("a",), keys, (1, 0))
    ledger.tally(("b",), [["req:b", "req:all"], ["tok:b", "tok:all"]], (1, 5))
    assert ledger.known(["req:all"]) == {"req:all": 0.0}, "not spread on the request path"
    flaky.down = True
    assert await ledger.flush() is False  # spread, and kept for the next flush
    ledger.tally(("a",), keys, (1, 1))
    assert ledger.pending() == {"req:a": 3, "req:all": 4, "tok:a": 11, "tok:all": 16, "req:b": 1, "tok:b": 5}
    flaky.down = False
    assert await ledger.flush() is True
    totals = await backend.read_spend(["req:a", "req:all", "tok:a", "tok:all", "req:b", "tok:b"])
    assert totals == {"req:a": 3, "req:all": 4, "tok:a": 11, "tok:all": 16, "req:b": 1, "tok:b": 5}
    assert ledger.pending() == {}


async def test_ledger_refresh_at_most_once_per_interval(backend: EmbeddedBackend) -> None:
    clock = Clock()
    flaky = Flaky(backend)
    ledger = make_ledger(flaky, clock)
    await backend.incr_spend({"team:a": 10.0})  # another replica's spend
    assert ledger.known(["team:a"]) == {"team:a": 0.0}
    await ledger.refresh(["team:a"])
    ledger.add({"team:a": 0.5})
    assert ledger.known(["team:a"]) == {"team:a": 10.5}
    await ledger.refresh(["team:a", "team:a"])
    assert flaky.reads == 1
    await ledger.flush()
    assert ledger.known(["team:a"]) == {"team:a": 10.5}  # flushed: counted once
    clock.now += 1.0
    await ledger.refresh(["team:a"])
    assert flaky.reads == 2
    assert ledger.known(["team:a"]) == {"team:a": 10.5}


async def test_ledger_refresh_of_the_same_list_again_is_skipped_only_while_fresh(backend: EmbeddedBackend) -> None:
    clock = Clock()
    flaky = Flaky(backend)
    ledger = make_ledger(flaky, clock)
    keys = ["team:a", "team:b"]  # the budget policy passes one list per principal, again and again
    await ledger.refresh(keys)
    await ledger.refresh(keys)
    assert flaky.reads == 1
    await backend.incr_spend({"team:b": 2.0})
    clock.now += 0.5
    await ledger.refresh(keys)
    assert flaky.reads == 1 and ledger.known(keys) == {"team:a": 0.0, "team:b": 0.0}
    clock.now += 0.5  # the interval is over: the same list is fetched again
    await ledger.refresh(keys)
    assert flaky.reads == 2 and ledger.known(keys) == {"team:a": 0.0, "team:b": 2.0}
    flaky.down = True
    clock.now += 1.0
    with pytest.raises(BackendUnavailable):
        await ledger.refresh(keys)
    with pytest.raises(BackendUnavailable):  # failing fast, never skipped as fresh
        await ledger.refresh(keys)


async def test_ledger_refresh_failure_keeps_old_values_and_fails_fast(backend: EmbeddedBackend) -> None:
    clock = Clock()
    flaky = Flaky(backend)
    ledger = make_ledger(flaky, clock)
    await backend.incr_spend({"team:a": 3.0})
    await ledger.refresh(["team:a"])
    flaky.down = True
    clock.now += 1.0
    with pytest.raises(BackendUnavailable):
        await ledger.refresh(["team:a"])
    assert ledger.known(["team:a"]) == {"team:a": 3.0}
    flaky.down = False
    with pytest.raises(BackendUnavailable):  # within the interval after a failure: no I/O
        await ledger.refresh(["team:a"])
    assert flaky.reads == 2
    clock.now += 1.0
    await ledger.refresh(["team:a"])
    assert flaky.reads == 3


async def test_ledger_background_flush_and_close(backend: EmbeddedBackend) -> None:
    ledger = make_ledger(backend, flush_s=0.01)
    await ledger.start()
    ledger.add({"team:a": 0.5})
    for _ in range(100):
        if await backend.read_spend(["team:a"]) == {"team:a": 0.5}:
            break
        await asyncio.sleep(0.01)
    assert await backend.read_spend(["team:a"]) == {"team:a": 0.5}
    ledger.add({"team:a": 0.25})
    assert await ledger.close() == {}
    assert await backend.read_spend(["team:a"]) == {"team:a": 0.75}


async def test_ledger_close_reports_what_could_not_be_written(backend: EmbeddedBackend) -> None:
    flaky = Flaky(backend)
    ledger = make_ledger(flaky)
    await ledger.start()
    ledger.add({"team:a": 2.0})
    flaky.down = True
    assert await ledger.close(attempts=2, retry_wait_s=0.01) == {"team:a": 2.0}
    assert ledger.flush_failures == 2


# --- the factory -----------------------------------------------------------------------------------


async def test_factory(tmp_path: Path) -> None:
    embedded = create_backend(StateSettings(path=str(tmp_path / "x.db")), cache_max_bytes=1024)
    assert isinstance(embedded, EmbeddedBackend)
    await embedded.aclose()
    redis = create_backend(StateSettings(backend="redis", url="redis://127.0.0.1:1/0"), cache_max_bytes=1024)
    assert isinstance(redis, RedisBackend)
    assert redis.kind == "redis"
    await redis.aclose()
