"""gateway.policies.admission: the admission queue's order (priority classes, weighted
fair shares between teams, first come first served), its limits (depth, estimate, wait)
and a waiter that leaves. The capacity the waiters compete for is a counter of free
slots, as the rate limiter's concurrency slots are."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from gateway.config.queue import QueueSettings
from gateway.policies.admission import AdmissionQueue, Full, Place, Shed


class Hooks:
    def __init__(self) -> None:
        self.depth: Counter[tuple[str, str]] = Counter()
        self.waits: list[tuple[str, str, float]] = []
        self.sheds: list[tuple[str, str, str]] = []

    def waiting(self, alias: str, priority: str, delta: int) -> None:
        self.depth[(alias, priority)] += delta

    def waited(self, alias: str, priority: str, seconds: float) -> None:
        self.waits.append((alias, priority, seconds))

    def shed(self, alias: str, priority: str, reason: str) -> None:
        self.sheds.append((alias, priority, reason))


class Slots:
    """``free`` places; taking one when none is free raises Full (everyone: a shared cap)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.order: list[str] = []

    def taker(self, name: str):  # type: ignore[no-untyped-def]
        async def take() -> str:
            if self.free <= 0:
                raise Full(RuntimeError("full"), everyone=True)
            self.free -= 1
            self.order.append(name)
            return name

        return take

    async def give_back(self, name: str) -> None:
        self.free += 1


def settings(**kw: object) -> QueueSettings:
    return QueueSettings.model_validate({"poll_interval_s": 5, **kw})


def place(klass: str = "normal", team: str = "t", weight: float = 1.0, wait: float = 5.0) -> Place:
    rank = ["critical", "high", "normal", "low"].index(klass)
    return Place(rank, klass, team, weight, "alias", wait)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_higher_classes_go_first_then_first_come() -> None:
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(), hooks)
    names = [("low", "l1"), ("normal", "n1"), ("high", "h1"), ("low", "l2"), ("high", "h2")]
    tasks = [asyncio.create_task(queue.wait(place(k), slots.taker(n), slots.give_back)) for k, n in names]
    await settle()
    assert queue.depth == 5 and hooks.depth[("alias", "high")] == 2
    for _ in names:
        slots.free += 1
        queue.wake()
        await settle()
    assert await asyncio.gather(*tasks) == [n for _, n in names]
    assert slots.order == ["h1", "h2", "n1", "l1", "l2"]
    assert queue.depth == 0 and all(v == 0 for v in hooks.depth.values())
    assert [w[1] for w in hooks.waits] == ["high", "high", "normal", "low", "low"]


async def test_teams_share_by_weight_whatever_they_send() -> None:
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(), hooks)
    tasks = [asyncio.create_task(queue.wait(place(team="big"), slots.taker(f"b{i}"))) for i in range(40)]
    tasks += [asyncio.create_task(queue.wait(place(team="small", weight=2.0), slots.taker(f"s{i}"))) for i in range(6)]
    await settle()
    slots.free = 9
    queue.wake()
    await settle()
    # weight 2 against 1: two of the small team's for every one of the big team's
    assert Counter(n[0] for n in slots.order) == {"s": 6, "b": 3}
    assert [n for n in slots.order if n[0] == "b"] == ["b0", "b1", "b2"]  # first come first served inside a team
    slots.free = 100
    queue.wake()
    await asyncio.gather(*tasks)


async def test_a_team_that_starts_waiting_banks_no_credit() -> None:
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(), hooks)
    first = [asyncio.create_task(queue.wait(place(team="a"), slots.taker(f"a{i}"))) for i in range(6)]
    await settle()
    slots.free = 4
    queue.wake()
    await settle()
    late = [asyncio.create_task(queue.wait(place(team="b"), slots.taker(f"b{i}"))) for i in range(4)]
    await settle()
    slots.free = 4
    queue.wake()
    await settle()
    # team b joined at team a's turn: they alternate from there, b does not take all four
    assert slots.order[4:] == ["a4", "b0", "a5", "b1"] or slots.order[4:] == ["b0", "a4", "b1", "a5"]
    slots.free = 10
    queue.wake()
    await asyncio.gather(*first, *late)


async def test_a_refusal_for_one_waiter_does_not_stop_the_others() -> None:
    hooks = Hooks()
    queue = AdmissionQueue(settings(), hooks)
    order: list[str] = []
    blocked = True

    async def own_cap() -> str:  # the waiter's own key is full: only it is held back
        if blocked:
            raise Full(RuntimeError("key full"))
        order.append("keyed")
        return "keyed"

    async def free() -> str:
        order.append("free")
        return "free"

    held = asyncio.create_task(queue.wait(place("high"), own_cap))
    await settle()
    assert await queue.wait(place("low"), free) == "free"
    blocked = False
    queue.wake()
    assert await held == "keyed"
    assert order == ["free", "keyed"]


