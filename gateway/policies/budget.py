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
``state.failure_mode.budgets``) and refuses with :class:`BudgetExceeded` (429
``insufficient_quota``, ``Retry-After`` = seconds until the period resets) when
a limit is reached. :meth:`BudgetPolicy.record` runs after it, adds the cost
to every counter and emits a :class:`BudgetEvent` once per scope, id, period
and kind when spend crosses ``warn_ratio`` (``threshold``) or 100 %
(``exhausted``). Events are remembered per process and per current period
only, so each replica (and a restarted process) may emit its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from gateway.config.settings import BudgetSettings
from gateway.errors import BudgetExceeded

Scope = Literal["key", "team", "global"]
Period = Literal["daily", "monthly"]
EventKind = Literal["threshold", "exhausted"]
GLOBAL_ID = "all"

log = logging.getLogger(__name__)


class Ledger(Protocol):
    """What the policy needs of :class:`gateway.state.ledger.SpendLedger`."""

    def add(self, increments: Mapping[str, float]) -> None: ...

    def known(self, keys: Sequence[str]) -> dict[str, float]: ...

    async def refresh(self, keys: Sequence[str]) -> None: ...

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None: ...


# --- periods ---------------------------------------------------------------------


def _local(now: datetime, tz: ZoneInfo) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("budget periods need an aware datetime (a clock with a timezone)")
    return now.astimezone(tz)


def period_ids(now: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """``("2026-11-26", "2026-11")``: the day and month of ``now`` in ``tz``."""
    local = _local(now, tz)
    return f"{local:%Y-%m-%d}", f"{local:%Y-%m}"


def period_end(now: datetime, tz: ZoneInfo, period: Period) -> datetime:
    """The instant (UTC) the period containing ``now`` ends: the next local
    midnight, or local midnight of the next month's 1st."""
    day = _local(now, tz).date()
    month_later = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    nxt = day + timedelta(days=1) if period == "daily" else month_later
    # Aware datetimes sharing a tzinfo subtract as wall clocks: compare in UTC.
    return datetime.combine(nxt, time(0), tzinfo=tz).astimezone(UTC)


def seconds_until_reset(now: datetime, tz: ZoneInfo, period: Period) -> float:
    """Real seconds from ``now`` until the period resets (always > 0)."""
    return (period_end(now, tz, period) - now.astimezone(UTC)).total_seconds()


# --- spend keys ------------------------------------------------------------------


def spend_key(scope: Scope, id: str, period_id: str) -> str:
    """``spend:{scope}:{id}:{period_id}``; the global scope's id is ``all``."""
    return f"spend:{scope}:{id}:{period_id}"


USAGE_METRICS = ("requests", "prompt_tokens", "completion_tokens")


def usage_key(metric: str, scope: str, id: str, day: str) -> str:
    """``usage:{metric}:{scope}:{id}:{day}``: requests and tokens per day."""
    return f"usage:{metric}:{scope}:{id}:{day}"


def model_spend_key(alias: str, day: str) -> str:
    return f"spend:model:{alias}:{day}"


def team_model_spend_key(team: str, alias: str, day: str) -> str:
    return f"spend:team_model:{team}:{alias}:{day}"


# --- the policy ------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetLimits:
    """The limits of one scope; None is unlimited."""

    scope: Scope
    id: str
    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True)
class BudgetEvent:
    kind: EventKind
    scope: Scope
    id: str
    period: Period
    spent: float
    limit: float
    period_id: str = ""


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


