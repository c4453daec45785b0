"""``GET /admin/deployments``: the live routing state of every deployment."""

from __future__ import annotations

from typing import Any

from gateway.server.service import Service


def deployment_rows(service: Service | None) -> list[dict[str, Any]]:
    """Breaker, health mark, in-flight count and latency of each deployment (none while starting)."""
    if service is None:
        return []
    return [
        {
            "id": dep.id,
            "alias": dep.alias,
            "provider": dep.target.provider,
            "model": dep.target.model,
            "breaker": dep.breaker.state.value,
            "degraded": dep.degraded,
            "inflight": dep.inflight,
            "latency_ewma_ms": None if dep.latency_ewma_s is None else round(dep.latency_ewma_s * 1000, 3),
        }
        for route in service.routes.values()
        for dep in route.deployments
    ]
