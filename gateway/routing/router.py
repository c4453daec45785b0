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

Deployments whose breaker is open, at their ``max_concurrency``, over their own
rpm/tpm (the traffic-control *gate*) or *paced* by their upstream
(:mod:`gateway.routing.pacing`) are skipped. A retry waits at least until its
deployment's pause ends, unless a later deployment of the alias could take the
request now: then it goes there first. Deployments the scheduled health checks
marked *degraded* are tried last. Everything is bounded by the total deadline and
by ``retry.max_attempts``.

When a pass over the chain of aliases tried nothing because deployments were busy
(at their cap, paced or over their own limits: capacity that comes back), and the
caller gave a ``wait_for_capacity``, the router awaits it with a hint (the seconds
until the earliest pause ends, or None) and, if it answers True, walks the chain
again. Without one, or when it answers False, the answer is 503
``no_deployment_available`` with a Retry-After. Open breakers alone never wait.
The wait is cancelled when the request's deadline passes; a wait answered True
that is followed by another pass that tries nothing pauses ``REPASS_PAUSE_S``
first, so a waiter that cannot see why a deployment was refused cannot spin.

The attempt itself is a callable passed in, so the same loop serves chat,
streams (whose attempt ends once the first chunk is in hand: a stream can fall
back only before its first byte reaches the client) and embeddings. Making one
attempt (lease, verdict, observer, span) is :mod:`gateway.routing.attempt`; the
chain of fallback aliases :mod:`gateway.routing.fallback`.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.config.pacing import PacingSettings
from gateway.errors import AllDeploymentsFailed, GatewayError, NoDeploymentAvailable, UpstreamError
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
from gateway.routing.pacing import Pacer
from gateway.routing.retry import backoff_delay
from gateway.routing.strategies import STRATEGIES

__all__ = [
    "Attempt",
    "AttemptObserver",
    "AttemptSpans",
    "CapacityWait",
    "Gate",
    "Lease",
    "RequestTrace",
    "Router",
]

T = TypeVar("T")

CapacityWait = Callable[[float | None], Awaitable[bool]]
"""(seconds until the earliest pause ends, None when unknown) -> True to try again."""

REPASS_PAUSE_S = 0.02


@dataclass(slots=True)
class Skips:
    """The deployments one pass over the chain passed over, by why."""

    circuit_open: int = 0
    busy: int = 0
    """At their cap, paced or refused by the gate: capacity that comes back."""
    paced_until: float = math.inf
    """The earliest end of a pause among them (monotonic); inf when none was paced."""

    def hint(self, now: float) -> float | None:
        return max(0.0, self.paced_until - now) if self.paced_until < math.inf else None


