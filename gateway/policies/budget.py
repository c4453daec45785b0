"""Spend budgets per key, team and the whole gateway, by day and by month.

Periods are calendar days and months in ``budgets.timezone``: the daily period
``2026-11-26`` runs from that local midnight to the next (23 or 25 hours on a
DST change), the monthly period ``2026-11`` from the 1st to the next 1st.

Spend counters (USD floats in the state backend; reports and the admin API
read these exact names)::

    spend:key:{key_id}:{day}              spend:key:{key_id}:{month}
    spend:team:{team}:{day}               spend:team:{team}:{month}
    spend:global:all:{day}                spend:global:all:{month}
    spend:model:{alias}:{day}             per model alias, daily only
    spend:team_model:{team}:{alias}:{day} per team and alias, daily only

with ``{day}`` like ``2026-11-26`` and ``{month}`` like ``2026-11`` (local to
the budget timezone). Ids are used as given, so they should not contain ``:``.
Usage counters (same float counters, daily only; :meth:`BudgetPolicy.count`)::

    usage:{metric}:{scope}:{id}:{day}     metric: requests, prompt_tokens, completion_tokens
                                          scope: key, team, model (alias), global (id all)

:meth:`BudgetPolicy.check` runs before a request: it refreshes the counters
from the backend (``BackendUnavailable`` propagates: the caller applies
``state.failure_mode.budgets``), refuses with :class:`BudgetExceeded` (429
``insufficient_quota``) when a budget is spent, and otherwise *reserves* the
request's estimated cost on the budgets' counters (a :class:`Reservation`,
held in the ledger) until the request is charged or ends
(:meth:`BudgetPolicy.release`). A request that finds reservations of requests
in flight on a budget must fit beside them (spent + reserved + its estimate
within the limit) or is refused too. So concurrent requests cannot overshoot a
budget by more than the gap between their estimates and their real costs: a
burst admits only as many as the estimates fit. (A request alone on a budget
is admitted as before while the budget is not spent, even if its estimate is
more than what is left: the one request that may take a budget past its
limit, never two at once.) ``Retry-After``: seconds until the period resets
when a budget is spent, :data:`RESERVED_RETRY_S` when reservations of requests
in flight stand in the way. On a shared backend the reservations of the other
replicas count as they were last fetched (about a flush plus a refresh
interval late).
:meth:`BudgetPolicy.record` runs after it, adds the cost
to every counter and emits a :class:`BudgetEvent` once per scope, id, period
and kind when spend crosses ``warn_ratio`` (``threshold``) or 100 %
(``exhausted``). Events are remembered per process and per current period
only, so each replica (and a restarted process) may emit its own.

The periods, counter names and per-period checks are
:mod:`gateway.policies.budget_counters`; the events and the gauges' levels
:mod:`gateway.policies.budget_events`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from gateway.config.settings import BudgetSettings
from gateway.errors import BudgetExceeded
from gateway.policies.budget_counters import (
    GLOBAL_ID,
    USAGE_METRICS,
    BudgetCheck,
    BudgetLimits,
    Period,
    Scope,
    checks_of,
    model_spend_key,
    period_end,
    period_ids,
    seconds_until_reset,
    spend_key,
    spend_keys,
    team_model_spend_key,
    usage_key,
    usage_keys,
)
from gateway.policies.budget_events import BudgetAlerts, BudgetEvent, EventKind
from gateway.state.lru import Hashed, Lru
from gateway.state.shared_budgets import SharedBudgets

__all__ = [
    "GLOBAL_ID",
    "USAGE_METRICS",
    "BudgetEvent",
    "BudgetLimits",
    "BudgetPolicy",
    "EventKind",
    "Ledger",
    "Period",
    "Reservation",
    "Scope",
    "model_spend_key",
    "period_end",
    "period_ids",
    "seconds_until_reset",
    "spend_key",
    "team_model_spend_key",
    "usage_key",
]

MEMO_MAX = 100_000
"""Entries kept per memo (least recently used evicted): the checks of each limits list in
use (about one per client key), the counter names of each key, team and alias charged."""
RESERVED_RETRY_S = 1.0
"""Retry-After when only reservations of requests in flight refuse a request."""


class Ledger(Protocol):
    """What the policy needs of :class:`gateway.state.ledger.SpendLedger`."""

    def add(self, increments: Mapping[str, float]) -> None: ...

    def known(self, keys: Sequence[str]) -> dict[str, float]: ...

    async def refresh(self, keys: Sequence[str]) -> None: ...

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None: ...

    def reserve(self, keys: Sequence[str], usd: float) -> None: ...

    def release(self, keys: Sequence[str], usd: float) -> None: ...

    def reserved(self, keys: Sequence[str]) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """A request's estimated cost, held on its budgets' counters until it is
    charged or ends (give it back once: :meth:`BudgetPolicy.release`)."""

    keys: Sequence[str]
    usd: float
    shared: bool = False
    """Held in Redis for every replica (:class:`~gateway.state.shared_budgets.SharedBudgets`),
    else in this process's ledger."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _usd(amount: float) -> str:
    return f"{amount:.2f}" if amount >= 0.01 else f"{amount:g}"


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m" if m else f"{s}s"


