"""The metrics catalog: every metric the gateway exports, declared here once.

Each app builds its own :class:`Metrics` (its own registry), so tests build
fresh apps without global state. Labels are bounded: configured aliases and
team ids, never key ids or client-supplied strings.

This version carries the budget metrics that the budget warning alert of the
operations manual needs; the full catalog (requests, latency, tokens, cost,
breakers, limits, cache) is the observability work (docs/metrics.md).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from gateway.policies.budget import BudgetEvent, BudgetLimits


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["scope", "team", "period"]
        self.budget_spent = Gauge(
            "gateway_budget_spent_usd",
            "Spend in the current budget period, USD (teams and the whole gateway; key budgets are not labelled).",
            labels,
            registry=self.registry,
        )
        self.budget_limit = Gauge(
            "gateway_budget_limit_usd",
            "Budget of the current period, USD.",
            labels,
            registry=self.registry,
        )
        self.budget_events = Counter(
            "gateway_budget_events",
            "Budget events: 'threshold' when spend crosses warn_ratio (default 80 %), 'exhausted' at 100 %.",
            ["scope", "period", "kind"],
            registry=self.registry,
        )
        self._budget_children: dict[tuple[str, str, str], tuple[Gauge, Gauge]] = {}

    def budget_level(self, limits: BudgetLimits, period: str, spent: float, limit: float) -> None:
        if limits.scope == "key":  # key ids are unbounded: no per-key series
            return
        labels = (limits.scope, limits.id if limits.scope == "team" else "", period)
        children = self._budget_children.get(labels)
        if children is None:
            children = self._budget_children[labels] = (
                self.budget_spent.labels(*labels),
                self.budget_limit.labels(*labels),
            )
        children[0].set(spent)
        children[1].set(limit)

    def budget_event(self, event: BudgetEvent) -> None:
        self.budget_events.labels(event.scope, event.period, event.kind).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
