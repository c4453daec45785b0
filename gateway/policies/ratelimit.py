"""Rate limits: requests and tokens per window, and concurrency, per scope.

A request is checked against each limited scope it belongs to (global, team,
key, model alias) and, as the router picks one, against the deployment's
provider quota (:meth:`RateLimiter.try_deployment`).

**fixed_window (the default)**: the state backend charges every window of the
request at once, or none (:mod:`gateway.policies.windows`: in-memory counters,
or one Lua script on Redis), then the concurrency slots are taken; a refusal
for concurrency gives the window charges back. Atomic, so there is no race.
Token estimates are corrected by :meth:`RateLimiter.settle` in one more backend
operation: more than estimated is charged in full, less is refunded while the
charged window is still the current one.

**moving_window, sliding_window_counter**: the ``limits`` strategies on the
backend's ``limits`` storage. ``admit`` reads every window first
(``get_window_stats``), takes the slots, then hits every window, so a refusal by
one scope consumes nothing of another's quota. ``limits`` has no multi-key
transaction: on Redis a concurrent request may take the last unit between read
and hit; the hit is authoritative (a scope never goes over its limit), and the
other hits are rolled back where the strategy can refund. Refunds of token
over-estimates: the sliding counter on ``MemoryStorage`` (embedded) ``decr``s
the bucket it charged while it still counts; the moving window cannot (its
window is a list of timestamped entries), nor can the sliding counter on Redis
(its keys shift inside the library's scripts): the over-estimate stays charged
until it ages out. The moving window keeps one entry per unit, so for TPM one
per token: memory and time grow with the limit; prefer the others for tokens.

Backend errors (``BackendUnavailable``, ``limits`` storage and connection
errors) follow the failure mode: ``open`` admits and counts ``degraded[kind]``,
``closed`` raises :class:`~gateway.errors.BackendDegraded` (503).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeVar, cast

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import STRATEGIES
from limits.aio.strategies import RateLimiter as _Strategy
from limits.errors import StorageError
from limits.util import WindowStats

from gateway.config.settings import LimitSpec, LimitsSettings
from gateway.errors import BackendDegraded, RateLimited
from gateway.policies.ratelimit_headers import Tightest
from gateway.policies.windows import Counted, FixedWindows, Window
from gateway.state.base import BackendUnavailable, SlotSpec, StateBackend, WindowAdjust, WindowHit, WindowSpec

T = TypeVar("T")
_ORDER = MappingProxyType({"global": 0, "team": 1, "key": 2, "model": 3, "deployment": 4})
_REFUND_MARGIN_S = 0.25  # a fixed window's end is known to ~1 s on Redis (TTL); stay clear of it


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str
    """"global", "team", "key", "model" or "deployment"."""
    id: str
    spec: LimitSpec


class _Check(NamedTuple):
    scope: Scope
    unit: str  # "requests" | "tokens"
    item: RateLimitItem
    cost: int

    @property
    def ids(self) -> tuple[str, str, str]:
        return (self.scope.kind, self.scope.id, self.unit)


class _Charge(NamedTuple):
    check: _Check
    at: float  # when it was hit
    window_end: float  # fixed window: when the charged window ends


@dataclass(frozen=True, slots=True)
class _PlannedWindow:
    scope: Scope
    unit: str
    item: RateLimitItem
    key: str  # the backend's window key
    period_s: float
    limit: int
    spec: WindowSpec | None
    """The charge of a requests window (always 1), built once; tokens windows vary per request."""


class _Charged(NamedTuple):
    """A token charge of an admitted request, for its correction at the end."""

    kind: str  # the scope's, for the degraded count
    key: str
    period_s: float
    cost: int
    window_end: float


@dataclass(frozen=True, slots=True)
class _FixedPlan:
    """What the fixed-window admission of one scope list charges, worked out
    once per list (the traffic policy keeps one list per principal and route)."""

    scopes: Sequence[Scope]
    ordered: list[Scope]
    windows: list[_PlannedWindow]
    slots: list[SlotSpec]
    limited: list[Scope]
    slot_keys: list[str]


class Admission:
    """An admitted request: its headers, and what :meth:`RateLimiter.settle`
    and :meth:`RateLimiter.release` undo or correct."""

    __slots__ = ("_charges", "_counted", "_settled", "_slots", "wire")

    def __init__(self, wire: list[tuple[bytes, bytes]] | None = None, slots: list[str] | None = None) -> None:
        self.wire: list[tuple[bytes, bytes]] = wire if wire is not None else []
        """OpenAI's x-ratelimit-* headers, encoded for the response."""
        self._slots = slots or []
        self._charges: list[_Charge] = []
        self._counted: list[_Charged] = []  # fixed windows: token charges
        self._settled = False

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode(): value.decode() for name, value in self.wire}


