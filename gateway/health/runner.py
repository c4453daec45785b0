"""Running a probe: one canonical chat request through the same translation and
HTTP code as client traffic (:meth:`Service.chat_attempt`), but *not* through
traffic control: no rate limit, cache, budget or spend ledger sees it. Its usage
and cost go to the probe metrics only.

Two ways in:

- :meth:`ProbeRunner.on_deployment`: exactly that deployment, whatever its
  breaker or health state (how a degraded deployment is seen to recover). The
  breaker is not told the verdict.
- :meth:`ProbeRunner.on_alias`: through the router, as a client request to the
  alias would go (strategy, retries, breakers, degraded deployments last), but
  without the alias's ``fallbacks``: a test of an alias must not pass because
  another alias answered.

Neither changes the live routing state: :meth:`on_alias` routes over *detached*
copies of the deployments (:func:`detached_routes`), whose breakers start in the
live breakers' state (an open breaker is skipped, as for a client) but record the
probe's verdicts only into the copies; the in-flight count, latency average and
pacing of the live deployments are not touched either. A failed connection test
of an unreachable model therefore never opens the breaker that client traffic
uses (tests/e2e/test_probe_breaker.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from gateway.canonical import JSON
from gateway.errors import AllDeploymentsFailed, GatewayError, UpstreamErrorPage
from gateway.health.probes import Probe
from gateway.observability.metrics import Metrics
from gateway.policies.pricing import cost_usd
from gateway.routing.deployment import LiveDeployment, Route
from gateway.routing.router import Lease, RequestTrace, Router
from gateway.server.service import Service

MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    passed: bool
    latency_ms: float
    reason: str
    deployment: str | None
    """The deployment that answered (None when none did)."""
    cost_usd: float | None = None
    """None when the answer had no usage or the model has no price."""

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "passed": self.passed,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "deployment": self.deployment,
            "cost_usd": self.cost_usd,
        }


def answer_text(answer: JSON) -> str:
    """The text of a canonical chat completion's first choice ("" if none)."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def said(err: GatewayError) -> str:
    """What an error says in a connection test's reason: its message, but never an
    upstream's body beyond its error message (an answer with no error envelope, a
    proxy's or any internal server's page, is reported by its status alone)."""
    if isinstance(err, AllDeploymentsFailed):
        story = "; ".join(f"{f.deployment}: {said(f.error)}" for f in err.failures)
        return f"all {len(err.failures)} attempt(s) failed: {story}"
    if isinstance(err, UpstreamErrorPage):
        return err.summary
    return err.message


def _failure(err: BaseException) -> str:
    if isinstance(err, GatewayError):
        text = f"{err.code}: {said(err)}"
    elif isinstance(err, TimeoutError):
        text = "timeout: the probe took longer than its limit"
    else:
        text = f"{type(err).__name__}: {err}"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _detach(dep: LiveDeployment) -> LiveDeployment:
    return dataclasses.replace(dep, breaker=dep.breaker.copy())


def detached_routes(routes: dict[str, Route], alias: str) -> dict[str, Route]:
    """``alias``'s route without its ``fallbacks``, and the routes of the aliases its
    context-window fallbacks can reach, over detached copies of their deployments
    (a probe's verdicts, in-flight count and latency stay with the copies)."""
    out: dict[str, Route] = {}
    todo = [alias]
    while todo:
        name = todo.pop()
        if name in out or name not in routes:
            continue
        route = routes[name]
        out[name] = dataclasses.replace(route, deployments=[_detach(d) for d in route.deployments], fallbacks=[])
        todo.extend(route.spec.context_window_fallbacks)
    return out


class ProbeRunner:
    """Runs probes with one :class:`Service` (the configuration in force)."""

    def __init__(self, service: Service, metrics: Metrics, timeout_s: float) -> None:
        self._service = service
        self._metrics = metrics
        self._timeout_s = timeout_s

    async def on_deployment(self, dep: LiveDeployment, probe: Probe) -> ProbeResult:
        req = probe.request(dep.alias)
        started = time.monotonic()
        limit = min(self._timeout_s, dep.timeouts.total_s)
        try:
            async with asyncio.timeout(limit + 1.0):  # the HTTP client's own limits come first
                answer = await self._service.chat_attempt(dep, req, started + limit)
        except (GatewayError, TimeoutError) as err:
            return self._done(probe, dep, started, None, err)
        return self._done(probe, dep, started, answer, None)

    async def on_alias(self, route: Route, probe: Probe) -> ProbeResult:
        service = self._service
        req = probe.request(route.alias)
        total = min(self._timeout_s, service.settings.router.timeouts.total_s)
        router = Router(detached_routes({**service.routes, route.alias: route}, route.alias), total_timeout_s=total)
        trace = RequestTrace()

        async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> JSON:
            return await service.chat_attempt(dep, req, deadline)

        started = time.monotonic()
        try:
            async with asyncio.timeout(total + 1.0):
                answer = await router.run(route.alias, attempt, trace)
        except (GatewayError, TimeoutError) as err:
            return self._done(probe, trace.deployment, started, None, err)
        return self._done(probe, trace.deployment, started, answer, None)

    def _done(
        self,
        probe: Probe,
        dep: LiveDeployment | None,
        started: float,
        answer: JSON | None,
        err: BaseException | None,
    ) -> ProbeResult:
        seconds = time.monotonic() - started
        did = dep.id if dep is not None else None
        cost = None
        if answer is not None and dep is not None:
            cost = self._charge(dep, answer.get("usage"))
            verdict = probe.check(answer_text(answer))
            passed, reason = verdict.passed, verdict.reason
        else:
            passed, reason = False, _failure(err) if err is not None else "no answer"
        self._metrics.probe(did or "", probe.name, passed, seconds)
        return ProbeResult(probe.name, passed, round(seconds * 1000, 3), reason, did, cost)

    def _charge(self, dep: LiveDeployment, usage: Any) -> float | None:
        """The probe's usage and cost, to the probe metrics only (never the ledger)."""
        if not isinstance(usage, dict) or not usage:
            return None
        target = dep.target
        price = self._service.traffic.prices.price_for(target.provider, target.model, dep.spec.price)
        cost = cost_usd(usage, price) if price is not None else None
        self._metrics.probe_usage(dep.id, usage, cost)
        return cost
