"""One attempt of the router's loop: the :class:`Lease` it holds on a
deployment, the :class:`RequestTrace` of the whole request, and
:class:`AttemptRunner`, which makes one attempt and says what comes next.

An attempt that fails says, by its error, what the router does next:
:data:`RETRY` the same deployment (a *retryable* error), go on to the
:data:`NEXT` one (any other deployment fault, or a request this provider cannot
express), switch to the alias's context-window fallbacks
(:class:`SwitchToContextFallback`), or end the request (the client's own 4xx is
raised as it is).

The breaker hears every attempt's verdict except two: a request the provider cannot
express, and a 429 that paced the deployment (gateway/routing/pacing.py). The pause
already keeps requests off the deployment for as long as its upstream asked, so the
429s of a busy upstream do not also open its breaker for a cooldown of the gateway's
choosing. With pacing off, a 429 counts as a failure, as every retryable error does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.errors import AttemptFailure, GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.routing.deployment import LiveDeployment

T = TypeVar("T")

CONTEXT_ERROR_CODES = frozenset({"context_length_exceeded", "context_window_exceeded"})
RETRY = object()
"""Try the same deployment again (after a backoff)."""
NEXT = object()
"""Go on to the next deployment."""


@dataclass(slots=True)
class Lease:
    """One attempt's hold on a deployment: its in-flight slot and its verdict.

    The router settles it when the attempt returns or raises, unless the attempt
    called :meth:`keep` (a stream that goes on after the attempt returned); then
    whoever holds the stream must call :meth:`settle` when it ends. Settling gives
    the slot back and calls ``on_release`` (the router's: a waiter may go on).
    """

    deployment: LiveDeployment
    started: float
    on_release: Callable[[], None] | None = None
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
        else:
            dep.breaker.record(ok, time.monotonic())
            if ok and latency_s is not None:
                dep.observe_latency(latency_s)
        if self.on_release is not None:
            self.on_release()


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
    rule: str | None = None
    """The routing rule that chose the alias (its ``x-gateway-route`` value; gateway/routing/rules.py)."""


Attempt = Callable[[LiveDeployment, Lease, float], Awaitable[T]]
"""(deployment, lease, deadline as loop-independent monotonic time) -> result."""

Gate = Callable[[LiveDeployment], Awaitable[bool]]
"""May this deployment take the request now (its own rate limits)? False skips it."""


class AttemptObserver(Protocol):
    """Told of every attempt and every pacing (metrics); the router works without one."""

    def attempt(
        self,
        dep: LiveDeployment,
        seconds: float,
        error: GatewayError | None,
        retry: bool,
        exemplar: dict[str, str] | None = None,
    ) -> None: ...

    def paced(self, dep: LiveDeployment, seconds: float, source: str) -> None:
        """A pause of ``dep`` began (gateway/routing/pacing.py): ``seconds`` long for now,
        ``source`` ``retry_after`` (an error answer said when) or ``ratelimit_headers``
        (a rate-limit budget is spent until its reset)."""
        ...

    def pacing_ended(self, dep: LiveDeployment) -> None:
        """The pause of ``dep`` is over (told on the event loop soon after its end)."""
        ...


class AttemptSpans(Protocol):
    """Opens and closes a span around each attempt (only present when tracing is on)."""

    exemplar: dict[str, str] | None

    def start_attempt(self, dep: LiveDeployment, retry: bool) -> Any: ...

    def end_attempt(self, handle: Any, error: BaseException | None, result: object) -> None: ...


class SwitchToContextFallback(Exception):
    """The prompt is too long for ``alias``: go on with its context-window fallbacks."""

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self.alias = alias


class AttemptRunner:
    """Makes one attempt: takes and settles the lease, records the failure in
    the trace, tells the observer (metrics) and the attempt's span. One per router."""

    def __init__(self, observer: AttemptObserver | None, on_release: Callable[[], None] | None = None) -> None:
        self._observer = observer
        self._on_release = on_release

    async def once(
        self, dep: LiveDeployment, attempt: Attempt[T], trace: RequestTrace, deadline: float, retry: bool = False
    ) -> T | object:
        trace.attempts += 1
        dep.inflight += 1
        lease = Lease(dep, time.monotonic(), self._on_release)
        remaining = deadline - lease.started
        try:
            if remaining <= 0:
                raise UpstreamTimeout("the request's total timeout passed before this attempt")
            result = await attempt(dep, lease, min(deadline, lease.started + dep.timeouts.total_s))
        except UpstreamError as exc:
            # The client's own mistake says nothing about the deployment's health;
            # nor does a 429 that paced it (the module docstring).
            paced = exc.upstream_status == 429 and dep.paced_until > time.monotonic()
            lease.settle(None if paced else not exc.fallback)
            self._observe(dep, lease, trace, exc, retry)
            return self._after_failure(dep, exc, trace)
        except InvalidRequest as exc:
            # The request cannot be expressed for this provider; another may take it.
            lease.settle(None)
            trace.failures.append(AttemptFailure(dep.id, exc))
            if exc.code in CONTEXT_ERROR_CODES:
                raise SwitchToContextFallback(dep.alias) from None
            return NEXT
        except BaseException:
            lease.settle(None)
            raise
        trace.deployment = dep
        if not lease.kept:
            lease.settle(True, latency_s=time.monotonic() - lease.started)
        self._observe(dep, lease, trace, None, retry)
        return result

    async def traced(
        self,
        spans: AttemptSpans,
        dep: LiveDeployment,
        attempt: Attempt[T],
        trace: RequestTrace,
        deadline: float,
        retry: bool,
    ) -> T | object:
        """:meth:`once` inside the attempt's span."""
        handle = spans.start_attempt(dep, retry)
        try:
            outcome = await self.once(dep, attempt, trace, deadline, retry)
        except BaseException as exc:
            failed = trace.failures[-1].error if isinstance(exc, SwitchToContextFallback) else exc
            spans.end_attempt(handle, failed, None)
            raise
        failed_here = outcome is RETRY or outcome is NEXT
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
            raise SwitchToContextFallback(dep.alias)
        if not exc.fallback:
            raise exc
        return RETRY if exc.retryable else NEXT
