"""The admission queue: a request that finds no place (a concurrency cap of the gateway,
its team, its key or its alias is full, or no deployment of its alias has capacity) waits
here for one instead of being refused at once.

Order: a waiter of a higher priority class always goes first; inside a class, teams take
turns by weighted fair sharing (each admission advances its team's virtual time by
``1 / weight``, the team furthest behind goes next, and a team that starts waiting joins at
the others' virtual time, so idling banks no credit); inside a team, first come first
served. While anyone waits, newcomers queue behind them rather than take a place freed a
moment ago.

Places are offered by passes: a pass tries the waiters in that order, each with its own
``attempt`` (the same check that refused it), admits those that now fit and stops at a
refusal that holds for everyone (a gateway-wide cap). A pass runs when this process frees
a place (:meth:`AdmissionQueue.wake`) and every ``poll_interval_s`` while anyone waits:
capacity freed where this process cannot see it (another replica's requests on a shared
Redis, a window rolling over, an upstream's pacing ending) is found that way. Caps stay
global across replicas (they live in the state backend); each replica orders its own
waiters, so priority and fair share hold per replica.

A waiter leaves with a :class:`Shed` when it would wait past its limit (``deadline``: the
queue's estimate, from the recent pace of admissions, says so at once; ``timeout``: its
limit passed), when the queue is full (``queue_full``), or when its client goes away
(``disconnected``: the task is cancelled; the place it may have been given meanwhile is
handed back with ``undo``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gateway.config.queue import QueueSettings

T = TypeVar("T")
log = logging.getLogger("gateway.queue")

INTERVAL_EWMA_ALPHA = 0.2
MAX_TRIES_PER_PASS = 256
"""Waiters one pass tries at most (the rest wait for the next pass)."""


class Full(Exception):
    """What an attempt raises when there is still no place: ``refusal`` is the error the
    client gets if it never finds one; ``everyone`` when no other waiter can pass either."""

    def __init__(self, refusal: Exception, *, everyone: bool = False) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal
        self.everyone = everyone


class Shed(Exception):
    """The queue gave up on a request: ``reason`` (queue_full, deadline, timeout),
    ``retry_after`` (seconds, the estimate), ``refusal`` (the last ``Full.refusal``)."""

    def __init__(self, reason: str, retry_after: float, refusal: Exception | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class Place:
    """Who asks for a place: its priority class (``rank`` 0 is the highest), team and the
    team's share weight, the alias (a metric label), and how long it may wait."""

    rank: int
    klass: str
    team: str
    weight: float
    alias: str
    max_wait_s: float


class QueueHooks(Protocol):
    """Where the queue reports (gateway/observability/shaping_metrics.py)."""

    def waiting(self, alias: str, priority: str, delta: int) -> None: ...

    def waited(self, alias: str, priority: str, seconds: float) -> None: ...

    def shed(self, alias: str, priority: str, reason: str) -> None: ...


class _Waiter(Generic[T]):
    __slots__ = ("attempt", "future", "place", "refusal", "seq", "since", "undo")

    def __init__(
        self,
        place: Place,
        attempt: Callable[[], Awaitable[T]],
        undo: Callable[[T], Awaitable[None]] | None,
        seq: int,
        since: float,
    ) -> None:
        self.place = place
        self.attempt = attempt
        self.undo = undo
        self.seq = seq
        self.since = since
        self.future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.refusal: Exception | None = None


