"""moving_window and sliding_window_counter: the ``limits`` library's strategies
on the backend's ``limits`` storage.

:meth:`StrategyLimits.admit` reads every window first (``get_window_stats``),
takes the slots, then hits every window, so a refusal by one scope consumes
nothing of another's quota. ``limits`` has no multi-key transaction: on Redis a
concurrent request may take the last unit between read and hit; the hit is
authoritative (a scope never goes over its limit), and the other hits are rolled
back where the strategy can refund (:class:`Corrections`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from typing import TypeVar, cast

from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import STRATEGIES
from limits.aio.strategies import RateLimiter as _Strategy
from limits.util import WindowStats

from gateway.config.settings import LimitSpec
from gateway.errors import RateLimited
from gateway.policies.ratelimit_core import Admission, Charge, Check, LimiterCore, Scope, slot_key
from gateway.policies.ratelimit_headers import Tightest

T = TypeVar("T")
_Failing = list[tuple[Check, WindowStats]]


class Corrections:
    """Token charges corrected after the fact, as far as the strategy and the
    storage allow. The sliding counter on ``MemoryStorage`` (embedded) ``decr``s
    the bucket it charged while it still counts; the moving window cannot (its
    window is a list of timestamped entries), nor can the sliding counter on Redis
    (its keys shift inside the library's scripts): an over-estimate stays charged
    until it ages out. More than estimated is always charged: into the sliding
    counter's current bucket, else as one more hit (as much as fits, if not all)."""

    def __init__(self, storage: Storage, limiter: _Strategy, strategy: str) -> None:
        sliding = strategy == "sliding_window_counter"
        self._buckets = storage if sliding and isinstance(storage, MemoryStorage) else None
        """The sliding counter's storage where its buckets can be refunded, else None."""
        self._limiter = limiter

    async def adjust(self, charge: Charge, delta: int) -> None:
        """Charge ``delta`` more tokens (> 0) or refund them (< 0) where possible."""
        c = charge.check
        key, expiry, now = c.item.key_for(*c.ids), c.item.get_expiry(), time.time()
        storage = self._buckets
        if storage is not None:
            if delta > 0:
                await storage.incr(storage.sliding_window_keys(key, expiry, now)[1], 2 * expiry, delta)
            else:
                bucket = storage.sliding_window_keys(key, expiry, charge.at)[1]
                if bucket in storage.sliding_window_keys(key, expiry, now):
                    await storage.decr(bucket, -delta)
        elif delta > 0 and not await self._limiter.hit(c.item, *c.ids, cost=delta):
            fits = (await self._limiter.get_window_stats(c.item, *c.ids)).remaining
            if fits > 0:
                await self._limiter.hit(c.item, *c.ids, cost=min(fits, delta))


class StrategyLimits:
    """The limiter's request path with a ``limits`` strategy (a
    :class:`~gateway.policies.ratelimit_core.WindowLimits`): read, take the slots, hit."""

    def __init__(self, core: LimiterCore, strategy: str) -> None:
        self._core = core
        self._backend = core.backend
        self._errors = core.errors
        build = cast(Callable[[Storage], _Strategy], STRATEGIES[strategy.replace("_", "-")])
        self._limiter = build(core.storage)
        self._corrections = Corrections(core.storage, self._limiter, strategy)
        self._parallel = core.backend.kind != "embedded"  # overlap network round trips; in memory, just await

    async def admit(self, scopes: Sequence[Scope], est_tokens: int) -> Admission:
        core = self._core
        ordered = core.ordered(scopes)
        checks = core.checks(ordered, est_tokens)
        limited = [s for s in ordered if s.spec.max_concurrent]
        if not checks and not limited:
            return Admission()
        taken: list[str] = []
        try:
            stats, failing, now = await self._read(checks)
            if failing:
                raise self._refusal(failing, checks, stats, now)
            for scope in limited:
                key = slot_key(scope)
                if not await self._backend.acquire_slot(key, scope.spec.max_concurrent or 0, core.slot_ttl_s):
                    raise core.concurrency_refusal(scope, _headers(checks, stats, now))
                taken.append(key)
            charges, refused = await self._hit(checks, stats)
            if refused:
                raise self._refusal(refused, checks, stats, time.time())
        except self._errors:
            await core.release_slots(taken)
            core.degrade({c.scope.kind for c in checks} | {s.kind for s in limited})
            return Admission()
        except RateLimited:
            await core.release_slots(taken)
            raise
        headers = _headers(checks, stats, now, spent=True)
        admission = Admission([(k.encode(), v.encode()) for k, v in headers.items()], taken)
        admission.charges = [ch for ch in charges if ch.check.unit == "tokens"]
        return admission

    async def try_deployment(
        self, dep_id: str, spec: LimitSpec, est_tokens: int, admission: Admission | None = None
    ) -> bool:
        checks = self._core.checks((Scope("deployment", dep_id, spec),), est_tokens)
        if not checks:
            return True
        try:
            stats, failing, _ = await self._read(checks)
            charges, refused = ([], failing) if failing else await self._hit(checks, stats)
        except self._errors:
            self._core.degrade({"deployment"})
            return True
        if refused:
            self._core.rejections["deployment"] += 1
            return False
        if admission is not None:
            admission.charges += [ch for ch in charges if ch.check.unit == "tokens"]
        return True

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        if admission.settled:
            return
        admission.settled = True
        for charge in admission.charges:
            if delta := max(0, actual_tokens) - charge.check.cost:
                try:
                    await self._corrections.adjust(charge, delta)
                except self._errors:
                    self._core.degraded[charge.check.scope.kind] += 1

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None:
        try:
            if actual_tokens is not None:
                await self.settle(admission, actual_tokens)
        finally:
            keys, admission.slots = admission.slots, []
            await self._core.release_slots(keys)

    async def _read(self, checks: list[Check]) -> tuple[list[WindowStats], _Failing, float]:
        """Every window's stats, and those that cannot take the request (an
        exhausted window refuses even a zero-token estimate)."""
        stats = await self._each(self._limiter.get_window_stats(c.item, *c.ids) for c in checks)
        failing = [(c, s) for c, s in zip(checks, stats, strict=True) if s.remaining < max(c.cost, 1)]
        return stats, failing, time.time()

    async def _each(self, aws: Iterable[Awaitable[T]]) -> list[T]:
        """Await in turn (lazily: an error leaves nothing un-awaited), or all at once on a network backend."""
        if not self._parallel:
            return [await aw for aw in aws]
        results = await asyncio.gather(*aws, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]  # no exceptions left

    async def _hit(self, checks: list[Check], stats: list[WindowStats]) -> tuple[list[Charge], _Failing]:
        """Hit every window; if one refuses (raced since the check), roll back
        the others where possible and return the refused ones."""
        todo = [(c, s) for c, s in zip(checks, stats, strict=True) if c.cost > 0]
        head = 0
        if self._parallel and len(todo) > 1:  # near its limit, the tightest window alone first
            todo.sort(key=lambda cs: (cs[1].remaining - cs[0].cost) / cs[0].item.amount)
            head = int((todo[0][1].remaining - todo[0][0].cost) * 10 < todo[0][0].item.amount)
        at = time.time()
        results: list[bool] = []
        for batch in (todo[:head], todo[head:]):
            if all(results):
                results += await self._each(self._limiter.hit(c.item, *c.ids, cost=c.cost) for c, _ in batch)
        charges = [Charge(c, at) for (c, _), ok in zip(todo, results, strict=False) if ok]
        refused = [cs for cs, ok in zip(todo, results, strict=False) if not ok]
        if refused:
            with suppress(*self._errors):  # best effort: the refusal stands either way
                for charge in charges:
                    await self._corrections.adjust(charge, -charge.check.cost)
            return [], refused
        return charges, []

    def _refusal(self, failing: _Failing, checks: list[Check], stats: list[WindowStats], now: float) -> RateLimited:
        retry_after = max(max(1.0, s.reset_time - now) for _, s in failing)
        return self._core.window_refusal(failing[0][0], retry_after, _headers(checks, stats, now))


def _headers(checks: list[Check], stats: list[WindowStats], now: float, *, spent: bool = False) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, per unit from the scope with the fewest remaining."""
    tightest = Tightest()
    for c, s in zip(checks, stats, strict=True):
        remaining = max(0, s.remaining - c.cost) if spent else s.remaining
        reset_in = s.reset_time - now if s.reset_time > now else c.item.get_expiry()
        tightest.offer(c.unit, remaining, int(c.item.amount), reset_in)
    return tightest.headers()
