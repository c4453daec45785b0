"""``GET /admin/deployments``: the live routing state of every deployment, with the
routing rules of its alias and the time-window overrides in force on it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from gateway.server.service import Service


def deployment_rows(service: Service | None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Breaker, health mark, in-flight count, how long its upstream still paces it
    (``paced_for_s``, None when not paced), latency, priority and weight (as in force) of
    each deployment, the rules of its alias (``rules``) and the time windows setting its
    priority or weight now (``window``, None when none; ``configured``: the file's values).
    None while starting."""
    if service is None:
        return []
    book, clock = service.rules, time.monotonic()
    overrides = book.overrides(now or datetime.now(UTC)) if book.window_aliases else {}
    rows = []
    for route in service.routes.values():
        rules = [{"name": r.name, "kind": r.kind} for r in book.for_alias(route.alias)]
        for dep, configured in zip(route.deployments, route.spec.deployments, strict=True):
            override = overrides.get(dep.id)
            rows.append(
                {
                    "id": dep.id,
                    "alias": dep.alias,
                    "provider": dep.target.provider,
                    "model": dep.target.model,
                    "breaker": dep.breaker.state.value,
                    "degraded": dep.degraded,
                    "inflight": dep.inflight,
                    "paced_for_s": round(max(0.0, dep.paced_until - clock), 3) if dep.paced else None,
                    "latency_ewma_ms": None if dep.latency_ewma_s is None else round(dep.latency_ewma_s * 1000, 3),
                    "priority": dep.spec.priority,
                    "weight": dep.spec.weight,
                    "rules": rules,
                    "window": None
                    if override is None
                    else {
                        "rules": list(override.rules),
                        "priority": override.priority,
                        "weight": override.weight,
                        "configured": {"priority": configured.priority, "weight": configured.weight},
                    },
                }
            )
    return rows