class Router:
    """The attempt loop over one configuration's routes (see the module docstring)."""

    def __init__(
        self,
        routes: dict[str, Route],
        *,
        total_timeout_s: float,
        rng: random.Random | None = None,
        observer: AttemptObserver | None = None,
        pacing: PacingSettings | None = None,
        on_release: Callable[[], None] | None = None,
    ):
        """``pacing`` None: no answer paces a deployment (see :class:`Pacer`).
        ``on_release``: called whenever an attempt gives its deployment slot back."""
        self.routes = routes
        self.total_timeout_s = total_timeout_s
        self._rng = rng or random.Random()
        self._runner = AttemptRunner(observer, on_release)
        self.pacer = Pacer(pacing, observer)
        """Told of every upstream answer's head by the code that makes the attempts."""

    async def run(
        self,
        alias: str,
        attempt: Attempt[T],
        trace: RequestTrace,
        *,
        prompt_tokens: int | None = None,
        gate: Gate | None = None,
        wait_for_capacity: CapacityWait | None = None,
    ) -> T:
        route = self.routes[alias]
        deadline = time.monotonic() + self.total_timeout_s
        switched: set[str] = set()
        if route.spec.context_window and prompt_tokens and prompt_tokens > route.spec.context_window:
            chain = context_chain(route, trace, "context_window", switched)
        else:
            chain = [alias, *route.fallbacks]
        waited = False
        while True:
            skips = Skips()
            mark = len(trace.fallbacks)
            done, result = await self._pass(
                chain, attempt, trace, deadline, route.retry.max_attempts, gate, skips, switched
            )
            if done:
                return result  # type: ignore[return-value]
            if trace.failures or not skips.busy or wait_for_capacity is None:
                break
            if waited:  # the last wait said go, yet nothing could be tried
                await asyncio.sleep(REPASS_PAUSE_S)
            if not await _wait(wait_for_capacity, skips.hint(time.monotonic()), deadline):
                break
            waited = True
            del trace.fallbacks[mark:]  # the pass tried nothing: its switches are not the request's story
        raise _failed(alias, trace, skips)

    async def _pass(
        self,
        chain: list[str],
        attempt: Attempt[T],
        trace: RequestTrace,
        deadline: float,
        max_attempts: int,
        gate: Gate | None,
        skips: Skips,
        switched: set[str],
    ) -> tuple[bool, T | None]:
        """One walk over the chain of aliases: (True, result) on success."""
        pos = 0
        while pos < len(chain):
            current = self.routes[chain[pos]]
            if pos > 0:
                trace.fallbacks.append((chain[pos - 1], current.alias, leave_reason(trace)))
            try:
                done, result = await self._try_route(current, attempt, trace, deadline, max_attempts, gate, skips)
            except SwitchToContextFallback as switch:
                chain = context_chain(self.routes[switch.alias], trace, "context_length_exceeded", switched)
                pos = 0
                continue
            if done:
                return True, result
            pos += 1
            if trace.attempts >= max_attempts or time.monotonic() >= deadline:
                break
        return False, None

    async def _try_route(
        self,
        route: Route,
        attempt: Attempt[T],
        trace: RequestTrace,
        deadline: float,
        max_attempts: int,
        gate: Gate | None,
        skips: Skips,
    ) -> tuple[bool, T | None]:
        """(True, result) on success, else (False, None) with ``skips`` counted.
        ``max_attempts`` is the requested alias's bound, for the whole request."""
        policy = route.retry
        runner = self._runner
        deps = route.deployments
        order = deps if len(deps) == 1 else _healthy_first(STRATEGIES[route.spec.strategy](route, self._rng))
        for index, dep in enumerate(order):
            if trace.attempts >= max_attempts:
                return False, None
            now = time.monotonic()
            if dep.saturated or dep.paced_until > now:
                skips.busy += 1
                if now < dep.paced_until < skips.paced_until:
                    skips.paced_until = dep.paced_until
                continue
            # Checked before allow(): in half-open, allow() takes the one trial slot.
            if not dep.breaker.allow(now):
                skips.circuit_open += 1
                continue
            if gate is not None and not await _passes(gate, dep):
                skips.busy += 1
                continue
            for retry_number in range(policy.max_retries + 1):
                if retry_number:
                    if trace.attempts >= max_attempts:
                        return False, None
                    wait = _backoff(self._rng, route, dep, retry_number, trace, deadline, order[index + 1 :])
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
                return True, outcome  # type: ignore[return-value]
        return False, None


def _backoff(
    rng: random.Random,
    route: Route,
    dep: LiveDeployment,
    retry_number: int,
    trace: RequestTrace,
    deadline: float,
    later: list[LiveDeployment],
) -> float | None:
    """The wait before retrying ``dep``, or None to move on. A paced ``dep`` is a
    floor under the wait, unless one of the ``later`` deployments is ready now."""
    last = trace.failures[-1].error
    retry_after = last.retry_after if isinstance(last, UpstreamError) else None
    now = time.monotonic()
    paced = dep.paced_until - now
    if paced > 0:
        if any(d.available for d in later):
            return None
        retry_after = paced if retry_after is None else max(retry_after, paced)
    policy = route.retry
    if retry_after is not None and retry_after > policy.max_retry_after_s:
        return None
    wait = backoff_delay(policy, retry_number, retry_after, rng)
    if now + wait >= deadline:
        return None
    return wait


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


async def _wait(wait_for_capacity: CapacityWait, hint: float | None, deadline: float) -> bool:
    """The caller's wait for capacity, cut off (False) when the deadline passes."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    try:
        async with asyncio.timeout(left):
            return await wait_for_capacity(hint)
    except TimeoutError:
        return False


def _failed(alias: str, trace: RequestTrace, skips: Skips) -> GatewayError:
    """The error of a request that got no answer."""
    if not trace.failures:
        hint = skips.hint(time.monotonic())
        return NoDeploymentAvailable(
            f"no deployment of {alias!r} is available ({skips.circuit_open + skips.busy} skipped: "
            f"{skips.circuit_open} circuit open, {skips.busy} at capacity, paced or over their own limits)",
            retry_after=hint if hint else 1.0,
        )
    if len(trace.failures) == 1:
        return trace.failures[0].error
    return AllDeploymentsFailed(trace.failures)


def _healthy_first(order: list[LiveDeployment]) -> list[LiveDeployment]:
    """Deployments the health checks marked degraded move to the end (in strategy
    order): routed around while another deployment of the alias may be tried, yet
    still candidates, so an alias whose deployments are all degraded keeps serving."""
    if not any(d.degraded for d in order):
        return order
    return [d for d in order if not d.degraded] + [d for d in order if d.degraded]