class RateLimiter:
    """One per app. The global scope (from ``settings``) is added here: callers
    pass the team, key and model scopes."""

    def __init__(
        self,
        backend: StateBackend,
        settings: LimitsSettings,
        failure_mode: Literal["open", "closed"],
        *,
        period_s: int = 60,
        slot_ttl_s: float = 600.0,
    ) -> None:
        self._backend = backend
        self._storage = backend.limits_storage()
        self._strategy = settings.strategy
        strategy = cast(Callable[[Storage], _Strategy], STRATEGIES[settings.strategy.replace("_", "-")])
        self._limiter = strategy(self._storage)
        self._open = failure_mode == "open"
        self._period_s = period_s  # rpm/tpm windows; tests use 1
        self._slot_ttl_s = slot_ttl_s
        self._parallel = backend.kind != "embedded"  # overlap network round trips; in memory, just await
        errors: tuple[type[BaseException], ...] = (BackendUnavailable, StorageError, OSError)
        if not isinstance(self._storage, MemoryStorage):  # whose base exception, ValueError, means a bug
            base = self._storage.base_exceptions
            errors += base if isinstance(base, tuple) else (base,)
        self._errors = errors
        self._items: dict[int, RateLimitItem] = {}  # one per amount: no parsing per request
        self._fixed = FixedWindows(backend) if settings.strategy == "fixed_window" else None
        self._plans: dict[int, _FixedPlan] = {}
        spec = LimitSpec(rpm=settings.rpm, tpm=settings.tpm, max_concurrent=settings.max_concurrent)
        self._global = (Scope("global", "*", spec),) if settings.rpm or settings.tpm or settings.max_concurrent else ()
        self.degraded: Counter[str] = Counter()  # decisions taken in failure mode, by scope kind
        self.rejections: Counter[str] = Counter()  # 429s by scope kind (deployment: skips)

    async def admit(self, scopes: Sequence[Scope], est_tokens: int) -> Admission:
        if self._fixed is not None:
            return await self._admit_planned(self._plan(scopes), est_tokens)
        ordered = sorted((*self._global, *scopes), key=lambda s: _ORDER.get(s.kind, 9))
        checks = self._checks(ordered, est_tokens)
        limited = [s for s in ordered if s.spec.max_concurrent]
        if not checks and not limited:
            return Admission()
        taken: list[str] = []
        try:
            stats, failing, now = await self._read(checks)
            if failing:
                raise self._rejection(failing, checks, stats, now)
            for scope in limited:
                key = _slot_key(scope)
                if not await self._backend.acquire_slot(key, scope.spec.max_concurrent or 0, self._slot_ttl_s):
                    self.rejections[scope.kind] += 1
                    what = f"{scope.spec.max_concurrent} concurrent requests"
                    raise RateLimited(_message(scope, what), retry_after=1.0, headers=_headers(checks, stats, now))
                taken.append(key)
            charges, refused = await self._hit(checks, stats)
            if refused:
                raise self._rejection(refused, checks, stats, time.time())
        except self._errors:
            await self._release_keys(taken)
            self._degrade({c.scope.kind for c in checks} | {s.kind for s in limited})
            return Admission()
        except RateLimited:
            await self._release_keys(taken)
            raise
        headers = _headers(checks, stats, now, spent=True)
        admission = Admission([(k.encode(), v.encode()) for k, v in headers.items()], taken)
        admission._charges = [ch for ch in charges if ch.check.unit == "tokens"]
        return admission

    async def try_deployment(
        self, dep_id: str, spec: LimitSpec, est_tokens: int, admission: Admission | None = None
    ) -> bool:
        """Charge a deployment's rpm/tpm, or False (nothing charged) at its limit:
        the router skips it. With ``admission``, ``settle`` corrects its tokens
        too. (Deployment concurrency is its ``max_concurrency``, the router's.)"""
        checks = self._checks((Scope("deployment", dep_id, spec),), est_tokens)
        if not checks:
            return True
        if self._fixed is not None:
            return await self._deployment_fixed(self._fixed, checks, admission)
        try:
            stats, failing, _ = await self._read(checks)
            charges, refused = ([], failing) if failing else await self._hit(checks, stats)
        except self._errors:
            self._degrade({"deployment"})
            return True
        if refused:
            self.rejections["deployment"] += 1
            return False
        if admission is not None:
            admission._charges += [ch for ch in charges if ch.check.unit == "tokens"]
        return True

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        """Correct the token charges by the actual count (once; later calls do nothing)."""
        if self._fixed is not None:
            await self._finish_fixed(admission, actual_tokens, [])
            return
        if admission._settled:
            return
        admission._settled = True
        for charge in admission._charges:
            if delta := max(0, actual_tokens) - charge.check.cost:
                try:
                    await self._adjust(charge, delta)
                except self._errors:
                    self.degraded[charge.check.scope.kind] += 1

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None:
        """:meth:`settle` (unless ``actual_tokens`` is None) and :meth:`release`;
        with fixed windows, in one backend operation."""
        if self._fixed is not None:
            keys, admission._slots = admission._slots, []
            await self._finish_fixed(admission, actual_tokens, keys)
            return
        try:
            if actual_tokens is not None:
                await self.settle(admission, actual_tokens)
        finally:
            await self.release(admission)

    async def _finish_fixed(self, admission: Admission, actual_tokens: int | None, release: list[str]) -> None:
        """The token corrections (once per admission) and the slots ``release``, in one backend operation."""
        corrections: list[WindowAdjust] = []
        if actual_tokens is not None and not admission._settled:
            admission._settled = True
            actual = max(0, actual_tokens)
            corrections = [
                WindowAdjust(c.key, c.period_s, actual - c.cost, c.window_end)
                for c in admission._counted
                if actual != c.cost
            ]
        if not corrections and not release:
            return
        try:
            await self._backend.adjust_windows(corrections, release)
        except self._errors:  # the slots' TTL frees them; the token charges stay estimates
            for key in release:
                self.degraded[key.split("/")[1]] += 1
            for charged in admission._counted if corrections else ():
                self.degraded[charged.kind] += 1

    async def release(self, admission: Admission) -> None:
        """Give back the concurrency slots; idempotent."""
        keys, admission._slots = admission._slots, []
        await self._release_keys(keys)

    # --- internals -------------------------------------------------------------
    def _checks(self, scopes: Iterable[Scope], est_tokens: int) -> list[_Check]:
        checks = []
        for scope in scopes:
            for unit, amount, cost in (("requests", scope.spec.rpm, 1), ("tokens", scope.spec.tpm, est_tokens)):
                if amount:
                    item = self._items.get(amount) or self._items.setdefault(
                        amount, RateLimitItemPerSecond(amount, self._period_s)
                    )
                    checks.append(_Check(scope, unit, item, max(0, cost)))
        return checks

    async def _read(self, checks: list[_Check]) -> tuple[list[WindowStats], list[tuple[_Check, WindowStats]], float]:
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

    async def _hit(
        self, checks: list[_Check], stats: list[WindowStats]
    ) -> tuple[list[_Charge], list[tuple[_Check, WindowStats]]]:
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
        charges = [  # a fixed window's end: from its stats; a window this hit opens ends one period from now
            _Charge(
                c, at, at + c.item.get_expiry() if s.reset_time <= at and s.remaining == c.item.amount else s.reset_time
            )
            for (c, s), ok in zip(todo, results, strict=False)
            if ok or self._strategy == "fixed_window"  # a fixed window counts even a refused hit
        ]
        refused = [cs for cs, ok in zip(todo, results, strict=False) if not ok]
        if refused:
            with suppress(*self._errors):  # best effort: the refusal stands either way
                for charge in charges:
                    await self._adjust(charge, -charge.check.cost)
            return [], refused
        return charges, []

    async def _adjust(self, charge: _Charge, delta: int) -> None:
        """Charge ``delta`` more tokens (> 0) or refund them (< 0) where possible; see the module doc."""
        c = charge.check
        key, expiry, now = c.item.key_for(*c.ids), c.item.get_expiry(), time.time()
        if self._strategy == "fixed_window":
            if delta > 0 or now < charge.window_end - _REFUND_MARGIN_S:
                await self._storage.incr(key, expiry, delta)
        elif self._strategy == "sliding_window_counter" and isinstance(self._storage, MemoryStorage):
            if delta > 0:
                await self._storage.incr(self._storage.sliding_window_keys(key, expiry, now)[1], 2 * expiry, delta)
            else:
                bucket = self._storage.sliding_window_keys(key, expiry, charge.at)[1]
                if bucket in self._storage.sliding_window_keys(key, expiry, now):
                    await self._storage.decr(bucket, -delta)
        elif delta > 0 and not await self._limiter.hit(c.item, *c.ids, cost=delta):
            fits = (await self._limiter.get_window_stats(c.item, *c.ids)).remaining
            if fits > 0:
                await self._limiter.hit(c.item, *c.ids, cost=min(fits, delta))

    # --- fixed windows: every window charged at once by the backend (windows.py) ---
    def _plan(self, scopes: Sequence[Scope]) -> _FixedPlan:
        plan = self._plans.get(id(scopes))
        if plan is not None and plan.scopes is scopes:
            return plan
        assert self._fixed is not None
        ordered = sorted((*self._global, *scopes), key=lambda s: _ORDER.get(s.kind, 9))
        windows = []
        for check in self._checks(ordered, 0):
            key = self._fixed.window(check.item, check.ids, 0).key
            period, limit = check.item.get_expiry(), int(check.item.amount)
            spec = WindowSpec(key, period, 1, limit) if check.unit == "requests" else None
            windows.append(_PlannedWindow(check.scope, check.unit, check.item, key, period, limit, spec))
        limited = [s for s in ordered if s.spec.max_concurrent]
        slots = [SlotSpec(_slot_key(s), s.spec.max_concurrent or 0, self._slot_ttl_s) for s in limited]
        if len(self._plans) > 100_000:
            self._plans.clear()
        plan = self._plans[id(scopes)] = _FixedPlan(scopes, ordered, windows, slots, limited, [s.key for s in slots])
        return plan

    async def _admit_planned(self, plan: _FixedPlan, est_tokens: int) -> Admission:
        """Windows and concurrency slots, all or nothing, in one backend operation."""
        if not plan.windows and not plan.slots:
            return Admission()
        tokens = max(0, est_tokens)
        specs = [w.spec or WindowSpec(w.key, w.period_s, tokens, w.limit) for w in plan.windows]
        try:
            hit = await self._backend.hit_windows(specs, plan.slots)
        except self._errors:
            self._degrade({w.scope.kind for w in plan.windows} | {s.kind for s in plan.limited})
            return Admission()
        if hit.refused >= 0:
            raise self._refusal_planned(plan, specs, hit)
        now = time.time()
        tightest = Tightest()
        counted: list[_Charged] = []
        for w, count, reset_s in zip(plan.windows, hit.counts, hit.resets_s, strict=True):
            tightest.offer(w.unit, w.limit - count if count < w.limit else 0, w.limit, reset_s)
            if w.spec is None:
                counted.append(_Charged(w.scope.kind, w.key, w.period_s, tokens, now + reset_s))
        admission = Admission(tightest.wire(), plan.slot_keys.copy())
        admission._counted = counted
        return admission

    def _refusal_planned(self, plan: _FixedPlan, specs: list[WindowSpec], hit: WindowHit) -> RateLimited:
        now = time.time()
        checks = [_Check(w.scope, w.unit, w.item, spec.amount) for w, spec in zip(plan.windows, specs, strict=True)]
        counted = [
            Counted(Window(w.key, w.item, spec.amount), count, reset_s, now + reset_s)
            for w, spec, count, reset_s in zip(plan.windows, specs, hit.counts, hit.resets_s, strict=True)
        ]
        if hit.refused < len(checks):
            return self._refusal_fixed(checks, counted, hit.refused)
        scope = plan.limited[hit.refused - len(checks)]
        self.rejections[scope.kind] += 1
        what = f"{scope.spec.max_concurrent} concurrent requests"
        return RateLimited(_message(scope, what), retry_after=1.0, headers=_headers_fixed(checks, counted))

    async def _deployment_fixed(self, fw: FixedWindows, checks: list[_Check], admission: Admission | None) -> bool:
        try:
            counted, refused = await fw.charge([fw.window(c.item, c.ids, c.cost) for c in checks], time.time())
        except self._errors:
            self._degrade({"deployment"})
            return True
        if refused >= 0:
            self.rejections["deployment"] += 1
            return False
        if admission is not None:
            admission._counted += [
                _Charged(c.scope.kind, n.window.key, n.window.item.get_expiry(), c.cost, n.window_end)
                for c, n in zip(checks, counted, strict=True)
                if c.unit == "tokens"
            ]
        return True

    def _refusal_fixed(self, checks: list[_Check], counted: list[Counted], refused: int) -> RateLimited:
        check = checks[refused]
        self.rejections[check.scope.kind] += 1
        per = {60: "minute", 1: "second"}.get(self._period_s, f"{self._period_s}s")
        headers = _headers_fixed(checks, counted)
        if check.cost > check.item.amount:  # can never fit: no Retry-After
            what = f"request too large: {check.cost} tokens requested, limit {check.item.amount} tokens per {per}"
            return RateLimited(_message(check.scope, what), headers=headers)
        return RateLimited(
            _message(check.scope, f"{check.item.amount} {check.unit} per {per}"),
            retry_after=max(1.0, counted[refused].reset_s),
            headers=headers,
        )

    async def _release_keys(self, keys: list[str]) -> None:
        for key in reversed(keys):
            try:
                await self._backend.release_slot(key)
            except self._errors:  # the slot's TTL frees it
                self.degraded[key.split("/")[1]] += 1

    def _rejection(
        self, failing: list[tuple[_Check, WindowStats]], checks: list[_Check], stats: list[WindowStats], now: float
    ) -> RateLimited:
        c = failing[0][0]
        self.rejections[c.scope.kind] += 1
        per = {60: "minute", 1: "second"}.get(self._period_s, f"{self._period_s}s")
        if c.cost > c.item.amount:  # can never fit: no Retry-After
            what = f"request too large: {c.cost} tokens requested, limit {c.item.amount} tokens per {per}"
            return RateLimited(_message(c.scope, what), headers=_headers(checks, stats, now))
        retry_after = max(max(1.0, s.reset_time - now) for _, s in failing)
        what = f"{c.item.amount} {c.unit} per {per}"
        return RateLimited(_message(c.scope, what), retry_after=retry_after, headers=_headers(checks, stats, now))

    def _degrade(self, kinds: set[str]) -> None:
        if not self._open:
            raise BackendDegraded("rate limits cannot be checked: the state backend is unavailable")
        for kind in kinds:
            self.degraded[kind] += 1


def _slot_key(scope: Scope) -> str:
    return f"concurrency/{scope.kind}/{scope.id}"


def _message(scope: Scope, what: str) -> str:
    name = scope.kind if scope.kind in ("global", "key") else f"{scope.kind} {scope.id}"  # key ids stay private
    return f"rate limit exceeded for {name}: {what}"


def _headers_fixed(checks: list[_Check], counted: list[Counted]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, per unit from the window with the fewest remaining."""
    tightest = Tightest()
    for check, n in zip(checks, counted, strict=True):
        tightest.offer(check.unit, n.remaining, n.window.limit, n.reset_s)
    return tightest.headers()


def _headers(checks: list[_Check], stats: list[WindowStats], now: float, *, spent: bool = False) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, per unit from the scope with the fewest remaining."""
    tightest = Tightest()
    for c, s in zip(checks, stats, strict=True):
        remaining = max(0, s.remaining - c.cost) if spent else s.remaining
        reset_in = s.reset_time - now if s.reset_time > now else c.item.get_expiry()
        tightest.offer(c.unit, remaining, int(c.item.amount), reset_in)
    return tightest.headers()
