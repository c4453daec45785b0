"""The attempt loop: pick a deployment, try it, retry, fall back.

For one request the router walks, in order: the alias's deployments as its
strategy orders them, then each fallback alias's deployments. On each deployment
it makes up to ``1 + retry.max_retries`` attempts for a *retryable* error
(connect error, timeout, 429, 5xx, overload), waiting an exponential, jittered
backoff that honours Retry-After (a Retry-After longer than
``max_retry_after_s`` moves on at once). A non-retryable deployment fault
(upstream 401/403/404, a request the provider cannot express) moves on without
retrying. The client's own 4xx ends the request at once: falling back would
only repeat the mistake elsewhere. A context-length error switches to the
alias's ``context_window_fallbacks``.

Deployments whose breaker is open, or at their ``max_concurrency``, are skipped.
Deployments the scheduled health checks marked *degraded* are tried last.
Everything is bounded by the total deadline and by ``retry.max_attempts``.

The attempt itself is a callable passed in, so the same loop serves chat,
streams (whose attempt ends once the first chunk is in hand: a stream can fall
back only before its first byte reaches the client) and embeddings. Making one
attempt (lease, verdict, observer, span) is :mod:`gateway.routing.attempt`; the
chain of fallback aliases :mod:`gateway.routing.fallback`.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TypeVar

from gateway.errors import AllDeploymentsFailed, NoDeploymentAvailable, UpstreamError
from gateway.routing.attempt import (
    NEXT,
    RETRY,
    Attempt,
    AttemptObserver,
    AttemptRunner,
    AttemptSpans,
    Gate,
    Lease,
    RequestTrace,
    SwitchToContextFallback,
)
from gateway.routing.deployment import LiveDeployment, Route
from gateway.routing.fallback import context_chain, leave_reason
from gateway.routing.retry import backoff_delay
from gateway.routing.strategies import STRATEGIES

__all__ = ["Attempt", "AttemptObserver", "AttemptSpans", "Gate", "Lease", "RequestTrace", "Router"]

T = TypeVar("T")


class Router:
    """The attempt loop over one configuration's routes (see the module docstring)."""

    def __init__(
        self,
        routes: dict[str, Route],
        *,
        total_timeout_s: float,
        rng: random.Random | None = None,
        observer: AttemptObserver | None = None,
    ):
        self.routes = routes
        self.total_timeout_s = total_timeout_s
        self._rng = rng or random.Random()
        self._runner = AttemptRunner(observer)

    async def run(
        self,
        alias: str,
        attempt: Attempt[T],
        trace: RequestTrace,
        *,
        prompt_tokens: int | None = None,
        gate: Gate | None = None,
    ) -> T:
        route = self.routes[alias]
        deadline = time.monotonic() + self.total_timeout_s
        switched: set[str] = set()
        if route.spec.context_window and prompt_tokens and prompt_tokens > route.spec.context_window:
            chain = context_chain(route, trace, "context_window", switched)
        else:
            chain = [alias, *route.fallbacks]
        skipped = 0
        pos = 0
        while pos < len(chain):
            current = self.routes[chain[pos]]
            if pos > 0:
                trace.fallbacks.append((chain[pos - 1], current.alias, leave_reason(trace)))
            try:
                done, result, skips = await self._try_route(
                    current, attempt, trace, deadline, route.retry.max_attempts, gate
                )
            except SwitchToContextFallback as switch:
                chain = context_chain(self.routes[switch.alias], trace, "context_length_exceeded", switched)
                pos = 0
                continue
            if done:
                return result  # type: ignore[return-value]
            skipped += skips
            pos += 1
            if trace.attempts >= route.retry.max_attempts or time.monotonic() >= deadline:
                break
        if not trace.failures:
            raise NoDeploymentAvailable(
                f"no deployment of {alias!r} is available ({skipped} skipped: circuit open or at capacity)"
            )
        if len(trace.failures) == 1:
            raise trace.failures[0].error
        raise AllDeploymentsFailed(trace.failures)

    async def _try_route(
        self,
        route: Route,
        attempt: Attempt[T],
        trace: RequestTrace,
        deadline: float,
        max_attempts: int,
        gate: Gate | None = None,
    ) -> tuple[bool, T | None, int]:
        """(True, result, 0) on success, or (False, None, deployments skipped).
        ``max_attempts`` is the requested alias's bound, for the whole request."""
        skipped = 0
        policy = route.retry
        runner = self._runner
        deps = route.deployments
        order = deps if len(deps) == 1 else _healthy_first(STRATEGIES[route.spec.strategy](route, self._rng))
        for dep in order:
            # Checked before allow(): in half-open, allow() takes the one trial slot.
            if trace.attempts >= max_attempts:
                return False, None, skipped
            if dep.saturated or not dep.breaker.allow(time.monotonic()):
                skipped += 1
                continue
            if gate is not None and not await self._passes(gate, dep):
                skipped += 1
                continue
            for retry_number in range(policy.max_retries + 1):
                if retry_number:
                    if trace.attempts >= max_attempts:
                        return False, None, skipped
                    wait = self._backoff(route, retry_number, trace, deadline)
                    if wait is None:
                        break
                    await asyncio.sleep(wait)
                    if not dep.breaker.allow(time.monotonic()):
                        break
                if trace.spans is None:
                    outcome = await runner.once(dep, attempt, trace, deadline, retry_number > 0)
                else:
                    outcome = await runner.traced(trace.spans, dep, attempt, trace, deadline, retry_number > 0)
                if outcome is RETRY:
                    continue
                if outcome is NEXT:
                    break
                return True, outcome, 0  # type: ignore[return-value]
        return False, None, skipped

    @staticmethod
    async def _passes(gate: Gate, dep: LiveDeployment) -> bool:
        """The deployment's own limits; on a refusal or an error, give back the
        half-open trial that allow() may have taken."""
        try:
            ok = await gate(dep)
        except BaseException:
            dep.breaker.release_trial()
            raise
        if not ok:
            dep.breaker.release_trial()
        return ok

    def _backoff(self, route: Route, retry_number: int, trace: RequestTrace, deadline: float) -> float | None:
        last = trace.failures[-1].error
        retry_after = last.retry_after if isinstance(last, UpstreamError) else None
        policy = route.retry
        if retry_after is not None and retry_after > policy.max_retry_after_s:
            return None
        wait = backoff_delay(policy, retry_number, retry_after, self._rng)
        if time.monotonic() + wait >= deadline:
            return None
        return wait


def _healthy_first(order: list[LiveDeployment]) -> list[LiveDeployment]:
    """Deployments the health checks marked degraded move to the end (in strategy
    order): routed around while another deployment of the alias may be tried, yet
    still candidates, so an alias whose deployments are all degraded keeps serving."""
    if not any(d.degraded for d in order):
        return order
    return [d for d in order if not d.degraded] + [d for d in order if d.degraded]