@dataclass(frozen=True)
class _Check:
    limits: BudgetLimits
    period: Period
    period_id: str
    key: str
    limit: float


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
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock
        self.on_event = on_event
        self.on_level = on_level
        """Called by :meth:`publish_levels` with (limits, period, spent, limit): for gauges."""
        self._watched: dict[str, _Check] = {}
        """The team and global budgets seen this period, by spend key (for the gauges)."""
        self._keys_cache: dict[int, tuple[Sequence[_Check], list[str]]] = {}
        self._record_keys: dict[tuple[str | None, str | None, str | None, str, str], list[str]] = {}
        self._usage_keys: dict[tuple[str | None, str | None, str, str], list[list[str]]] = {}
        self.global_limits = BudgetLimits("global", GLOBAL_ID, settings.daily_usd, settings.monthly_usd)
        self._fired: set[tuple[str, str, str, str]] = set()
        """(scope, id, period_id, kind) of events emitted in the current periods."""
        self._fired_periods: tuple[str, str] = ("", "")
        self._periods_at: tuple[int, tuple[str, str]] = (-1, ("", ""))
        self._checks_cache: dict[int, tuple[Sequence[BudgetLimits], tuple[str, str], list[_Check]]] = {}
        """Period ids of the current second (computing them is the costly part)."""

    def _checks(self, limits: Sequence[BudgetLimits], day: str, month: str) -> list[_Check]:
        """The checks of ``limits`` today; memoised per limits object and day (callers
        reuse one limits list per principal)."""
        cached = self._checks_cache.get(id(limits))
        if cached is not None and cached[0] is limits and cached[1] == (day, month):
            return cached[2]
        checks = self._build_checks(limits, day, month)
        if len(self._checks_cache) > 100_000:
            self._checks_cache.clear()
        self._checks_cache[id(limits)] = (limits, (day, month), checks)
        return checks

    def _build_checks(self, limits: Sequence[BudgetLimits], day: str, month: str) -> list[_Check]:
        all_limits = list(limits)
        if not any(lim.scope == "global" for lim in all_limits):
            all_limits.append(self.global_limits)
        checks = []
        for lim in all_limits:
            if lim.daily_usd is not None:
                checks.append(_Check(lim, "daily", day, spend_key(lim.scope, lim.id, day), lim.daily_usd))
            if lim.monthly_usd is not None:
                checks.append(_Check(lim, "monthly", month, spend_key(lim.scope, lim.id, month), lim.monthly_usd))
        return checks

    async def check(self, limits: Sequence[BudgetLimits]) -> None:
        """Raise :class:`BudgetExceeded` when any budget is spent (100 % or
        more). With several spent, the one resetting last is reported, since
        the request cannot pass before then. Raises ``BackendUnavailable``
        when the counters cannot be refreshed."""
        now = self.clock()
        checks = self._checks(limits, *self._period_ids(now))
        if not checks:
            return
        keys = self._keys_of(checks)
        await self.ledger.refresh(keys)
        totals = self.ledger.known(keys)
        worst: tuple[float, _Check] | None = None
        for c in checks:
            if totals.get(c.key, 0.0) >= c.limit:
                wait = seconds_until_reset(now, self.tz, c.period)
                if worst is None or wait > worst[0]:
                    worst = (wait, c)
        if worst is not None:
            wait, c = worst
            raise BudgetExceeded(
                f"the {c.period} budget of {_who(c.limits)} ({_usd(c.limit)} USD) is spent; "
                f"it resets in {_duration(wait)}",
                retry_after=wait,
            )

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
        keys = self._record_keys.get((key_id, team, alias, day, month))
        if keys is None:
            keys = self._spend_keys(key_id, team, alias, day, month)
        self.ledger.add(dict.fromkeys(keys, cost_usd))
        self._emit_events(self._checks(limits, day, month), day, month)

    def _spend_keys(self, key_id: str | None, team: str | None, alias: str | None, day: str, month: str) -> list[str]:
        keys: list[str] = [spend_key("global", GLOBAL_ID, day), spend_key("global", GLOBAL_ID, month)]
        if key_id is not None:
            keys += [spend_key("key", key_id, day), spend_key("key", key_id, month)]
        if team is not None:
            keys += [spend_key("team", team, day), spend_key("team", team, month)]
        if alias is not None:
            keys.append(model_spend_key(alias, day))
            if team is not None:
                keys.append(team_model_spend_key(team, alias, day))
        if len(self._record_keys) > 100_000:
            self._record_keys.clear()
        self._record_keys[(key_id, team, alias, day, month)] = keys
        return keys

    def _keys_of(self, checks: Sequence[_Check]) -> list[str]:
        """The distinct spend keys of ``checks`` (memoised per checks list)."""
        cached = self._keys_cache.get(id(checks))
        if cached is not None and cached[0] is checks:
            return cached[1]
        keys = list(dict.fromkeys(c.key for c in checks))
        if len(self._keys_cache) > 100_000:
            self._keys_cache.clear()
        self._keys_cache[id(checks)] = (checks, keys)
        return keys

    def publish_levels(self) -> None:
        """Hand the spend and limit of every team and global budget seen this
        period to ``on_level`` (the metrics scrape calls this: gauges need no
        update per request). Key budgets are left out: key ids are unbounded."""
        if self.on_level is None or not self._watched:
            return
        totals = self.ledger.known(list(self._watched))
        for key, c in list(self._watched.items()):
            self.on_level(c.limits, c.period, totals.get(key, 0.0), c.limit)

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
            keys = self._count_keys(key_id, team, alias, day)
        self.ledger.tally(group, keys, amounts)

    def _count_keys(self, key_id: str | None, team: str | None, alias: str, day: str) -> list[list[str]]:
        """The usage counters of one key, team and alias today, per metric (memoised)."""
        scopes = [("global", GLOBAL_ID), ("model", alias)]
        if key_id is not None:
            scopes.append(("key", key_id))
        if team is not None:
            scopes.append(("team", team))
        keys = [[usage_key(m, s, i, day) for s, i in scopes] for m in USAGE_METRICS]
        if len(self._usage_keys) > 100_000:
            self._usage_keys.clear()
        self._usage_keys[(key_id, team, alias, day)] = keys
        return keys

    def carry_over(self, previous: BudgetPolicy) -> None:
        """Keep the events ``previous`` already emitted (a config reload builds a
        new policy; thresholds must not fire twice in one period)."""
        self._fired = set(previous._fired)
        self._fired_periods = previous._fired_periods

    def _period_ids(self, now: datetime) -> tuple[str, str]:
        second = int(now.timestamp())
        if self._periods_at[0] != second:
            self._periods_at = (second, period_ids(now, self.tz))
        return self._periods_at[1]

    def _emit_events(self, checks: Sequence[_Check], day: str, month: str) -> None:
        if self._fired_periods != (day, month):
            self._fired = {f for f in self._fired if f[2] in (day, month)}
            self._watched = {k: c for k, c in self._watched.items() if c.period_id in (day, month)}
            self._fired_periods = (day, month)
        if not checks:
            return
        totals = self.ledger.known(self._keys_of(checks))
        watched = self._watched
        for c in checks:
            spent = totals.get(c.key, 0.0)
            if c.key not in watched and c.limits.scope != "key":
                watched[c.key] = c
            if spent < c.limit * self.settings.warn_ratio:
                continue
            kinds: list[EventKind] = []
            if spent >= c.limit * self.settings.warn_ratio:
                kinds.append("threshold")
            if spent >= c.limit:
                kinds.append("exhausted")
            for kind in kinds:
                mark = (c.limits.scope, c.limits.id, c.period_id, kind)
                if mark in self._fired:
                    continue
                self._fired.add(mark)
                event = BudgetEvent(kind, c.limits.scope, c.limits.id, c.period, spent, c.limit, c.period_id)
                if self.on_event is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        log.exception("budget event handler failed for %s", event)