def _who(limits: BudgetLimits) -> str:
    return "the gateway" if limits.scope == "global" else f"{limits.scope} {limits.id!r}"


@dataclass(slots=True)
class _Today:
    """The checks of one limits sequence in the current periods, and their distinct spend keys."""

    day: str
    month: str
    checks: list[BudgetCheck]
    keys: Hashed[str]
    """The distinct counter names: the ledger's refresh finds them fresh in one lookup."""


def _refusal(
    now: datetime, tz: ZoneInfo, c: BudgetCheck, spent: float, held: float, estimate: float
) -> tuple[float, str]:
    """Retry-After and the message for a refusing check."""
    budget = f"the {c.period} budget of {_who(c.limits)} ({_usd(c.limit)} USD)"
    if spent >= c.limit:
        wait = seconds_until_reset(now, tz, c.period)
        return wait, f"{budget} is spent; it resets in {_duration(wait)}"
    return RESERVED_RETRY_S, (
        f"{budget} has {_usd(c.limit - spent)} USD left, of which requests in flight have reserved"
        f" {_usd(held)} USD: too little remains for this request (estimated {_usd(estimate)} USD:"
        " its prompt and max_tokens at its deployments' prices); retry shortly"
    )


def _refuse(
    now: datetime,
    tz: ZoneInfo,
    checks: Sequence[BudgetCheck],
    totals: Mapping[str, float],
    held: Mapping[str, float],
    estimate: float,
    *,
    refused: bool,
) -> None:
    """Raise :class:`BudgetExceeded` for the refusing check that resets last (the request cannot
    pass before then), if any refuses: spent, or holding reservations with less than ``estimate``
    left beside them. ``refused``: Redis refused already (the same rule on the same figures)."""
    worst: tuple[float, str] | None = None
    for c in checks:
        spent, reserved = totals.get(c.key, 0.0), held.get(c.key, 0.0)
        if spent < c.limit and (reserved <= 0 or spent + reserved + estimate <= c.limit):
            continue
        refusal = _refusal(now, tz, c, spent, reserved, estimate)
        if worst is None or refusal[0] > worst[0]:
            worst = refusal
    if worst is None and refused:
        c = checks[0]
        worst = _refusal(now, tz, c, totals.get(c.key, 0.0), held.get(c.key, 0.0), estimate)
    if worst is not None:
        raise BudgetExceeded(worst[1], retry_after=worst[0])