class _Lines:
    """The waiters, by class and team, and the teams' virtual times (the order of the
    module docstring)."""

    def __init__(self) -> None:
        self.ranks: dict[int, dict[str, deque[_Waiter[Any]]]] = {}
        self.vt: dict[str, float] = {}
        self.depth = 0

    def ahead(self, rank: int) -> int:
        """Waiters of class ``rank`` or higher."""
        return sum(len(d) for r, teams in self.ranks.items() if r <= rank for d in teams.values())

    def add(self, waiter: _Waiter[Any]) -> None:
        place = waiter.place
        teams = self.ranks.setdefault(place.rank, {})
        line = teams.get(place.team)
        if line is None:
            # A team that starts waiting joins at the virtual time of those already waiting.
            floor = min((self.vt.get(t, 0.0) for t in teams), default=None)
            if floor is not None:
                self.vt[place.team] = max(self.vt.get(place.team, 0.0), floor)
            line = teams[place.team] = deque()
        line.append(waiter)
        self.depth += 1

    def remove(self, waiter: _Waiter[Any]) -> bool:
        """Take ``waiter`` out; False when it was not in (already out)."""
        place = waiter.place
        teams = self.ranks.get(place.rank)
        line = teams.get(place.team) if teams is not None else None
        if teams is None or line is None or waiter not in line:
            return False
        line.remove(waiter)
        self.depth -= 1
        if not line:
            del teams[place.team]
            if not teams:
                del self.ranks[place.rank]
        return True

    def served(self, place: Place) -> None:
        self.vt[place.team] = self.vt.get(place.team, 0.0) + 1 / place.weight
        if not self.depth and len(self.vt) > 10_000:
            self.vt.clear()  # nobody waits: the teams' turns start afresh

    def order(self) -> Iterator[_Waiter[Any]]:
        """The waiters in the order places are offered, lazily (each team's line as it
        was when the pass began)."""
        for rank in sorted(self.ranks):
            teams = self.ranks.get(rank)
            if not teams:
                continue
            heap: list[tuple[float, int, str, int]] = []
            for team, line in teams.items():
                first = line[0]
                heap.append((self.vt.get(team, 0.0) + 1 / first.place.weight, first.seq, team, 0))
            heapq.heapify(heap)
            snapshot = {team: list(line) for team, line in teams.items()}
            while heap:
                finish, _, team, i = heapq.heappop(heap)
                taken = snapshot[team]
                yield taken[i]
                if i + 1 < len(taken):
                    nxt = taken[i + 1]
                    heapq.heappush(heap, (finish + 1 / nxt.place.weight, nxt.seq, team, i + 1))


class _Pace:
    """Seconds between two admissions from the queue, smoothed: the estimate's pace."""

    __slots__ = ("interval", "last")

    def __init__(self) -> None:
        self.interval: float | None = None
        self.last: float | None = None

    def admitted(self, now: float) -> None:
        if self.last is not None:
            gap, prev = now - self.last, self.interval
            self.interval = gap if prev is None else prev + INTERVAL_EWMA_ALPHA * (gap - prev)
        self.last = now


