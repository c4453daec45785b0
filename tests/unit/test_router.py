"""gateway.routing.router: the attempt loop (retry, fall back, skip, settle).

The attempt callables below stand in for the network: each deployment gets a
script of outcomes (a result or an exception to raise). ``asyncio.sleep`` is
replaced by a recorder so backoff waits are checked by value, not by clock.
"""

from __future__ import annotations

import asyncio
import random
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.config.loader import parse_config
from gateway.errors import (
    AllDeploymentsFailed,
    ContextWindowExceeded,
    GatewayError,
    InvalidRequest,
    NoDeploymentAvailable,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.registry import presets
from gateway.routing.breaker import BreakerState
from gateway.routing.deployment import LiveDeployment, Route, build_routes
from gateway.routing.router import Lease, RequestTrace, Router

FAST_RETRY = "{max_retries: 1, backoff_initial_s: 0.001, backoff_max_s: 0.002, max_retry_after_s: 5, max_attempts: 8}"
LENIENT_BREAKER = "{consecutive_failures: 50, min_requests: 50, cooldown_s: 60}"


def routes_from(models_yaml: str, *, retry: str = FAST_RETRY, breaker: str = LENIENT_BREAKER) -> dict[str, Route]:
    text = f"router:\n  retry: {retry}\n  breaker: {breaker}\nmodels:\n" + textwrap.indent(
        textwrap.dedent(models_yaml).strip(), "  "
    )
    return build_routes(parse_config(text, env={}).settings, presets())


def make_router(models_yaml: str, *, total_timeout_s: float = 30.0, **kw: str) -> Router:
    return Router(routes_from(models_yaml, **kw), total_timeout_s=total_timeout_s, rng=random.Random(0))


def dep(router: Router, dep_id: str) -> LiveDeployment:
    for route in router.routes.values():
        for d in route.deployments:
            if d.id == dep_id:
                return d
    raise KeyError(dep_id)


def upstream(status: int, *, code: str | None = None, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(f"upstream said {status}", upstream_status=status, code=code, retry_after=retry_after)


class Script:
    """An attempt callable: each deployment id maps to outcomes used in turn
    (the last repeats); an exception outcome is raised. Default: success."""

    def __init__(self, outcomes: dict[str, list[object]] | None = None) -> None:
        self.outcomes = {k: list(v) for k, v in (outcomes or {}).items()}
        self.calls: list[str] = []
        self.leases: list[Lease] = []
        self.inflight_seen: list[int] = []
        self.deadlines: list[float] = []

    async def __call__(self, d: LiveDeployment, lease: Lease, deadline: float) -> str:
        self.calls.append(d.id)
        self.leases.append(lease)
        self.inflight_seen.append(d.inflight)
        self.deadlines.append(deadline)
        queue = self.outcomes.get(d.id)
        outcome: object = f"ok from {d.id}"
        if queue:
            outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, str)
        return outcome


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    real_sleep = asyncio.sleep
    test_thread = threading.get_ident()

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        if threading.get_ident() != test_thread:  # another thread's loop (a mock server of the e2e suite)
            return await real_sleep(delay, result)
        recorded.append(delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


def settled(lease: Lease) -> bool:
    return lease.settled


def latency_of(d: LiveDeployment) -> float | None:
    return d.latency_ewma_s


def all_inflight_zero(router: Router) -> bool:
    return all(d.inflight == 0 for r in router.routes.values() for d in r.deployments)


TWO = """
a:
  deployments:
    - {provider: openai, model: m, id: a1}
    - {provider: openai, model: m, id: a2}
"""


# --- success ------------------------------------------------------------------------


async def test_success_on_first_deployment(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script()
    trace = RequestTrace()
    result = await router.run("a", script, trace)
    assert result == "ok from a1"
    assert script.calls == ["a1"]
    assert script.inflight_seen == [1]
    assert trace.attempts == 1
    assert trace.deployment is dep(router, "a1")
    assert trace.failures == []
    assert trace.fallbacks == []
    lease = script.leases[0]
    assert lease.settled
    assert not lease.kept
    assert all_inflight_zero(router)
    assert dep(router, "a1").latency_ewma_s is not None  # success latency observed
    assert dep(router, "a2").latency_ewma_s is None
    assert sleeps == []


async def test_attempt_deadline_is_bounded_by_deployment_total_timeout() -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: a1, timeouts: {total_s: 5}}
        """,
        total_timeout_s=300.0,
    )
    script = Script()
    before = time.monotonic()
    await router.run("a", script, RequestTrace())
    after = time.monotonic()
    assert before + 5.0 <= script.deadlines[0] <= after + 5.0


async def test_attempt_deadline_is_bounded_by_request_total_timeout() -> None:
    router = make_router(TWO, total_timeout_s=2.0)
    script = Script()
    before = time.monotonic()
    await router.run("a", script, RequestTrace())
    after = time.monotonic()
    assert before + 2.0 <= script.deadlines[0] <= after + 2.0


# --- retries ------------------------------------------------------------------------


async def test_retryable_error_retried_on_same_deployment_then_next(sleeps: list[float]) -> None:
    retry = "{max_retries: 2, backoff_initial_s: 0.001, backoff_max_s: 0.004, max_retry_after_s: 5, max_attempts: 8}"
    router = make_router(TWO, retry=retry)
    script = Script({"a1": [upstream(503)]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a1", "a1", "a2"]
    assert trace.attempts == 4
    assert [f.deployment for f in trace.failures] == ["a1", "a1", "a1"]
    assert all(isinstance(f.error, UpstreamError) and f.error.upstream_status == 503 for f in trace.failures)
    assert trace.deployment is dep(router, "a2")
    assert len(sleeps) == 2  # between the three attempts on a1, none before moving on
    assert 0.0 <= sleeps[0] <= 0.001
    assert 0.0 <= sleeps[1] <= 0.002
    assert all_inflight_zero(router)


async def test_retry_then_success_on_same_deployment(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [upstream(502), "second time lucky"]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "second time lucky"
    assert script.calls == ["a1", "a1"]
    assert trace.attempts == 2
    assert len(trace.failures) == 1
    assert trace.deployment is dep(router, "a1")
    assert len(sleeps) == 1


async def test_connect_error_and_timeout_are_retried(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [UpstreamUnavailable("refused"), UpstreamTimeout("slow"), "ok"]})
    trace = RequestTrace()
    # max_retries 1: a1 twice (connect error, timeout), then a2
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a1", "a2"]


async def test_retry_after_within_limit_is_a_floor_for_the_wait(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [upstream(429, retry_after=2.0), "ok after wait"]})
    assert await router.run("a", script, RequestTrace()) == "ok after wait"
    assert script.calls == ["a1", "a1"]
    assert sleeps == [2.0]


async def test_retry_after_above_max_moves_on_without_waiting(sleeps: list[float]) -> None:
    router = make_router(TWO)  # max_retry_after_s: 5
    script = Script({"a1": [upstream(429, retry_after=60.0)]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert sleeps == []


async def test_backoff_past_the_deadline_moves_on(sleeps: list[float]) -> None:
    # Retry-After 4s is allowed by policy, but the request has only 1s in total.
    router = make_router(TWO, total_timeout_s=1.0)
    script = Script({"a1": [upstream(503, retry_after=4.0)]})
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert sleeps == []


async def test_bad_response_is_not_retried_but_falls_over(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [UpstreamBadResponse("garbage")]})
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_deployment_fault_moves_to_next_without_retry(sleeps: list[float], status: int) -> None:
    router = make_router(TWO)
    script = Script({"a1": [upstream(status)]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert sleeps == []
    assert trace.failures[0].error.code == "upstream_deployment_error"
    assert all_inflight_zero(router)


# --- client errors --------------------------------------------------------------------


FALLBACK = """
a:
  fallbacks: [b]
  deployments:
    - {provider: openai, model: m, id: a1}
    - {provider: openai, model: m, id: a2}
b:
  deployments:
    - {provider: openai, model: m, id: b1}
"""


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_client_error_raised_at_once(sleeps: list[float], status: int) -> None:
    router = make_router(FALLBACK)
    err = upstream(status, code="invalid_value")
    script = Script({"a1": [err]})
    trace = RequestTrace()
    with pytest.raises(UpstreamError) as info:
        await router.run("a", script, trace)
    assert info.value is err
    assert script.calls == ["a1"]
    assert trace.attempts == 1
    assert trace.fallbacks == []
    assert sleeps == []
    assert all_inflight_zero(router)


async def test_client_error_does_not_trip_the_breaker() -> None:
    # BUG (see report): a client's own 400 is settled as a deployment failure, so
    # a few bad requests from one client open the circuit for everyone.
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    script = Script({"a1": [upstream(400)]})
    with pytest.raises(UpstreamError):
        await router.run("a", script, RequestTrace())
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED
    script2 = Script()
    assert await router.run("a", script2, RequestTrace()) == "ok from a1"


async def test_invalid_request_from_translation_moves_to_next(sleeps: list[float]) -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    err = InvalidRequest("this provider cannot take audio", param="messages[0].content[0]")
    script = Script({"a1": [err]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert trace.failures[0].deployment == "a1"
    assert trace.failures[0].error is err
    assert sleeps == []
    # no verdict on a1: its breaker (threshold 1) stays closed
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED
    assert all_inflight_zero(router)


# --- everything fails ------------------------------------------------------------------


async def test_all_failing_raises_all_deployments_failed(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [upstream(503)], "a2": [upstream(429)]})
    trace = RequestTrace()
    with pytest.raises(AllDeploymentsFailed) as info:
        await router.run("a", script, trace)
    exc = info.value
    assert script.calls == ["a1", "a1", "a2", "a2"]
    assert [f.deployment for f in exc.failures] == ["a1", "a1", "a2", "a2"]
    assert exc.http_status == 429  # status of the last attempt
    assert exc.code == "upstream_error"
    assert exc.message.startswith("all 4 attempt(s) failed: a1: upstream said 503; a1: upstream said 503; a2:")
    assert trace.deployment is None
    assert all_inflight_zero(router)


async def test_all_failing_status_of_last_deployment_fault(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [upstream(503)], "a2": [upstream(401, code="invalid_api_key")]})
    with pytest.raises(AllDeploymentsFailed) as info:
        await router.run("a", script, RequestTrace())
    assert info.value.http_status == 502
    assert info.value.code == "upstream_deployment_error"


async def test_single_failure_is_reraised_as_itself(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: only}
        """,
        retry="{max_retries: 0}",
    )
    err = upstream(503)
    script = Script({"only": [err]})
    with pytest.raises(UpstreamError) as info:
        await router.run("a", script, RequestTrace())
    assert info.value is err
    assert not isinstance(info.value, AllDeploymentsFailed)


# --- fallback aliases ------------------------------------------------------------------


async def test_fallback_alias_tried_after_own_deployments(sleeps: list[float]) -> None:
    router = make_router(FALLBACK)
    script = Script({"a1": [upstream(503)], "a2": [upstream(503)]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from b1"
    assert script.calls == ["a1", "a1", "a2", "a2", "b1"]
    assert trace.fallbacks == [("a", "b", "http_503")]
    assert trace.deployment is dep(router, "b1")
    assert trace.attempts == 5


async def test_fallback_reason_for_connect_error(sleeps: list[float]) -> None:
    router = make_router(FALLBACK)
    script = Script({"a1": [UpstreamUnavailable("refused")], "a2": [UpstreamUnavailable("refused")]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from b1"
    assert trace.fallbacks == [("a", "b", "upstream_connect_error")]


async def test_fallback_reason_never_carries_an_upstream_error_code(sleeps: list[float]) -> None:
    """A 502 whose body names a code of the upstream's own: the label stays bounded."""
    router = make_router(FALLBACK)
    own = UpstreamError("bad gateway", upstream_status=502, retryable=True, fallback=True, code="req_8f3a9c-user-42")
    script = Script({"a1": [own, own], "a2": [own, own]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from b1"
    assert trace.fallbacks == [("a", "b", "http_502")]


async def test_fallback_alias_not_used_when_own_deployment_succeeds(sleeps: list[float]) -> None:
    router = make_router(FALLBACK)
    script = Script({"a1": [upstream(503)]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert trace.fallbacks == []


async def test_fallback_failure_after_own_failures_is_all_failed(sleeps: list[float]) -> None:
    router = make_router(FALLBACK, retry="{max_retries: 0}")
    script = Script({"a1": [upstream(503)], "a2": [upstream(500)], "b1": [upstream(502)]})
    trace = RequestTrace()
    with pytest.raises(AllDeploymentsFailed) as info:
        await router.run("a", script, trace)
    assert [f.deployment for f in info.value.failures] == ["a1", "a2", "b1"]
    assert info.value.http_status == 502
    assert trace.fallbacks == [("a", "b", "http_500")]


async def test_fallbacks_used_when_all_own_deployments_skipped(sleeps: list[float]) -> None:
    router = make_router(FALLBACK, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    for d in ("a1", "a2"):
        dep(router, d).breaker.record(False, time.monotonic())
    script = Script()
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from b1"
    assert script.calls == ["b1"]
    assert trace.fallbacks == [("a", "b", "unavailable")]


# --- skipping ------------------------------------------------------------------------------


async def test_breaker_open_deployment_skipped(sleeps: list[float]) -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    dep(router, "a1").breaker.record(False, time.monotonic())
    assert dep(router, "a1").breaker.state is BreakerState.OPEN
    script = Script()
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a2"]
    assert trace.attempts == 1


async def test_nothing_attempted_raises_no_deployment_available(sleeps: list[float]) -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    for d in ("a1", "a2"):
        dep(router, d).breaker.record(False, time.monotonic())
    script = Script()
    trace = RequestTrace()
    with pytest.raises(NoDeploymentAvailable) as info:
        await router.run("a", script, trace)
    assert info.value.http_status == 503
    assert info.value.code == "no_deployment_available"
    assert "2 skipped" in info.value.message
    assert script.calls == []
    assert trace.attempts == 0


async def test_breaker_opened_by_router_failures_skips_on_next_request(sleeps: list[float]) -> None:
    router = make_router(TWO, retry="{max_retries: 0}", breaker="{consecutive_failures: 1, cooldown_s: 60}")
    script = Script({"a1": [upstream(503)]})
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert dep(router, "a1").breaker.state is BreakerState.OPEN
    script2 = Script()
    assert await router.run("a", script2, RequestTrace()) == "ok from a2"
    assert script2.calls == ["a2"]


async def test_retry_stops_when_breaker_opens_mid_request(sleeps: list[float]) -> None:
    retry = "{max_retries: 3, backoff_initial_s: 0.001, backoff_max_s: 0.001, max_retry_after_s: 5, max_attempts: 8}"
    router = make_router(TWO, retry=retry, breaker="{consecutive_failures: 2, cooldown_s: 60}")
    script = Script({"a1": [upstream(503)]})
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a1", "a1", "a2"]


async def test_saturated_deployment_skipped(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: a1, max_concurrency: 2}
            - {provider: openai, model: m, id: a2}
        """
    )
    a1 = dep(router, "a1")
    a1.inflight = 2  # two requests already running there
    script = Script()
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a2"]
    assert a1.inflight == 2
    a1.inflight = 1
    script2 = Script()
    assert await router.run("a", script2, RequestTrace()) == "ok from a1"
    assert script2.inflight_seen == [2]
    assert a1.inflight == 1


async def test_only_saturated_deployment_gives_no_deployment_available(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: a1, max_concurrency: 1}
        """
    )
    dep(router, "a1").inflight = 1
    script = Script()
    with pytest.raises(NoDeploymentAvailable) as info:
        await router.run("a", script, RequestTrace())
    assert "1 skipped" in info.value.message
    assert script.calls == []


async def test_max_concurrency_enforced_for_concurrent_requests(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: a1, max_concurrency: 1}
            - {provider: openai, model: m, id: a2}
        """
    )
    gate = asyncio.Event()
    started = {"a1": asyncio.Event(), "a2": asyncio.Event()}

    async def slow(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        started[d.id].set()
        await gate.wait()
        return d.id

    first = asyncio.create_task(router.run("a", slow, RequestTrace()))
    await started["a1"].wait()
    second = asyncio.create_task(router.run("a", slow, RequestTrace()))
    await started["a2"].wait()  # a1 is at its cap of 1, so the second request goes to a2
    assert dep(router, "a1").inflight == 1
    assert dep(router, "a2").inflight == 1
    gate.set()
    assert await first == "a1"
    assert await second == "a2"
    assert all_inflight_zero(router)


# --- bounds ------------------------------------------------------------------------------


async def test_max_attempts_bounds_the_request(sleeps: list[float]) -> None:
    retry = "{max_retries: 1, backoff_initial_s: 0.001, backoff_max_s: 0.001, max_retry_after_s: 5, max_attempts: 3}"
    router = make_router(
        """
        a:
          fallbacks: [b]
          deployments:
            - {provider: openai, model: m, id: a1}
            - {provider: openai, model: m, id: a2}
            - {provider: openai, model: m, id: a3}
        b:
          deployments:
            - {provider: openai, model: m, id: b1}
        """,
        retry=retry,
    )
    script = Script({"a1": [upstream(503)], "a2": [upstream(503)], "a3": [upstream(503)], "b1": [upstream(503)]})
    trace = RequestTrace()
    with pytest.raises(AllDeploymentsFailed) as info:
        await router.run("a", script, trace)
    assert script.calls == ["a1", "a1", "a2"]
    assert trace.attempts == 3
    assert len(info.value.failures) == 3


async def test_max_attempts_does_not_leak_half_open_trial(sleeps: list[float]) -> None:
    # BUG (see report): when max_attempts is reached just after a2's breaker
    # granted its half-open trial slot, the slot is never given back and a2 is
    # refused for ever after.
    retry = "{max_retries: 1, backoff_initial_s: 0.001, backoff_max_s: 0.001, max_retry_after_s: 5, max_attempts: 2}"
    router = make_router(TWO, retry=retry, breaker="{consecutive_failures: 3, min_requests: 50, cooldown_s: 1}")
    a2 = dep(router, "a2")
    for _ in range(3):
        a2.breaker.record(False, time.monotonic() - 100.0)  # opened long ago: cooldown over
    assert a2.breaker.state is BreakerState.OPEN
    script = Script({"a1": [upstream(503)]})
    with pytest.raises(AllDeploymentsFailed):
        await router.run("a", script, RequestTrace())
    assert script.calls == ["a1", "a1"]  # a2 was never attempted
    assert a2.breaker.allow(time.monotonic())


async def test_total_timeout_already_passed(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          deployments:
            - {provider: openai, model: m, id: a1}
        """,
        total_timeout_s=0.0,
    )
    script = Script()
    trace = RequestTrace()
    with pytest.raises(UpstreamTimeout) as info:
        await router.run("a", script, trace)
    assert script.calls == []
    assert info.value.http_status == 504
    assert trace.attempts == 1
    assert all_inflight_zero(router)


async def test_alias_retry_policy_overrides_router_policy(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          retry: {max_retries: 3, backoff_initial_s: 0.001, backoff_max_s: 0.001}
          deployments:
            - {provider: openai, model: m, id: a1}
            - {provider: openai, model: m, id: a2}
        """,
        retry="{max_retries: 0}",
    )
    script = Script({"a1": [upstream(503)]})
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a1", "a1", "a1", "a1", "a2"]


async def test_round_robin_strategy_used_by_router(sleeps: list[float]) -> None:
    router = make_router(
        """
        a:
          strategy: round_robin
          deployments:
            - {provider: openai, model: m, id: a1}
            - {provider: openai, model: m, id: a2}
        """
    )
    winners = [await router.run("a", Script(), RequestTrace()) for _ in range(4)]
    assert winners == ["ok from a1", "ok from a2", "ok from a1", "ok from a2"]


# --- context window ----------------------------------------------------------------------


CONTEXT = """
small:
  context_window: 100
  context_window_fallbacks: [big]
  fallbacks: [other]
  deployments:
    - {provider: openai, model: m, id: s1}
    - {provider: openai, model: m, id: s2}
big:
  context_window: 1000
  deployments:
    - {provider: openai, model: m, id: b1}
other:
  deployments:
    - {provider: openai, model: m, id: o1}
"""


async def test_context_window_precheck_routes_to_context_fallbacks(sleeps: list[float]) -> None:
    router = make_router(CONTEXT)
    script = Script()
    trace = RequestTrace()
    assert await router.run("small", script, trace, prompt_tokens=500) == "ok from b1"
    assert script.calls == ["b1"]
    assert trace.fallbacks == [("small", "big", "context_window")]


async def test_context_window_precheck_not_triggered_when_prompt_fits(sleeps: list[float]) -> None:
    router = make_router(CONTEXT)
    script = Script()
    trace = RequestTrace()
    assert await router.run("small", script, trace, prompt_tokens=100) == "ok from s1"
    assert trace.fallbacks == []


async def test_context_window_precheck_without_fallbacks_raises(sleeps: list[float]) -> None:
    router = make_router(
        """
        small:
          context_window: 100
          deployments:
            - {provider: openai, model: m, id: s1}
        """
    )
    script = Script()
    with pytest.raises(ContextWindowExceeded) as info:
        await router.run("small", script, RequestTrace(), prompt_tokens=101)
    assert info.value.http_status == 400
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert script.calls == []


async def test_upstream_context_length_error_switches_to_context_fallbacks(sleeps: list[float]) -> None:
    router = make_router(CONTEXT)
    script = Script({"s1": [upstream(400, code="context_length_exceeded")]})
    trace = RequestTrace()
    assert await router.run("small", script, trace, prompt_tokens=10) == "ok from b1"
    # not s2 (same window), not other (an ordinary fallback)
    assert script.calls == ["s1", "b1"]
    assert trace.fallbacks == [("small", "big", "context_length_exceeded")]
    assert sleeps == []


async def test_context_window_exceeded_from_translation_switches_too(sleeps: list[float]) -> None:
    router = make_router(CONTEXT)
    script = Script({"s1": [ContextWindowExceeded("too long for this provider")]})
    trace = RequestTrace()
    assert await router.run("small", script, trace) == "ok from b1"
    assert script.calls == ["s1", "b1"]


async def test_context_error_without_context_fallbacks_reraises(sleeps: list[float]) -> None:
    router = make_router(TWO)
    err = upstream(400, code="context_length_exceeded")
    script = Script({"a1": [err]})
    with pytest.raises(UpstreamError) as info:
        await router.run("a", script, RequestTrace())
    assert info.value is err
    assert script.calls == ["a1"]


async def test_context_fallback_that_also_overflows_ends(sleeps: list[float]) -> None:
    router = make_router(CONTEXT)
    err_big = upstream(400, code="context_length_exceeded")
    script = Script({"s1": [upstream(400, code="context_length_exceeded")], "b1": [err_big]})
    with pytest.raises(UpstreamError) as info:
        await router.run("small", script, RequestTrace())
    assert info.value is err_big
    assert script.calls == ["s1", "b1"]


CYCLE = """
x:
  context_window: 10
  context_window_fallbacks: [y]
  deployments:
    - {provider: openai, model: m, id: x1}
y:
  context_window_fallbacks: [x]
  deployments:
    - {provider: openai, model: m, id: y1}
"""


async def test_context_fallback_cycle_does_not_loop_forever(sleeps: list[float]) -> None:
    router = make_router(CYCLE)
    overflow: list[object] = [upstream(400, code="context_length_exceeded")]
    script = Script({"x1": overflow, "y1": overflow})
    with pytest.raises(UpstreamError) as info:
        await asyncio.wait_for(router.run("x", script, RequestTrace()), timeout=5)
    assert info.value.code == "context_length_exceeded"
    assert script.calls[:2] == ["x1", "y1"]
    assert len(script.calls) <= 3


async def test_context_precheck_then_overflow_in_fallback_cycle_ends(sleeps: list[float]) -> None:
    router = make_router(CYCLE)
    overflow: list[object] = [upstream(400, code="context_window_exceeded")]
    script = Script({"x1": overflow, "y1": overflow})
    with pytest.raises(UpstreamError) as info:
        await asyncio.wait_for(router.run("x", script, RequestTrace(), prompt_tokens=50), timeout=5)
    assert info.value.code == "context_window_exceeded"
    assert script.calls[:1] == ["y1"]
    assert len(script.calls) <= 2


async def test_context_fallback_does_not_revisit_an_alias_known_too_small(sleeps: list[float]) -> None:
    # BUG (see report): once x overflowed (or failed the precheck), y's
    # context_window_fallbacks [x] sends the same too-long prompt back to x.
    router = make_router(CYCLE)
    overflow: list[object] = [upstream(400, code="context_length_exceeded")]
    script = Script({"x1": overflow, "y1": overflow})
    with pytest.raises(UpstreamError):
        await router.run("x", script, RequestTrace())
    assert script.calls == ["x1", "y1"]

    script2 = Script({"x1": overflow, "y1": overflow})
    with pytest.raises(UpstreamError):
        await router.run("x", script2, RequestTrace(), prompt_tokens=50)
    assert script2.calls == ["y1"]


# --- cancellation and leases ---------------------------------------------------------------


async def test_cancelled_error_inside_attempt_releases_slot_without_verdict() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    script = Script({"a1": [asyncio.CancelledError()]})
    trace = RequestTrace()
    with pytest.raises(asyncio.CancelledError):
        await router.run("a", script, trace)
    assert script.calls == ["a1"]  # no fallback after cancellation
    assert all_inflight_zero(router)
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED
    assert trace.failures == []
    assert script.leases[0].settled


async def test_task_cancel_mid_attempt_releases_slot() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    started = asyncio.Event()
    never = asyncio.Event()

    async def hang(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        started.set()
        await never.wait()
        return "unreachable"

    task = asyncio.create_task(router.run("a", hang, RequestTrace()))
    await started.wait()
    assert dep(router, "a1").inflight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all_inflight_zero(router)
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED


async def test_cancel_during_half_open_trial_frees_the_trial() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 1}")
    a1 = dep(router, "a1")
    a1.breaker.record(False, time.monotonic() - 100.0)
    script = Script({"a1": [asyncio.CancelledError()]})
    with pytest.raises(asyncio.CancelledError):
        await router.run("a", script, RequestTrace())
    assert script.calls == ["a1"]
    assert a1.breaker.state is BreakerState.HALF_OPEN
    assert a1.breaker.allow(time.monotonic())  # the trial slot is free again


async def test_unexpected_exception_releases_slot_and_propagates() -> None:
    router = make_router(TWO)
    script = Script({"a1": [RuntimeError("bug in attempt")]})
    with pytest.raises(RuntimeError, match="bug in attempt"):
        await router.run("a", script, RequestTrace())
    assert script.calls == ["a1"]
    assert all_inflight_zero(router)


async def test_lease_keep_leaves_settlement_to_caller() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    leases: list[Lease] = []

    async def stream_start(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        lease.keep()
        leases.append(lease)
        return "first chunk"

    trace = RequestTrace()
    assert await router.run("a", stream_start, trace) == "first chunk"
    a1 = dep(router, "a1")
    lease = leases[0]
    assert lease.kept
    assert not settled(lease)
    assert trace.deployment is a1
    assert a1.inflight == 1  # the stream still holds its slot
    assert a1.latency_ewma_s is None
    lease.settle(True, latency_s=0.25)
    assert settled(lease)
    assert a1.inflight == 0
    assert latency_of(a1) == 0.25
    lease.settle(False)  # settling twice is a no-op
    assert a1.inflight == 0
    assert a1.breaker.state is BreakerState.CLOSED


async def test_kept_lease_settled_as_failure_counts_for_breaker() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    leases: list[Lease] = []

    async def stream_start(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        lease.keep()
        leases.append(lease)
        return "x"

    await router.run("a", stream_start, RequestTrace())
    leases[0].settle(False)
    a1 = dep(router, "a1")
    assert a1.inflight == 0
    assert a1.breaker.state is BreakerState.OPEN


async def test_kept_lease_settled_without_verdict() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    leases: list[Lease] = []

    async def stream_start(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        lease.keep()
        leases.append(lease)
        return "x"

    await router.run("a", stream_start, RequestTrace())
    leases[0].settle(None)
    a1 = dep(router, "a1")
    assert a1.inflight == 0
    assert a1.breaker.state is BreakerState.CLOSED
    assert a1.latency_ewma_s is None


async def test_failure_recorded_in_breaker(sleeps: list[float]) -> None:
    router = make_router(TWO, retry="{max_retries: 0}", breaker="{consecutive_failures: 2, cooldown_s: 60}")
    script = Script({"a1": [upstream(500)]})
    await router.run("a", script, RequestTrace())
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED
    await router.run("a", script, RequestTrace())
    assert dep(router, "a1").breaker.state is BreakerState.OPEN


# --- typing sanity: the router accepts any awaitable result type --------------------------


async def test_generic_result_type(sleeps: list[float]) -> None:
    router = make_router(TWO)

    def returning(value: dict[str, int]) -> Callable[[LiveDeployment, Lease, float], Awaitable[dict[str, int]]]:
        async def attempt(d: LiveDeployment, lease: Lease, deadline: float) -> dict[str, int]:
            return value

        return attempt

    result = await router.run("a", returning({"n": 1}), RequestTrace())
    assert result == {"n": 1}


def test_gateway_errors_are_what_router_raises() -> None:
    assert issubclass(AllDeploymentsFailed, GatewayError)
    assert issubclass(NoDeploymentAvailable, GatewayError)


async def test_gate_refusal_and_error_give_back_the_half_open_trial() -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 1}")
    a1 = dep(router, "a1")
    a1.breaker.record(False, time.monotonic() - 5)  # open, cooldown long over: next allow() takes the trial

    async def ok(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        return d.id

    async def refuse(d: LiveDeployment) -> bool:
        return d.id != "a1"

    assert await router.run("a", ok, RequestTrace(), gate=refuse) == "a2"
    assert a1.breaker.allow(time.monotonic()), "the refused deployment's trial slot was given back"
    a1.breaker.release_trial()

    async def broken(d: LiveDeployment) -> bool:
        raise RuntimeError("limits store down (fail-closed)")

    with pytest.raises(RuntimeError):
        await router.run("a", ok, RequestTrace(), gate=broken)
    assert a1.breaker.allow(time.monotonic()), "an error in the gate does not keep the trial slot"
