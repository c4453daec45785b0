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
back only before its first byte reaches the client) and embeddings.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.errors import (
    AllDeploymentsFailed,
    AttemptFailure,
    ContextWindowExceeded,
    GatewayError,
    InvalidRequest,
    NoDeploymentAvailable,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.routing.deployment import LiveDeployment, Route
from gateway.routing.retry import backoff_delay
from gateway.routing.strategies import STRATEGIES

T = TypeVar("T")

CONTEXT_ERROR_CODES = frozenset({"context_length_exceeded", "context_window_exceeded"})


@dataclass(slots=True)
class Lease:
    """One attempt's hold on a deployment: its in-flight slot and its verdict.

    The router settles it when the attempt returns or raises, unless the attempt
    called :meth:`keep` (a stream that goes on after the attempt returned); then
    whoever holds the stream must call :meth:`settle` when it ends.
    """

    deployment: LiveDeployment
    started: float
    kept: bool = False
    settled: bool = False

    def keep(self) -> None:
        self.kept = True

    def settle(self, ok: bool | None, *, latency_s: float | None = None) -> None:
        """``ok`` None: no verdict (client went away) - the breaker is not told."""
        if self.settled:
            return
        self.settled = True
        dep = self.deployment
        dep.inflight -= 1
        if ok is None:
            dep.breaker.release_trial()
            return
        dep.breaker.record(ok, time.monotonic())
        if ok and latency_s is not None:
            dep.observe_latency(latency_s)


@dataclass(slots=True)
class RequestTrace:
    """What the router did for one request (for headers, logs and metrics)."""

    attempts: int = 0
    deployment: LiveDeployment | None = None
    failures: list[AttemptFailure] = field(default_factory=list)
    upstream_s: float = 0.0
    """Time spent in attempts (waiting on upstreams), for the gateway's own added time."""
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    """(from alias, to alias, reason) for each switch of alias."""
    spans: AttemptSpans | None = None
    """Set when tracing is on: each attempt gets a span (gateway/observability/tracing.py)."""


Attempt = Callable[[LiveDeployment, Lease, float], Awaitable[T]]
"""(deployment, lease, deadline as loop-independent monotonic time) -> result."""

Gate = Callable[[LiveDeployment], Awaitable[bool]]
"""May this deployment take the request now (its own rate limits)? False skips it."""


class AttemptObserver(Protocol):
    """Told of every attempt (metrics); the router works without one."""

    def attempt(
        self,
        dep: LiveDeployment,
        seconds: float,
        error: GatewayError | None,
        retry: bool,
        exemplar: dict[str, str] | None = None,
    ) -> None: ...


class AttemptSpans(Protocol):
    """Opens and closes a span around each attempt (only present when tracing is on)."""

    exemplar: dict[str, str] | None

    def start_attempt(self, dep: LiveDeployment, retry: bool) -> Any: ...

    def end_attempt(self, handle: Any, error: BaseException | None, result: object) -> None: ...


class Router:
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
        self._observer = observer

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
            chain = self._context_chain(route, trace, "context_window", switched)
        else:
            chain = [alias, *route.fallbacks]
        skipped = 0
        pos = 0
        while pos < len(chain):
            current = self.routes[chain[pos]]
            if pos > 0:
                trace.fallbacks.append((chain[pos - 1], current.alias, _reason(trace)))
            try:
                done, result, skips = await self._try_route(
                    current, attempt, trace, deadline, route.retry.max_attempts, gate
                )
            except _SwitchToContextFallback as switch:
                chain = self._context_chain(self.routes[switch.alias], trace, "context_length_exceeded", switched)
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

    def _context_chain(self, route: Route, trace: RequestTrace, reason: str, switched: set[str]) -> list[str]:
        """The aliases to try once a prompt is too long for ``route``; aliases
        already found too small (``switched``) are not tried again."""
        switched.add(route.alias)
        chain = [a for a in route.spec.context_window_fallbacks if a not in switched]
        if not chain:
            if trace.failures:
                raise trace.failures[-1].error
            raise ContextWindowExceeded(
                f"the prompt exceeds the context window of {route.alias!r} and it has no larger fallback",
                param="messages",
            )
        trace.fallbacks.append((route.alias, chain[0], reason))
        return chain

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
                    outcome = await self._attempt_once(dep, attempt, trace, deadline, retry_number > 0)
                else:
                    outcome = await self._traced_attempt(trace.spans, dep, attempt, trace, deadline, retry_number > 0)
                if outcome is _RETRY:
                    continue
                if outcome is _NEXT:
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

    async def _attempt_once(
        self, dep: LiveDeployment, attempt: Attempt[T], trace: RequestTrace, deadline: float, retry: bool = False
    ) -> T | object:
        trace.attempts += 1
        dep.inflight += 1
        lease = Lease(dep, time.monotonic())
        remaining = deadline - lease.started
        try:
            if remaining <= 0:
                raise UpstreamTimeout("the request's total timeout passed before this attempt")
            result = await attempt(dep, lease, min(deadline, lease.started + dep.timeouts.total_s))
        except UpstreamError as exc:
            # The client's own mistake says nothing about the deployment's health.
            lease.settle(not exc.fallback)
            self._observe(dep, lease, trace, exc, retry)
            return self._after_failure(dep, exc, trace)
        except InvalidRequest as exc:
            # The request cannot be expressed for this provider; another may take it.
            lease.settle(None)
            trace.failures.append(AttemptFailure(dep.id, exc))
            if exc.code in CONTEXT_ERROR_CODES:
                raise _SwitchToContextFallback(dep.alias) from None
            return _NEXT
        except BaseException:
            lease.settle(None)
            raise
        trace.deployment = dep
        if not lease.kept:
            lease.settle(True, latency_s=time.monotonic() - lease.started)
        self._observe(dep, lease, trace, None, retry)
        return result

    async def _traced_attempt(
        self,
        spans: AttemptSpans,
        dep: LiveDeployment,
        attempt: Attempt[T],
        trace: RequestTrace,
        deadline: float,
        retry: bool,
    ) -> T | object:
        """:meth:`_attempt_once` inside the attempt's span."""
        handle = spans.start_attempt(dep, retry)
        try:
            outcome = await self._attempt_once(dep, attempt, trace, deadline, retry)
        except BaseException as exc:
            failed = trace.failures[-1].error if isinstance(exc, _SwitchToContextFallback) else exc
            spans.end_attempt(handle, failed, None)
            raise
        failed_here = outcome is _RETRY or outcome is _NEXT
        spans.end_attempt(handle, trace.failures[-1].error if failed_here else None, outcome)
        return outcome

    def _observe(
        self, dep: LiveDeployment, lease: Lease, trace: RequestTrace, error: GatewayError | None, retry: bool
    ) -> None:
        seconds = time.monotonic() - lease.started
        trace.upstream_s += seconds
        if self._observer is not None:
            if trace.spans is None:
                self._observer.attempt(dep, seconds, error, retry)
            else:
                self._observer.attempt(dep, seconds, error, retry, trace.spans.exemplar)

    def _after_failure(self, dep: LiveDeployment, exc: UpstreamError, trace: RequestTrace) -> object:
        trace.failures.append(AttemptFailure(dep.id, exc))
        if exc.code in CONTEXT_ERROR_CODES:
            raise _SwitchToContextFallback(dep.alias)
        if not exc.fallback:
            raise exc
        return _RETRY if exc.retryable else _NEXT


def _healthy_first(order: list[LiveDeployment]) -> list[LiveDeployment]:
    """Deployments the health checks marked degraded move to the end (in strategy
    order): routed around while another deployment of the alias may be tried, yet
    still candidates, so an alias whose deployments are all degraded keeps serving."""
    if not any(d.degraded for d in order):
        return order
    return [d for d in order if not d.degraded] + [d for d in order if d.degraded]


class _SwitchToContextFallback(Exception):
    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self.alias = alias


_RETRY = object()
_NEXT = object()


def _reason(trace: RequestTrace) -> str:
    """Why an alias was left: a bounded label value, never an upstream's own error text
    (an upstream's error code is whatever its body said)."""
    if not trace.failures:
        return "unavailable"
    err = trace.failures[-1].error
    if isinstance(err, (UpstreamTimeout, UpstreamUnavailable, UpstreamBadResponse)):
        return err.default_code
    if isinstance(err, UpstreamError):
        return f"http_{err.upstream_status}"
    return err.default_code
