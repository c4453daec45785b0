"""The router's observer (gateway/routing/attempt.py ``AttemptObserver``) over the
metrics catalog: attempts to :meth:`Metrics.attempt`, upstream pacing to the
traffic-shaping metrics (``metrics.shaping``: ``gateway_upstream_paced_total`` and
``gateway_deployment_paced``)."""

from __future__ import annotations

from gateway.observability.metrics import Metrics
from gateway.routing.deployment import LiveDeployment


class RouterObserver:
    """One per router; ``attempt`` is the catalog's own method (no extra call per attempt)."""

    __slots__ = ("_metrics", "attempt")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.attempt = metrics.attempt

    def paced(self, dep: LiveDeployment, seconds: float, source: str) -> None:
        self._metrics.shaping.paced_upstream(dep.id, source, active=True)

    def pacing_ended(self, dep: LiveDeployment) -> None:
        self._metrics.shaping.paced_upstream(dep.id, "retry_after", active=False)
