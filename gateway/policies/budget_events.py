"""Budget events and levels: a :class:`BudgetEvent` once per scope, id, period
and kind when spend crosses ``warn_ratio`` (``threshold``) or 100 %
(``exhausted``), and the spend and limit of every team and global budget seen
this period, handed to the gauges on demand.

Events are remembered per process and per current period only, so each replica
(and a restarted process) may emit its own; a config reload carries them over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.policies.budget_counters import BudgetCheck, BudgetLimits, Period, Scope

EventKind = Literal["threshold", "exhausted"]

log = logging.getLogger("gateway.policies.budget")


@dataclass(frozen=True)
class BudgetEvent:
    kind: EventKind
    scope: Scope
    id: str
    period: Period
    spent: float
    limit: float
    period_id: str = ""


class BudgetAlerts:
    """The events and levels of one :class:`~gateway.policies.budget.BudgetPolicy`."""

    def __init__(
        self,
        known: Callable[[Sequence[str]], dict[str, float]],
        warn_ratio: float,
        on_event: Callable[[BudgetEvent], None] | None,
        on_level: Callable[[BudgetLimits, Period, float, float], None] | None,
    ) -> None:
        self._known = known
        """The ledger's best local view of counters."""
        self._warn_ratio = warn_ratio
        self.on_event = on_event
        self.on_level = on_level
        """Called by :meth:`publish_levels` with (limits, period, spent, limit): for gauges."""
        self.watched: dict[str, BudgetCheck] = {}
        """The team and global budgets seen this period, by spend key (for the gauges)."""
        self.fired: set[tuple[str, str, str, str]] = set()
        """(scope, id, period_id, kind) of events emitted in the current periods."""
        self._periods: tuple[str, str] = ("", "")

    def carry_over(self, previous: BudgetAlerts) -> None:
        """Keep the events ``previous`` already emitted (thresholds must not fire twice in one period)."""
        self.fired = set(previous.fired)
        self._periods = previous._periods

    def emit(self, checks: Sequence[BudgetCheck], keys: Sequence[str], day: str, month: str) -> None:
        """The events the spend of ``checks`` (whose counters are ``keys``) now calls for."""
        if self._periods != (day, month):
            self.fired = {f for f in self.fired if f[2] in (day, month)}
            self.watched = {k: c for k, c in self.watched.items() if c.period_id in (day, month)}
            self._periods = (day, month)
        if not checks:
            return
        totals = self._known(keys)
        watched, warn_ratio = self.watched, self._warn_ratio
        for c in checks:
            spent = totals.get(c.key, 0.0)
            if c.key not in watched and c.limits.scope != "key":
                watched[c.key] = c
            if spent < c.limit * warn_ratio:
                continue
            kinds: list[EventKind] = []
            if spent >= c.limit * warn_ratio:
                kinds.append("threshold")
            if spent >= c.limit:
                kinds.append("exhausted")
            for kind in kinds:
                mark = (c.limits.scope, c.limits.id, c.period_id, kind)
                if mark in self.fired:
                    continue
                self.fired.add(mark)
                event = BudgetEvent(kind, c.limits.scope, c.limits.id, c.period, spent, c.limit, c.period_id)
                if self.on_event is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        log.exception("budget event handler failed for %s", event)

    def publish_levels(self) -> None:
        """Hand the spend and limit of every team and global budget seen this
        period to ``on_level`` (the metrics scrape calls this: gauges need no
        update per request). Key budgets are left out: key ids are unbounded."""
        if self.on_level is None or not self.watched:
            return
        totals = self._known(list(self.watched))
        for key, c in list(self.watched.items()):
            self.on_level(c.limits, c.period, totals.get(key, 0.0), c.limit)
