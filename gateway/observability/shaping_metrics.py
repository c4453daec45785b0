"""The traffic-shaping metrics: the admission queue, upstream pacing, routing rules and shadow
traffic (docs/metrics.md, "Traffic shaping"). :class:`~gateway.observability.metrics.Metrics`
builds one as ``metrics.shaping``, in the app's own registry.

Labels are bounded. Aliases, priority classes, deployment ids, rule names and shadow candidates
come from the configuration; reasons, sources, kinds, outcomes and token types are the fixed sets
below. A value outside its set is a programming error (ValueError), never a new series. A
counter with a fixed-set label gets the whole set at zero with its first series, so that
``rate()`` and ``increase()`` see the first event of each other value.

The gauge of a paced deployment is ``gateway_deployment_paced``, not ``gateway_upstream_paced``:
that name is the counter's family (``gateway_upstream_paced_total``), and a registry (and the
OpenMetrics format) holds one family per name.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From a few milliseconds to many seconds; 1.0 is the objective's bound (p95 within 1 s).
QUEUE_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# The GenAI conventions' duration buckets (metrics.DURATION_BUCKETS): shadow and primary compare.
SHADOW_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

SHED_REASONS = ("queue_full", "deadline", "timeout", "disconnected")
PACING_SOURCES = ("retry_after", "ratelimit_headers")
RULE_KINDS = ("time_window", "budget_downgrade", "match", "shadow")
SHADOW_OUTCOMES = ("ok", "error", "dropped")
TOKEN_TYPES = ("input", "output")

_MAX_CACHED = 10_000
"""Children cached per metric before the cache starts over (the series stay in the registry)."""


class _Children:
    """One metric's label children, cached: the library's ``labels()`` takes a lock and builds
    a tuple each call. With ``fixed``, the last label is one of those values: its first child
    for a combination of the other labels makes the whole set (at zero), and another value is
    refused."""

    __slots__ = ("_fixed", "_found", "_label", "metric")

    def __init__(self, metric: Any, label: str = "", fixed: tuple[str, ...] = ()) -> None:
        self.metric = metric
        self._label = label
        self._fixed = fixed
        self._found: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        found = self._found.get(labels)
        if found is None:
            found = self._make(labels)
        return found

    def _make(self, labels: tuple[str, ...]) -> Any:
        if len(self._found) >= _MAX_CACHED:
            self._found.clear()
        if not self._fixed:
            found = self._found[labels] = self.metric.labels(*labels)
            return found
        *others, value = labels
        check(self._label, value, self._fixed)
        for each in self._fixed:
            self._found[(*others, each)] = self.metric.labels(*others, each)
        return self._found[labels]


def check(label: str, value: str, allowed: tuple[str, ...]) -> None:
    """ValueError unless ``value`` is one of ``allowed`` (the fixed set of ``label``)."""
    if value not in allowed:
        raise ValueError(f"{label} {value!r} is not one of {', '.join(allowed)}")


class ShapingMetrics:
    """The traffic-shaping metrics of one app, in its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # --- the admission queue ------------------------------------------------------------
        self.queue_depth = Gauge(
            "gateway_queue_depth",
            "Requests waiting in the admission queue now (this process), by alias and priority class.",
            ["alias", "priority"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "gateway_queue_wait_seconds",
            "Time a request waited in the admission queue before it was admitted, by alias and priority class.",
            ["alias", "priority"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.queue_shed = Counter(
            "gateway_queue_shed",
            "Requests the admission queue gave up on, by reason: queue_full, deadline, timeout, disconnected.",
            ["alias", "priority", "reason"],
            registry=r,
        )
        # --- upstream pacing ------------------------------------------------------------------
        self.paced = Counter(
            "gateway_upstream_paced",
            "Times a deployment was paced by its upstream's rate-limit signals (retry_after, ratelimit_headers).",
            ["deployment", "source"],
            registry=r,
        )
        self.paced_now = Gauge(
            "gateway_deployment_paced",
            "1 while the deployment is paced by its upstream's rate-limit signals, else 0.",
            ["deployment"],
            registry=r,
        )
        # --- routing rules and shadow traffic -----------------------------------------------
        self.rules_applied = Counter(
            "gateway_routing_rule_applied",
            "Requests a routing rule changed, by rule and kind (time_window, budget_downgrade, match, shadow).",
            ["rule", "kind"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "gateway_shadow_requests",
            "Shadow requests sent to a candidate beside an alias's answer, by outcome (ok, error, dropped).",
            ["alias", "candidate", "outcome"],
            registry=r,
        )
        self.shadow_duration = Histogram(
            "gateway_shadow_duration_seconds",
            "Duration of each shadow request that was sent, by alias and candidate.",
            ["alias", "candidate"],
            buckets=SHADOW_DURATION_BUCKETS,
            registry=r,
        )
        self.shadow_tokens = Counter(
            "gateway_shadow_tokens",
            "Tokens used by shadow requests, by candidate and type (input, output).",
            ["candidate", "type"],
            registry=r,
        )
        self.shadow_cost = Counter(
            "gateway_shadow_cost_usd",
            "Cost in USD of shadow requests (tracked apart: never charged to a key, team or budget).",
            ["candidate"],
            registry=r,
        )
        self._depth = _Children(self.queue_depth)
        self._wait = _Children(self.queue_wait)
        self._shed = _Children(self.queue_shed, "reason", SHED_REASONS)
        self._paced = _Children(self.paced, "source", PACING_SOURCES)
        self._paced_now = _Children(self.paced_now)
        self._rules = _Children(self.rules_applied)
        self._shadow = _Children(self.shadow_requests, "outcome", SHADOW_OUTCOMES)
        self._shadow_duration = _Children(self.shadow_duration)
        self._shadow_tokens = _Children(self.shadow_tokens, "type", TOKEN_TYPES)
        self._shadow_cost = _Children(self.shadow_cost)

    # --- the admission queue ----------------------------------------------------------------

    def waiting(self, alias: str, priority: str, delta: int) -> None:
        """``delta`` requests joined (> 0) or left (< 0) the queue of ``alias`` and ``priority``."""
        self._depth(alias, priority).inc(delta)

    def waited(self, alias: str, priority: str, seconds: float) -> None:
        """A request admitted after waiting ``seconds`` in the queue."""
        self._wait(alias, priority).observe(seconds)

    def shed(self, alias: str, priority: str, reason: str) -> None:
        """A request the queue gave up on, for one of ``SHED_REASONS``."""
        self._shed(alias, priority, reason).inc()

    # --- upstream pacing --------------------------------------------------------------------

    def paced_upstream(self, deployment: str, source: str, active: bool) -> None:
        """``active``: the deployment is paced now, by one of ``PACING_SOURCES`` (counted, gauge 1);
        not ``active``: the pacing is over (gauge 0; ``source`` is not used)."""
        if active:
            self._paced(deployment, source).inc()
        self._paced_now(deployment).set(1.0 if active else 0.0)

    # --- routing rules and shadow traffic ---------------------------------------------------

    def rule(self, rule: str, kind: str) -> None:
        """A request that routing rule ``rule`` (of one of ``RULE_KINDS``) changed."""
        check("kind", kind, RULE_KINDS)
        self._rules(rule, kind).inc()

    def shadow(
        self,
        alias: str,
        candidate: str,
        outcome: str,
        seconds: float | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        """One shadow request of ``alias`` to ``candidate``, by one of ``SHADOW_OUTCOMES``:
        its duration (None: never sent), the tokens its upstream reported (a count under 1 adds
        nothing) and its cost (None: unpriced; never charged to a client's budget)."""
        self._shadow(alias, candidate, outcome).inc()
        if seconds is not None:
            self._shadow_duration(alias, candidate).observe(seconds)
        if input_tokens > 0:
            self._shadow_tokens(candidate, "input").inc(input_tokens)
        if output_tokens > 0:
            self._shadow_tokens(candidate, "output").inc(output_tokens)
        if cost_usd is not None and cost_usd >= 0:
            self._shadow_cost(candidate).inc(cost_usd)