async def test_a_waiter_past_its_limit_is_shed_with_its_refusal() -> None:
    hooks = Hooks()
    queue = AdmissionQueue(settings(), hooks)
    refusal = RuntimeError("the cap's own refusal")

    async def never() -> str:
        raise Full(refusal)

    with pytest.raises(Shed) as shed:
        await queue.wait(place(wait=0.05), never)
    assert shed.value.reason == "timeout" and shed.value.refusal is refusal and shed.value.retry_after >= 1
    assert hooks.sheds == [("alias", "normal", "timeout")]
    assert queue.depth == 0 and hooks.depth[("alias", "normal")] == 0


async def test_a_full_queue_sheds_at_once() -> None:
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(max_depth=2), hooks)
    tasks = [asyncio.create_task(queue.wait(place(), slots.taker(str(i)))) for i in range(2)]
    await settle()
    with pytest.raises(Shed) as shed:
        await queue.wait(place(), slots.taker("third"))
    assert shed.value.reason == "queue_full"
    slots.free = 2
    queue.wake()
    await asyncio.gather(*tasks)


async def test_the_estimate_sheds_what_would_wait_too_long() -> None:
    clock = [100.0]
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(), hooks, clock=lambda: clock[0])
    tasks = [asyncio.create_task(queue.wait(place(wait=30), slots.taker(str(i)))) for i in range(5)]
    await settle()
    for _ in range(2):  # one admission every 2 s
        clock[0] += 2.0
        slots.free += 1
        queue.wake()
        await settle()
    assert queue.estimate(2) == pytest.approx(4 * 2.0)  # three ahead, then this one
    with pytest.raises(Shed) as shed:
        await queue.wait(place(wait=5.0), slots.taker("late"))
    assert shed.value.reason == "deadline" and shed.value.retry_after == pytest.approx(8.0)
    assert queue.estimate(1) == pytest.approx(2.0)  # a higher class waits behind nobody
    slots.free = 10
    queue.wake()
    await asyncio.gather(*tasks)


async def test_a_waiter_that_leaves_frees_its_place_and_hands_back_what_it_was_given() -> None:
    hooks, slots = Hooks(), Slots(0)
    queue = AdmissionQueue(settings(), hooks)
    leaving = asyncio.create_task(queue.wait(place("high"), slots.taker("leaving"), slots.give_back))
    staying = asyncio.create_task(queue.wait(place("low"), slots.taker("staying"), slots.give_back))
    await settle()
    leaving.cancel()
    await settle()
    assert hooks.sheds == [("alias", "high", "disconnected")]
    slots.free = 1
    queue.wake()
    assert await staying == "staying"  # the place went to the one still there

    gate = asyncio.Event()

    async def slow() -> str:  # admitted while its client goes away
        await gate.wait()
        return "given"

    given_back: list[str] = []

    async def undo(name: str) -> None:
        given_back.append(name)

    gone = asyncio.create_task(queue.wait(place(), slow, undo))
    await settle()
    gone.cancel()
    gate.set()
    await settle()
    assert given_back == ["given"]
    assert queue.depth == 0


async def test_another_error_reaches_its_waiter_only() -> None:
    queue = AdmissionQueue(settings(), Hooks())
    slots = Slots(0)

    async def broken() -> str:
        raise ValueError("backend said no")

    other = asyncio.create_task(queue.wait(place("low"), slots.taker("other")))
    await settle()
    with pytest.raises(ValueError, match="backend said no"):
        await queue.wait(place("high"), broken)
    slots.free = 1
    queue.wake()
    assert await other == "other"


async def test_polling_finds_capacity_freed_elsewhere() -> None:
    queue = AdmissionQueue(settings(poll_interval_s=0.01), Hooks())
    slots = Slots(0)
    task = asyncio.create_task(queue.wait(place(), slots.taker("polled")))
    await asyncio.sleep(0.03)
    slots.free = 1  # freed without a wake(): another replica's request ended
    assert await asyncio.wait_for(task, 1) == "polled"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="default_class 'gold' is not one of classes"):
        QueueSettings.model_validate({"default_class": "gold"})
    with pytest.raises(ValueError, match="unique"):
        QueueSettings.model_validate({"classes": ["a", "a"], "default_class": "a"})
    assert QueueSettings().rank("nope") == (2, "normal") and QueueSettings().rank("critical") == (0, "critical")
