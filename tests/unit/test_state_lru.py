"""gateway.state.lru: the bounded LRU map and the tuple that hashes once; and the spend
ledger's fetch schedule, which keys its freshness by value and forgets past times."""

from __future__ import annotations

import pytest

from gateway.state.base import BackendUnavailable
from gateway.state.ledger import FetchSchedule
from gateway.state.lru import Hashed, Lru
from tests.unit.fixtures import Clock


def test_an_lru_never_holds_more_than_its_bound_and_evicts_the_oldest() -> None:
    lru: Lru[str, int] = Lru(3)
    for i in range(10):
        lru.put(f"k{i}", i)
        assert len(lru) == min(i + 1, 3)
    assert [k for k in ("k7", "k8", "k9") if k in lru] == ["k7", "k8", "k9"]
    assert "k6" not in lru and lru.get("k0") is None
    assert lru.evictions == 7


def test_a_read_or_a_write_makes_an_entry_the_most_recent() -> None:
    lru: Lru[str, int] = Lru(3)
    for key in ("a", "b", "c"):
        lru.put(key, 1)
    assert lru.get("a") == 1  # read: "b" is now the oldest
    lru.put("d", 1)
    assert "b" not in lru and "a" in lru
    lru.put("c", 2)  # written again: "a" is now the oldest
    lru.put("e", 1)
    assert "a" not in lru and lru.get("c") == 2
    assert len(lru) == 3


def test_put_returns_the_value_and_pop_forgets() -> None:
    lru: Lru[str, list[int]] = Lru(2)
    value = [1]
    assert lru.put("a", value) is value
    assert lru.pop("a") is value
    assert lru.pop("a") is None and "a" not in lru and len(lru) == 0


def test_an_lru_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lru(0)


def test_a_hashed_tuple_is_equal_to_and_hashes_like_its_plain_tuple() -> None:
    made = Hashed(["a", "b"])
    assert made == ("a", "b") and hash(made) == hash(("a", "b"))
    assert isinstance(made, tuple) and list(made) == ["a", "b"]
    lru: Lru[tuple[str, ...], int] = Lru(4)
    lru.put(made, 1)
    assert lru.get(("a", "b")) == 1  # an equal key from elsewhere finds the same entry
    assert lru.get(Hashed(["a", "b"])) == 1
    assert Hashed[str]() == ()


def test_the_fetch_schedule_knows_an_equal_tuple_as_fresh() -> None:
    clock = Clock(100.0)
    schedule = FetchSchedule(1.0, clock)
    keys = ("spend:key:a:2026-11-26", "spend:team:t:2026-11-26")
    schedule.fetched(list(keys), clock.now)
    schedule.remember(keys, list(keys))
    assert schedule.fresh(Hashed(keys)) and schedule.fresh(tuple(keys))  # by value, not by object
    for _ in range(50):  # the same tuple made again and again: one entry
        schedule.remember(Hashed(keys), list(keys))
    assert len(schedule._fresh) == 1
    assert not schedule.fresh(list(keys))  # lists are not remembered (nor looked up)
    clock.now += 1.0
    assert not schedule.fresh(keys)  # the interval is over


def test_the_fetch_schedule_forgets_past_times_without_changing_its_answers() -> None:
    clock = Clock(100.0)
    schedule = FetchSchedule(1.0, clock)
    yesterday = [f"spend:key:k{i}:2026-11-25" for i in range(1000)]
    schedule.fetched(yesterday, clock.now)
    schedule.failed(["spend:key:gone:2026-11-25"], clock.now)
    clock.now += 5.0  # every time above has passed
    today = [f"spend:key:k{i}:2026-11-26" for i in range(1000)]
    schedule.fetched(today, clock.now)
    assert len(schedule._next_fetch) == 1000  # yesterday's swept once the map outgrew its last size
    assert schedule._failed_until == {}
    assert schedule.due([*yesterday[:2], "spend:key:gone:2026-11-25"]) == [
        *yesterday[:2],
        "spend:key:gone:2026-11-25",
    ]  # due, and not failing: as before the sweep
    assert schedule.due(today[:2]) == []
    clock.now += 1.0  # today's keys are due again, and their fetch fails
    schedule.failed(today[:1], clock.now)
    with pytest.raises(BackendUnavailable):
        schedule.due(today[:1])  # failures within the interval still fail fast
