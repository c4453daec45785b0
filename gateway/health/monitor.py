"""Scheduled health checks: every ``health_checks.interval_s`` each chat
deployment gets a *check* (the configured probes, ``basic`` alone by default,
sent straight to it by :meth:`ProbeRunner.on_deployment`).

A check passes when all its probes pass; its score is the share that passed.
Per deployment the last ``window`` (M) checks are kept:

- ``failures`` (N) failed checks among them mark the deployment **degraded**:
  the router tries it only after the alias's other deployments
  (:func:`gateway.routing.router._healthy_first`);
- while degraded it is still checked; ``recover_after`` (K) passing checks in a
  row bring it back, with its window cleared of the old failures.

The health score exported per deployment is the average score of the checks in
its window. A config reload keeps the state of every deployment the reload
kept (same object); a changed or new deployment starts afresh. Turning
``enabled`` off clears every degraded mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.canonical import JSON
from gateway.config.operations import HealthCheckSettings
from gateway.health.probes import PROBES, health_score
from gateway.health.runner import ProbeResult, ProbeRunner
from gateway.observability.metrics import Metrics
from gateway.routing.deployment import LiveDeployment
from gateway.server.service import Service

log = logging.getLogger("gateway.health")


@dataclass(slots=True)
class Check:
    passed: bool
    score: int


@dataclass(slots=True)
class DeploymentHealth:
    """The scheduled checks' memory of one deployment."""

    deployment: LiveDeployment
    window: deque[Check]
    degraded: bool = False
    successes: int = 0
    """Passing checks in a row while degraded."""
    checks: int = 0
    last_at: float | None = None
    """Wall-clock time of the last check."""
    last: list[ProbeResult] = field(default_factory=list)

    @classmethod
    def new(cls, dep: LiveDeployment, policy: HealthCheckSettings) -> DeploymentHealth:
        return cls(dep, deque(maxlen=policy.window))

    @property
    def score(self) -> int | None:
        if not self.window:
            return None
        return round(sum(c.score for c in self.window) / len(self.window))

    def record(self, check: Check, policy: HealthCheckSettings) -> str | None:
        """Add a check's outcome; ``"degraded"`` or ``"restored"`` when the state changed."""
        if self.window.maxlen != policy.window:  # the window size changed on reload
            self.window = deque(self.window, maxlen=policy.window)
        self.window.append(check)
        self.checks += 1
        if self.degraded:
            self.successes = self.successes + 1 if check.passed else 0
            if self.successes >= policy.recover_after:
                self.degraded, self.successes = False, 0
                self.window.clear()
                self.window.append(check)
                return "restored"
            return None
        if sum(1 for c in self.window if not c.passed) >= policy.failures:
            self.degraded, self.successes = True, 0
            return "degraded"
        return None

    def to_json(self) -> JSON:
        dep = self.deployment
        return {
            "id": dep.id,
            "alias": dep.alias,
            "kind": dep.operation,
            "provider": dep.target.provider,
            "model": dep.target.model,
            "degraded": self.degraded,
            "health_score": self.score,
            "checks": self.checks,
            "recent": [c.passed for c in self.window],
            "last_checked_at": self.last_at,
            "last": [r.to_json() for r in self.last],
        }


class HealthMonitor:
    """The background task of scheduled checks, and their state per deployment."""

    def __init__(self, service: Callable[[], Service | None], metrics: Metrics) -> None:
        self._service = service
        self._metrics = metrics
        self.states: dict[str, DeploymentHealth] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.rounds = 0

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="health-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            service = self._service()
            policy = service.settings.health_checks if service is not None else HealthCheckSettings()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), policy.interval_s)
                return  # stopped
            service = self._service()
            if service is None:
                continue
            try:
                await self.run_round(service)
            except Exception:  # a bug in one round must not end the checks for good
                log.exception("a round of health checks failed")

    async def run_round(self, service: Service) -> None:
        """Check every chat deployment of ``service`` once (or clear the marks when disabled)."""
        policy = service.settings.health_checks
        deps = [d for route in service.routes.values() for d in route.deployments if d.operation == "chat"]
        self._sync(deps, policy)
        if not policy.enabled:
            for dep in deps:
                dep.degraded = False
            return
        runner = ProbeRunner(service, self._metrics, policy.timeout_s)
        slots = asyncio.Semaphore(policy.max_concurrent)

        async def check(dep: LiveDeployment) -> None:
            async with slots:
                results = [await runner.on_deployment(dep, PROBES[name]) for name in policy.probes]
            self._record(dep, results, policy)

        await asyncio.gather(*(check(dep) for dep in deps))
        self.rounds += 1

    def _sync(self, deps: list[LiveDeployment], policy: HealthCheckSettings) -> None:
        """States for exactly these deployments: new or rebuilt ones start afresh."""
        current = {d.id: d for d in deps}
        for did in [did for did, state in self.states.items() if current.get(did) is not state.deployment]:
            del self.states[did]
            if did not in current:
                self._metrics.forget_deployment_health(did)
        for did, dep in current.items():
            if did not in self.states:
                self.states[did] = DeploymentHealth.new(dep, policy)

    def _record(self, dep: LiveDeployment, results: list[ProbeResult], policy: HealthCheckSettings) -> None:
        state = self.states.get(dep.id)
        if state is None or state.deployment is not dep:  # the config changed during the round
            return
        passed = [r.passed for r in results]
        state.last, state.last_at = results, time.time()
        change = state.record(Check(all(passed), health_score(passed)), policy)
        dep.degraded = state.degraded
        self._metrics.deployment_health(dep.id, float(state.score or 0), state.degraded)
        if change == "degraded":
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in results if not r.passed)
            log.warning(
                "deployment %s degraded by health checks (%d of the last %d checks failed): %s",
                dep.id,
                sum(1 for c in state.window if not c.passed),
                len(state.window),
                reasons,
            )
        elif change == "restored":
            log.info("deployment %s restored: %d health checks passed in a row", dep.id, policy.recover_after)

    def snapshot(self, service: Service | None) -> list[JSON]:
        """The health of every deployment of ``service``: unchecked ones included
        (embedding deployments, ``kind: embeddings``, are never checked)."""
        if service is None:
            return []
        rows = []
        for route in service.routes.values():
            for dep in route.deployments:
                state = self.states.get(dep.id)
                if state is None or state.deployment is not dep:
                    state = DeploymentHealth.new(dep, service.settings.health_checks)
                    state.degraded = dep.degraded
                rows.append(state.to_json())
        return rows
