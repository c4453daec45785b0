"""Routing strategies: each orders an alias's deployments for one request.

The router walks the order, skipping deployments whose breaker is open or that
are at their concurrency cap, so a strategy only has to express preference.
Randomness comes from the ``random.Random`` passed in (seeded in tests).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from gateway.routing.deployment import LiveDeployment, Route

Order = Callable[[Route, random.Random], list[LiveDeployment]]


def by_priority(route: Route, rng: random.Random) -> list[LiveDeployment]:
    """Ordered failover: lowest ``priority`` first, then config order."""
    return sorted(route.deployments, key=lambda d: d.spec.priority)


def weighted(route: Route, rng: random.Random) -> list[LiveDeployment]:
    """A weighted random order (each deployment first with probability
    weight / total), the rest following as failover."""
    keyed = [(rng.random() ** (1.0 / d.spec.weight), d) for d in route.deployments]
    keyed.sort(key=lambda kd: kd[0], reverse=True)
    return [d for _, d in keyed]


def round_robin(route: Route, rng: random.Random) -> list[LiveDeployment]:
    deps = route.deployments
    start = route.turn % len(deps)
    route.turn += 1
    return deps[start:] + deps[:start]


def least_inflight(route: Route, rng: random.Random) -> list[LiveDeployment]:
    return sorted(route.deployments, key=lambda d: (d.inflight, d.spec.priority))


def lowest_latency(route: Route, rng: random.Random) -> list[LiveDeployment]:
    """Lowest moving-average latency first; an unmeasured deployment goes first
    so that it gets measured."""
    return sorted(route.deployments, key=lambda d: (d.latency_ewma_s or 0.0, d.spec.priority))


def lowest_cost(route: Route, rng: random.Random) -> list[LiveDeployment]:
    return sorted(route.deployments, key=lambda d: (d.cost_per_1m, d.spec.priority))


STRATEGIES: dict[str, Order] = {
    "priority": by_priority,
    "weighted": weighted,
    "round_robin": round_robin,
    "least_inflight": least_inflight,
    "lowest_latency": lowest_latency,
    "lowest_cost": lowest_cost,
}