class AdmissionQueue:
    """One per process (traffic control carries it over a reload); see the module docstring."""

    def __init__(self, settings: QueueSettings, hooks: QueueHooks, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._hooks = hooks
        self._clock = clock
        self._lines = _Lines()
        self._seq = 0
        self._pace = _Pace()
        self._pass: asyncio.Task[None] | None = None
        self._again = False
        self._poll: asyncio.TimerHandle | None = None

    @property
    def depth(self) -> int:
        """Requests waiting now."""
        return self._lines.depth

    def estimate(self, rank: int) -> float | None:
        """Seconds a newcomer of class ``rank`` would wait, from the recent pace of
        admissions; None while the queue has admitted nobody yet."""
        interval = self._pace.interval
        return None if interval is None else (self._lines.ahead(rank) + 1) * interval

    async def wait(
        self,
        place: Place,
        attempt: Callable[[], Awaitable[T]],
        undo: Callable[[T], Awaitable[None]] | None = None,
        refusal: Exception | None = None,
    ) -> T:
        """Wait for a place: ``attempt()`` returns what admission gives, or raises
        :class:`Full`; ``undo(result)`` hands back a place given to a waiter that left
        meanwhile. ``refusal``: what the client gets if it never finds one (when the
        caller already tried). Raises :class:`Shed` when the queue gives up."""
        hooks, klass = self._hooks, place.klass
        if self._lines.depth >= self.settings.max_depth:
            hooks.shed(place.alias, klass, "queue_full")
            raise Shed("queue_full", self._retry_after(place), refusal)
        guess = self.estimate(place.rank)
        if guess is not None and guess > place.max_wait_s:
            hooks.shed(place.alias, klass, "deadline")
            raise Shed("deadline", guess, refusal)
        now = self._clock()
        self._seq += 1
        waiter = _Waiter(place, attempt, undo, self._seq, now)
        waiter.refusal = refusal
        self._enqueue(waiter)
        hooks.waiting(place.alias, klass, 1)
        self.wake()
        try:
            result = await asyncio.wait_for(asyncio.shield(waiter.future), place.max_wait_s)
        except TimeoutError:
            if self._leave(waiter):
                hooks.shed(place.alias, klass, "timeout")
                raise Shed("timeout", self._retry_after(place), waiter.refusal) from None
            result = waiter.future.result()  # admitted as the limit passed
        except asyncio.CancelledError:
            if self._leave(waiter):
                hooks.shed(place.alias, klass, "disconnected")
            elif not waiter.future.cancelled() and waiter.future.exception() is None:
                await _undo(waiter, waiter.future.result())  # given a place as its client left: hand it back
            raise
        hooks.waited(place.alias, klass, self._clock() - now)
        return result

    def refused(self, place: Place, reason: str) -> None:
        """Count a request its caller did not let wait (it knows the wait is too long)."""
        self._hooks.shed(place.alias, place.klass, reason)

    def wake(self) -> None:
        """A place may have been freed: offer it (a pass soon, unless one is running,
        which then goes round once more)."""
        if not self._lines.depth:
            return
        if self._pass is not None and not self._pass.done():
            self._again = True
            return
        self._pass = asyncio.get_running_loop().create_task(self._passes())

    def _retry_after(self, place: Place) -> float:
        guess = self.estimate(place.rank)
        return max(1.0, guess if guess is not None else place.max_wait_s)

    def _enqueue(self, waiter: _Waiter[Any]) -> None:
        if not self._lines.depth:  # the pace of admissions is measured while someone waits
            self._pace.last = waiter.since
        self._lines.add(waiter)
        self._arm_poll()

    def _leave(self, waiter: _Waiter[Any]) -> bool:
        """Take ``waiter`` out of its line; False when a pass already admitted it."""
        if waiter.future.done() and not waiter.future.cancelled():
            return False
        if not waiter.future.done():
            waiter.future.cancel()
        self._remove(waiter)
        return True

    def _remove(self, waiter: _Waiter[Any]) -> None:
        if self._lines.remove(waiter):
            self._hooks.waiting(waiter.place.alias, waiter.place.klass, -1)

    async def _passes(self) -> None:
        while True:
            self._again = False
            await self._offer()
            if not self._again or not self._lines.depth:
                return

    async def _offer(self) -> None:
        tries = 0
        for waiter in self._lines.order():
            if waiter.future.done():
                continue
            tries += 1
            if tries > MAX_TRIES_PER_PASS:
                return
            try:
                result = await waiter.attempt()
            except Full as full:
                waiter.refusal = full.refusal
                if full.everyone:
                    return
                continue
            except Exception as exc:  # the attempt failed otherwise: that waiter's error
                self._remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
                continue
            if waiter.future.done():  # it left while its attempt ran
                await _undo(waiter, result)
                continue
            self._remove(waiter)
            self._lines.served(waiter.place)
            self._pace.admitted(self._clock())
            waiter.future.set_result(result)

    def _arm_poll(self) -> None:
        if self._poll is None:
            self._poll = asyncio.get_running_loop().call_later(self.settings.poll_interval_s, self._tick)

    def _tick(self) -> None:
        self._poll = None
        if self._lines.depth:
            self.wake()
            self._arm_poll()


def wait_limit(settings: QueueSettings, asked_s: float | None) -> float:
    """How long a request may wait: the configured limit, or less if its client asked."""
    limit = settings.max_wait_s if settings.enabled else 0.0
    return limit if asked_s is None else max(0.0, min(limit, asked_s))


async def _undo(waiter: _Waiter[T], result: T) -> None:
    if waiter.undo is None:
        return
    try:
        await waiter.undo(result)
    except Exception:  # the place's TTL frees it; the queue goes on
        log.exception("admission queue: handing back the place of a request that left failed")


def retry_after_s(seconds: float) -> int:
    """A Retry-After header's whole seconds (at least 1)."""
    return max(1, math.ceil(seconds))