class BudgetPolicy:
    """Checks and records spend against budgets (see the module docstring).

    The gateway-wide limits of ``settings`` (``daily_usd``/``monthly_usd``)
    apply to every call unless the ``limits`` passed include a ``global`` entry,
    which then replaces them.
    """

    def __init__(
        self,
        ledger: Ledger,
        settings: BudgetSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        on_event: Callable[[BudgetEvent], None] | None = None,
        on_level: Callable[[BudgetLimits, Period, float, float], None] | None = None,
        shared: SharedBudgets | None = None,
    ) -> None:
        self.ledger = ledger
        self.shared = shared
        """Budgets checked and held in Redis for every replica at once (the redis backend)."""
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock
        self.alerts = BudgetAlerts(ledger.known, settings.warn_ratio, on_event, on_level)
        """Threshold/exhausted events and the levels of the gauges."""
        self.global_limits = BudgetLimits("global", GLOBAL_ID, settings.daily_usd, settings.monthly_usd)
        self._today: Lru[tuple[BudgetLimits, ...], _Today] = Lru(MEMO_MAX)
        """Per limits list (equal lists share one; traffic control passes a
        :class:`~gateway.state.lru.Hashed` tuple per principal): its checks today."""
        self._record_keys: Lru[tuple[str | None, str | None, str | None, str, str], list[str]] = Lru(MEMO_MAX)
        self._usage_keys: Lru[tuple[str | None, str | None, str, str], list[list[str]]] = Lru(MEMO_MAX)
        self._periods_at: tuple[int, tuple[str, str]] = (-1, ("", ""))
        """Period ids of the current second (computing them is the costly part)."""

    async def check(self, limits: Sequence[BudgetLimits], estimate_usd: float = 0.0) -> Reservation | None:
        """Raise :class:`BudgetExceeded` when any budget is spent (100 % or
        more), or holds reservations of requests in flight and has less left
        than ``estimate_usd`` beside them; otherwise reserve ``estimate_usd`` on
        every budget's counter and return the :class:`Reservation` (None when
        there is no budget or nothing to reserve). With several refusing, the
        one resetting last is reported, since the request cannot pass before
        then. Raises ``BackendUnavailable`` when the counters cannot be refreshed."""
        now = self.clock()
        today = self._checks(limits, *self._period_ids(now))
        if not today.checks:
            return None
        keys = today.keys
        ledger, shared = self.ledger, self.shared
        if shared is not None:  # decided in Redis, with every replica's spend and reservations
            decision = await shared.reserve(
                [c.key for c in today.checks], [c.limit for c in today.checks], estimate_usd
            )
            if decision.admitted:
                return Reservation(keys, estimate_usd, shared=True) if estimate_usd > 0 else None
            totals = dict(zip((c.key for c in today.checks), decision.totals, strict=True))
            held = dict(zip((c.key for c in today.checks), decision.held, strict=True))
        else:
            await ledger.refresh(keys)
            totals = ledger.known(keys)
            held = ledger.reserved(keys)
        _refuse(now, self.tz, today.checks, totals, held, estimate_usd, refused=shared is not None)
        if not estimate_usd > 0:
            return None
        ledger.reserve(keys, estimate_usd)
        return Reservation(keys, estimate_usd)

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation of :meth:`check` (once: the caller forgets it)."""
        if reservation.shared and self.shared is not None:
            self.shared.release(reservation.keys, reservation.usd)
            return
        self.ledger.release(reservation.keys, reservation.usd)

    def record(
        self,
        cost_usd: float,
        *,
        key_id: str | None,
        team: str | None,
        alias: str | None,
        limits: Sequence[BudgetLimits] = (),
    ) -> None:
        """Add ``cost_usd`` to every counter of today and this month (one
        ``ledger.add``), then emit threshold/exhausted events for ``limits``
        (the same sequence given to :meth:`check`). A cost of 0 or less adds
        nothing."""
        if not cost_usd > 0:  # also refuses NaN
            return
        day, month = self._period_ids(self.clock())
        group = (key_id, team, alias, day, month)
        keys = self._record_keys.get(group)
        if keys is None:
            keys = self._record_keys.put(group, spend_keys(key_id, team, alias, day, month))
        self.ledger.add(dict.fromkeys(keys, cost_usd))
        today = self._checks(limits, day, month)
        self.alerts.emit(today.checks, today.keys, day, month)

    def count(self, usage: Mapping[str, object] | None, *, key_id: str | None, team: str | None, alias: str) -> None:
        """Add one request and its tokens to today's usage counters (key, team,
        alias, global), priced or not: what ``GET /admin/usage`` reports."""
        day = self._period_ids(self.clock())[0]
        prompt = (usage or {}).get("prompt_tokens")
        completion = (usage or {}).get("completion_tokens")
        amounts = (1, prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)
        group = (key_id, team, alias, day)
        keys = self._usage_keys.get(group)
        if keys is None:
            keys = self._usage_keys.put(group, usage_keys(key_id, team, alias, day))
        self.ledger.tally(group, keys, amounts)

    def publish_levels(self) -> None:
        """Hand the spend and limit of every team and global budget seen this
        period to ``on_level`` (the metrics scrape calls this)."""
        self.alerts.publish_levels()

    def carry_over(self, previous: BudgetPolicy) -> None:
        """Keep the events ``previous`` already emitted (a config reload builds a
        new policy; thresholds must not fire twice in one period)."""
        self.alerts.carry_over(previous.alerts)

    def _checks(self, limits: Sequence[BudgetLimits], day: str, month: str) -> _Today:
        """The checks of ``limits`` today; memoised per limits (by value) and day."""
        key = limits if isinstance(limits, tuple) else tuple(limits)
        today = self._today.get(key)
        if today is not None and today.day == day and today.month == month:
            return today
        checks = checks_of(key, self.global_limits, day, month)
        return self._today.put(key, _Today(day, month, checks, Hashed(dict.fromkeys(c.key for c in checks))))

    def current_periods(self) -> tuple[str, str]:
        """(day, month) ids now in the budget timezone (worked out once a second)."""
        return self._period_ids(self.clock())

    def _period_ids(self, now: datetime) -> tuple[str, str]:
        second = int(now.timestamp())
        if self._periods_at[0] != second:
            self._periods_at = (second, period_ids(now, self.tz))
        return self._periods_at[1]
