"""fixed_window (the default): every window of a request, and its concurrency
slots, charged at once by the state backend, or none (:mod:`gateway.policies.windows`:
in-memory counters, or one Lua script on Redis). Atomic, so there is no race and
a refusal leaves nothing to roll back.

What a list of scopes charges is worked out once per list of equal scopes
(:class:`_FixedPlan`, in a bounded cache keyed by the scopes themselves: traffic
control passes one :class:`~gateway.state.lru.Hashed` tuple per principal and
route, found in one dict lookup). Token estimates are corrected, and the slots
given back, in one more backend operation at the end: more than estimated is
charged in full, less is refunded while the charged window is still the current one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem

from gateway.config.settings import LimitSpec
from gateway.errors import RateLimited
from gateway.policies.ratelimit_core import Admission, Charged, Check, LimiterCore, Scope, slot_key
from gateway.policies.ratelimit_headers import Tightest
from gateway.policies.windows import Counted, FixedWindows, Window
from gateway.state.base import SlotSpec, WindowAdjust, WindowHit, WindowSpec
from gateway.state.lru import Lru

PLANS_MAX = 100_000
"""Plans kept (least recently used evicted): one per distinct list of scopes in use,
about one per client key and alias (10,000 keys x 10 aliases fit)."""


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


@dataclass(frozen=True, slots=True)
class _FixedPlan:
    """What the fixed-window admission of one scope list charges, worked out
    once per list of equal scopes."""

    ordered: list[Scope]
    windows: list[_PlannedWindow]
    slots: list[SlotSpec]
    limited: list[Scope]
    slot_keys: list[str]


class FixedWindowLimits:
    """The limiter's request path with fixed windows (a :class:`~gateway.policies.ratelimit_core.WindowLimits`)."""

    def __init__(self, core: LimiterCore) -> None:
        self._core = core
        self._backend = core.backend
        self._errors = core.errors
        self._windows = FixedWindows(core.backend)
        self._plans: Lru[tuple[Scope, ...], _FixedPlan] = Lru(PLANS_MAX)

    async def admit(self, scopes: Sequence[Scope], est_tokens: int) -> Admission:
        """Windows and concurrency slots, all or nothing, in one backend operation."""
        key = scopes if isinstance(scopes, tuple) else tuple(scopes)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans.put(key, self._plan(key))
        if not plan.windows and not plan.slots:
            return Admission()
        tokens = max(0, est_tokens)
        specs = [w.spec or WindowSpec(w.key, w.period_s, tokens, w.limit) for w in plan.windows]
        try:
            hit = await self._backend.hit_windows(specs, plan.slots)
        except self._errors:
            self._core.degrade({w.scope.kind for w in plan.windows} | {s.kind for s in plan.limited})
            return Admission()
        if hit.refused >= 0:
            raise self._refusal(plan, specs, hit)
        now = time.time()
        tightest = Tightest()
        counted: list[Charged] = []
        for w, count, reset_s in zip(plan.windows, hit.counts, hit.resets_s, strict=True):
            tightest.offer(w.unit, w.limit - count if count < w.limit else 0, w.limit, reset_s)
            if w.spec is None:
                counted.append(Charged(w.scope.kind, w.key, w.period_s, tokens, now + reset_s))
        admission = Admission(tightest.wire(), plan.slot_keys.copy())
        admission.counted = counted
        return admission

    async def try_deployment(
        self, dep_id: str, spec: LimitSpec, est_tokens: int, admission: Admission | None = None
    ) -> bool:
        checks = self._core.checks((Scope("deployment", dep_id, spec),), est_tokens)
        if not checks:
            return True
        fw = self._windows
        try:
            counted, refused = await fw.charge([fw.window(c.item, c.ids, c.cost) for c in checks], time.time())
        except self._errors:
            self._core.degrade({"deployment"})
            return True
        if refused >= 0:
            self._core.rejections["deployment"] += 1
            return False
        if admission is not None:
            admission.counted += [
                Charged(c.scope.kind, n.window.key, n.window.item.get_expiry(), c.cost, n.window_end)
                for c, n in zip(checks, counted, strict=True)
                if c.unit == "tokens"
            ]
        return True

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        await self._finish(admission, actual_tokens, [])

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None:
        keys, admission.slots = admission.slots, []
        await self._finish(admission, actual_tokens, keys)

    async def _finish(self, admission: Admission, actual_tokens: int | None, release: list[str]) -> None:
        """The token corrections (once per admission) and the slots ``release``, in one backend operation."""
        corrections: list[WindowAdjust] = []
        if actual_tokens is not None and not admission.settled:
            admission.settled = True
            actual = max(0, actual_tokens)
            corrections = [
                WindowAdjust(c.key, c.period_s, actual - c.cost, c.window_end)
                for c in admission.counted
                if actual != c.cost
            ]
        if not corrections and not release:
            return
        try:
            await self._backend.adjust_windows(corrections, release)
        except self._errors:  # the slots' TTL frees them; the token charges stay estimates
            degraded = self._core.degraded
            for key in release:
                degraded[key.split("/")[1]] += 1
            for charged in admission.counted if corrections else ():
                degraded[charged.kind] += 1

    def _plan(self, scopes: Sequence[Scope]) -> _FixedPlan:
        core = self._core
        ordered = core.ordered(scopes)
        windows = []
        for check in core.checks(ordered, 0):
            key = self._windows.window(check.item, check.ids, 0).key
            period, limit = check.item.get_expiry(), int(check.item.amount)
            spec = WindowSpec(key, period, 1, limit) if check.unit == "requests" else None
            windows.append(_PlannedWindow(check.scope, check.unit, check.item, key, period, limit, spec))
        limited = [s for s in ordered if s.spec.max_concurrent]
        slots = [SlotSpec(slot_key(s), s.spec.max_concurrent or 0, core.slot_ttl_s) for s in limited]
        return _FixedPlan(ordered, windows, slots, limited, [s.key for s in slots])

    def _refusal(self, plan: _FixedPlan, specs: list[WindowSpec], hit: WindowHit) -> RateLimited:
        now = time.time()
        checks = [Check(w.scope, w.unit, w.item, spec.amount) for w, spec in zip(plan.windows, specs, strict=True)]
        counted = [
            Counted(Window(w.key, w.item, spec.amount), count, reset_s, now + reset_s)
            for w, spec, count, reset_s in zip(plan.windows, specs, hit.counts, hit.resets_s, strict=True)
        ]
        headers = _headers(checks, counted)
        if hit.refused < len(checks):
            return self._core.window_refusal(checks[hit.refused], max(1.0, counted[hit.refused].reset_s), headers)
        return self._core.concurrency_refusal(plan.limited[hit.refused - len(checks)], headers)


def _headers(checks: list[Check], counted: list[Counted]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, per unit from the window with the fewest remaining."""
    tightest = Tightest()
    for check, n in zip(checks, counted, strict=True):
        tightest.offer(check.unit, n.remaining, n.window.limit, n.reset_s)
    return tightest.headers()
