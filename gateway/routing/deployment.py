"""Runtime objects the router works with: a deployment with its live state
(breaker, in-flight count, latency average, pacing) and a route (an alias's deployments,
strategy and fallbacks). Built from the validated settings by :func:`build_routes`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.config.settings import Deployment, ModelAlias, RetryPolicy, Settings, Timeouts, deployment_id
from gateway.providers.base import Provider, Target
from gateway.providers.registry import Preset, build_target
from gateway.routing.breaker import CircuitBreaker

LATENCY_EWMA_ALPHA = 0.2


@dataclass(eq=False, slots=True)
class LiveDeployment:
    id: str
    alias: str
    provider: Provider
    target: Target
    spec: Deployment
    timeouts: Timeouts
    breaker: CircuitBreaker
    inflight: int = 0
    latency_ewma_s: float | None = None
    operation: str = "chat"
    """The GenAI operation it serves: "chat" or "embeddings"."""
    degraded: bool = False
    """Marked by the scheduled health checks (gateway/health/monitor.py): the router
    tries it only after every deployment of its alias that is not degraded."""
    paced_until: float = 0.0
    """Monotonic time before which its upstream asked not to be sent requests
    (gateway/routing/pacing.py); the router skips it until then."""

    @property
    def cost_per_1m(self) -> float:
        """Input plus output price, the lowest-cost strategy's yardstick
        (unpriced deployments sort last)."""
        price = self.spec.price
        return float("inf") if price is None else price.input_per_1m + price.output_per_1m

    @property
    def saturated(self) -> bool:
        cap = self.spec.max_concurrency
        return cap is not None and self.inflight >= cap

    @property
    def paced(self) -> bool:
        return self.paced_until > time.monotonic()

    @property
    def available(self) -> bool:
        """Could the router try it now: not at its cap, not paced, its breaker admitting.
        (Its own rpm/tpm limits, the traffic-control gate, are not known here.)"""
        now = time.monotonic()
        return not self.saturated and self.paced_until <= now and self.breaker.ready(now)

    def pace(self, seconds: float, now: float) -> bool:
        """No requests for ``seconds`` from ``now`` (a pause already longer stays).
        True when this starts a pause (it was not paced at ``now``)."""
        until = now + seconds
        started = self.paced_until <= now
        self.paced_until = max(self.paced_until, until)
        return started

    def observe_latency(self, seconds: float) -> None:
        prev = self.latency_ewma_s
        self.latency_ewma_s = seconds if prev is None else prev + LATENCY_EWMA_ALPHA * (seconds - prev)


@dataclass(eq=False, slots=True)
class Route:
    alias: str
    spec: ModelAlias
    deployments: list[LiveDeployment]
    retry: RetryPolicy
    turn: int = 0
    """Round-robin position."""
    fallbacks: list[str] = field(default_factory=list)


def build_routes(
    settings: Settings, presets: dict[str, Preset], previous: dict[str, Route] | None = None
) -> dict[str, Route]:
    """Routes for every alias. Deployments whose id, alias, spec, timeouts and
    breaker policy are unchanged from ``previous`` (a config reload) keep their
    breaker and latency history; any change builds them afresh."""
    old: dict[str, LiveDeployment] = {}
    for prev_route in (previous or {}).values():
        for prev in prev_route.deployments:
            old[prev.id] = prev
    routes = {}
    for alias, spec in settings.models.items():
        live = []
        for i, dep in enumerate(spec.deployments):
            did = deployment_id(alias, i, dep)
            timeouts = dep.timeouts.over(settings.router.timeouts)
            prior = old.get(did)
            if (
                prior is not None
                and prior.alias == alias
                and prior.spec == dep
                and prior.timeouts == timeouts
                and prior.breaker.policy == settings.router.breaker
            ):
                live.append(prior)
                continue
            preset = presets[dep.provider]
            responses = dep.api == "responses" and spec.kind == "chat" and preset.responses is not None
            live.append(
                LiveDeployment(
                    id=did,
                    alias=alias,
                    provider=preset.responses if responses and preset.responses else preset.provider,
                    target=build_target(dep, preset),
                    spec=dep,
                    timeouts=timeouts,
                    breaker=CircuitBreaker(settings.router.breaker),
                    operation="embeddings" if spec.kind == "embedding" else "chat",
                )
            )
        routes[alias] = Route(
            alias=alias,
            spec=spec,
            deployments=live,
            retry=spec.retry or settings.router.retry,
            fallbacks=list(spec.fallbacks),
        )
    return routes
