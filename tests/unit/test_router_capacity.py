"""gateway.routing.router: paced deployments, the wait for capacity, ``on_release``.

The attempt callables stand in for the network (as in test_router.py); an upstream's
pacing is what :class:`Pacer` would have done on its answer: ``dep.pace(...)``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import textwrap
import time
from typing import Any

import pytest

from gateway.config.loader import parse_config
from gateway.config.pacing import PacingSettings
from gateway.errors import AllDeploymentsFailed, NoDeploymentAvailable, UpstreamError
from gateway.providers.registry import presets
from gateway.routing.breaker import BreakerState
from gateway.routing.deployment import LiveDeployment, build_routes
from gateway.routing.router import REPASS_PAUSE_S, Lease, RequestTrace, Router

TWO = """
a:
  deployments:
    - {provider: openai, model: m, id: a1}
    - {provider: openai, model: m, id: a2}
"""
ONE = """
a:
  deployments:
    - {provider: openai, model: m, id: a1, max_concurrency: 1}
"""
FALLBACK = """
a:
  deployments: [{provider: openai, model: m, id: a1, max_concurrency: 1}]
  fallbacks: [b]
b:
  deployments: [{provider: openai, model: m, id: b1, max_concurrency: 1}]
"""
RETRY = "{max_retries: 1, backoff_initial_s: 0.001, backoff_max_s: 0.002, max_retry_after_s: 5, max_attempts: 8}"


def make_router(models: str, *, breaker: str = "{consecutive_failures: 50, min_requests: 50}", **kw: Any) -> Router:
    text = f"router:\n  retry: {RETRY}\n  breaker: {breaker}\nmodels:\n" + textwrap.indent(
        textwrap.dedent(models).strip(), "  "
    )
    routes = build_routes(parse_config(text, env={}).settings, presets())
    kw.setdefault("total_timeout_s", 30.0)
    return Router(routes, rng=random.Random(0), **kw)


def dep(router: Router, dep_id: str) -> LiveDeployment:
    return next(d for r in router.routes.values() for d in r.deployments if d.id == dep_id)


class Script:
    """Each deployment id -> outcomes in turn (the last repeats); an exception is raised,
    a float paces the deployment that long and raises a 429 (what an upstream's 429 with
    Retry-After does). Default: success."""

    def __init__(self, outcomes: dict[str, list[object]] | None = None) -> None:
        self.outcomes = outcomes or {}
        self.calls: list[str] = []
        self.leases: list[Lease] = []

    async def __call__(self, d: LiveDeployment, lease: Lease, deadline: float) -> str:
        self.calls.append(d.id)
        self.leases.append(lease)
        queue = self.outcomes.get(d.id) or [f"ok from {d.id}"]
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, float):
            d.pace(outcome, time.monotonic())
            raise UpstreamError("rate limited", upstream_status=429, retry_after=outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, str)
        return outcome


class Waiter:
    """A ``wait_for_capacity`` that answers from a script and may free capacity first."""

    def __init__(self, answers: list[bool], free: Any = None) -> None:
        self.answers = answers
        self.free = free
        self.hints: list[float | None] = []

    async def __call__(self, hint: float | None) -> bool:
        self.hints.append(hint)
        answer = self.answers.pop(0)
        if answer and self.free is not None:
            self.free()
        return answer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        # only the router's own pauses: a task another test left in the loop may sleep meanwhile
        if sys._getframe(1).f_globals.get("__name__", "").startswith("gateway.routing"):
            recorded.append(delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


# --- skipping paced deployments ----------------------------------------------------------


async def test_a_paced_deployment_is_skipped(sleeps: list[float]) -> None:
    router = make_router(TWO)
    dep(router, "a1").pace(5.0, time.monotonic())
    script = Script()
    assert await router.run("a", script, RequestTrace()) == "ok from a2"
    assert script.calls == ["a2"]


async def test_a_paced_429_goes_elsewhere_first_without_waiting(sleeps: list[float]) -> None:
    router = make_router(TWO)
    script = Script({"a1": [2.0]})
    trace = RequestTrace()
    assert await router.run("a", script, trace) == "ok from a2"
    assert script.calls == ["a1", "a2"]
    assert sleeps == [], "a2 could take it at once: no wait for a1's pause"
    script2 = Script()
    assert await router.run("a", script2, RequestTrace()) == "ok from a2"
    assert script2.calls == ["a2"], "the next request does not hammer the paced a1"


async def test_a_paced_deployment_alone_is_retried_after_its_pause(sleeps: list[float]) -> None:
    router = make_router(TWO)
    dep(router, "a2").pace(10.0, time.monotonic())
    script = Script({"a1": [1.5, "ok after the pause"]})
    assert await router.run("a", script, RequestTrace()) == "ok after the pause"
    assert script.calls == ["a1", "a1"]
    assert len(sleeps) == 1 and 1.4 < sleeps[0] <= 1.5, "the pause is a floor under the backoff"


async def test_a_paced_429_does_not_count_against_the_breaker(sleeps: list[float]) -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    assert await router.run("a", Script({"a1": [3.0]}), RequestTrace()) == "ok from a2"
    assert dep(router, "a1").breaker.state is BreakerState.CLOSED
    unpaced = UpstreamError("rate limited", upstream_status=429)
    with pytest.raises(UpstreamError):  # a1 is paced; a2's 429 paced nothing
        await router.run("a", Script({"a2": [unpaced]}), RequestTrace())
    assert dep(router, "a2").breaker.state is BreakerState.OPEN, "an unpaced 429 is a failure, as before"


async def test_everything_paced_without_a_hook_is_503_with_retry_after(sleeps: list[float]) -> None:
    router = make_router(TWO)
    now = time.monotonic()
    dep(router, "a1").pace(4.2, now)
    dep(router, "a2").pace(2.5, now)
    with pytest.raises(NoDeploymentAvailable) as info:
        await router.run("a", Script(), RequestTrace())
    assert info.value.http_status == 503
    assert info.value.headers["retry-after"] == "3", "the earliest pause end, rounded up"
    assert info.value.retry_after is not None and 2.4 < info.value.retry_after <= 2.5
    assert "2 skipped: 0 circuit open, 2 at capacity, paced or over their own limits" in info.value.message


# --- the wait for capacity ---------------------------------------------------------------


async def test_the_hook_says_go_and_the_request_is_served(sleeps: list[float]) -> None:
    router = make_router(TWO)
    now = time.monotonic()
    dep(router, "a1").pace(3.0, now)
    dep(router, "a2").pace(1.0, now)

    def pause_over() -> None:
        dep(router, "a2").paced_until = 0.0

    waiter = Waiter([True], pause_over)
    script = Script()
    trace = RequestTrace()
    assert await router.run("a", script, trace, wait_for_capacity=waiter) == "ok from a2"
    assert script.calls == ["a2"]
    assert len(waiter.hints) == 1
    hint = waiter.hints[0]
    assert hint is not None and 0.9 < hint <= 1.0, "the earliest pause end"
    assert trace.attempts == 1


async def test_the_hook_says_no_and_the_answer_is_503_with_retry_after(sleeps: list[float]) -> None:
    router = make_router(TWO)
    dep(router, "a1").pace(2.0, time.monotonic())
    dep(router, "a2").inflight = 0
    dep(router, "a2").pace(7.0, time.monotonic())
    waiter = Waiter([False])
    with pytest.raises(NoDeploymentAvailable) as info:
        await router.run("a", Script(), RequestTrace(), wait_for_capacity=waiter)
    assert info.value.headers["retry-after"] == "2"
    assert len(waiter.hints) == 1


async def test_saturated_only_gives_no_hint(sleeps: list[float]) -> None:
    router = make_router(ONE)
    a1 = dep(router, "a1")
    a1.inflight = 1

    def one_ends() -> None:
        a1.inflight = 0

    waiter = Waiter([True], one_ends)
    script = Script()
    assert await router.run("a", script, RequestTrace(), wait_for_capacity=waiter) == "ok from a1"
    assert waiter.hints == [None], "a cap frees when a request ends: no time to tell"


async def test_open_breakers_only_never_wait(sleeps: list[float]) -> None:
    router = make_router(TWO, breaker="{consecutive_failures: 1, cooldown_s: 60}")
    for d in ("a1", "a2"):
        dep(router, d).breaker.record(False, time.monotonic())
    waiter = Waiter([True, True])
    with pytest.raises(NoDeploymentAvailable) as info:
        await router.run("a", Script(), RequestTrace(), wait_for_capacity=waiter)
    assert waiter.hints == [], "an open breaker does not free when a request ends"
    assert info.value.headers["retry-after"] == "1"
    assert "2 circuit open" in info.value.message


async def test_failed_attempts_never_wait(sleeps: list[float]) -> None:
    router = make_router(ONE)
    waiter = Waiter([True])
    script = Script({"a1": [UpstreamError("down", upstream_status=500)]})
    with pytest.raises(AllDeploymentsFailed):
        await router.run("a", script, RequestTrace(), wait_for_capacity=waiter)
    assert waiter.hints == []


async def test_a_gate_refusal_waits(sleeps: list[float]) -> None:
    router = make_router(ONE)
    refusals = [False]

    async def gate(d: LiveDeployment) -> bool:
        return refusals.pop(0) if refusals else True

    waiter = Waiter([True])
    script = Script()
    assert await router.run("a", script, RequestTrace(), gate=gate, wait_for_capacity=waiter) == "ok from a1"
    assert waiter.hints == [None]
    assert script.calls == ["a1"]


async def test_a_go_that_finds_nothing_pauses_before_waiting_again(sleeps: list[float]) -> None:
    router = make_router(ONE)
    dep(router, "a1").inflight = 1  # never freed: each go finds the cap still full
    waiter = Waiter([True, True, False])
    with pytest.raises(NoDeploymentAvailable):
        await router.run("a", Script(), RequestTrace(), wait_for_capacity=waiter)
    assert waiter.hints == [None, None, None]
    assert sleeps == [REPASS_PAUSE_S, REPASS_PAUSE_S], "no spinning between go and nothing"


async def test_a_wait_past_the_deadline_is_cut_off() -> None:
    router = make_router(ONE, total_timeout_s=0.1)
    dep(router, "a1").inflight = 1
    cancelled = asyncio.Event()

    async def forever(hint: float | None) -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    started = time.monotonic()
    with pytest.raises(NoDeploymentAvailable):
        await router.run("a", Script(), RequestTrace(), wait_for_capacity=forever)
    assert 0.08 < time.monotonic() - started < 1.0
    assert cancelled.is_set()


async def test_a_repeated_pass_keeps_one_story_of_fallbacks(sleeps: list[float]) -> None:
    router = make_router(FALLBACK)
    a1, b1 = dep(router, "a1"), dep(router, "b1")
    a1.inflight = b1.inflight = 1

    def b1_ends() -> None:
        b1.inflight = 0

    trace = RequestTrace()
    waiter = Waiter([True], b1_ends)
    assert await router.run("a", Script(), trace, wait_for_capacity=waiter) == "ok from b1"
    assert trace.fallbacks == [("a", "b", "unavailable")]


# --- on_release ----------------------------------------------------------------------------


async def test_on_release_is_called_when_each_lease_ends(sleeps: list[float]) -> None:
    released: list[int] = []
    router = make_router(TWO, on_release=lambda: released.append(1))
    assert await router.run("a", Script(), RequestTrace()) == "ok from a1"
    assert len(released) == 1
    failing = Script({"a1": [UpstreamError("down", upstream_status=503)]})
    assert await router.run("a", failing, RequestTrace()) == "ok from a2"
    assert len(released) == 4, "a1 twice (a retry), then a2"
    assert all(d.inflight == 0 for d in router.routes["a"].deployments)


async def test_a_kept_lease_releases_when_its_stream_ends(sleeps: list[float]) -> None:
    released: list[int] = []
    router = make_router(TWO, on_release=lambda: released.append(1))
    kept: list[Lease] = []

    async def stream(d: LiveDeployment, lease: Lease, deadline: float) -> str:
        lease.keep()
        kept.append(lease)
        return "first chunk"

    assert await router.run("a", stream, RequestTrace()) == "first chunk"
    assert released == [] and dep(router, "a1").inflight == 1
    kept[0].settle(True)
    kept[0].settle(True)
    assert released == [1], "once per lease"
    assert dep(router, "a1").inflight == 0


async def test_pacing_settings_reach_the_routers_pacer(sleeps: list[float]) -> None:
    on = make_router(TWO, pacing=PacingSettings(default_s=0.5))
    off = make_router(TWO)
    for router in (on, off):
        router.pacer.on_error(dep(router, "a1"), 429, {})
    assert dep(on, "a1").paced and not dep(off, "a1").paced


def test_no_deployment_available_carries_retry_after() -> None:
    assert "retry-after" not in NoDeploymentAvailable("none").headers, "as before when no time is known"
    assert NoDeploymentAvailable("x", retry_after=0.2).headers["retry-after"] == "1"
    assert NoDeploymentAvailable("x", retry_after=2.01).headers["retry-after"] == "3", "rounded up, never early"
    assert "retry-after" not in NoDeploymentAvailable("x", retry_after=float("inf")).headers
    err = NoDeploymentAvailable("x", retry_after=4.0)
    assert (err.http_status, err.code, err.retry_after) == (503, "no_deployment_available", 4.0)
