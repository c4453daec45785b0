"""gateway.routing.breaker: the per-deployment circuit breaker, driven with explicit times."""

from __future__ import annotations

from gateway.config.settings import BreakerPolicy
from gateway.routing.breaker import BreakerState, CircuitBreaker


def breaker(
    *,
    consecutive: int = 3,
    ratio: float = 0.5,
    window: float = 10.0,
    min_requests: int = 100,
    cooldown: float = 5.0,
) -> CircuitBreaker:
    return CircuitBreaker(
        BreakerPolicy(
            consecutive_failures=consecutive,
            error_ratio=ratio,
            window_s=window,
            min_requests=min_requests,
            cooldown_s=cooldown,
        )
    )


def state(b: CircuitBreaker) -> BreakerState:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return b.state


def open_breaker(b: CircuitBreaker, at: float) -> None:
    """Open ``b`` at time ``at`` by consecutive failures."""
    for _ in range(b._policy.consecutive_failures):
        assert b.allow(at)
        b.record(False, at)
    assert state(b) is BreakerState.OPEN


# --- closed --------------------------------------------------------------------


def test_starts_closed_and_allows() -> None:
    b = breaker()
    assert state(b) is BreakerState.CLOSED
    assert b.allow(0.0)
    assert b.allow(0.0)  # closed: no limit on concurrent requests


def test_opens_after_n_consecutive_failures() -> None:
    b = breaker(consecutive=3)
    b.record(False, 1.0)
    b.record(False, 2.0)
    assert state(b) is BreakerState.CLOSED
    assert b.allow(2.0)
    b.record(False, 3.0)
    assert state(b) is BreakerState.OPEN
    assert not b.allow(3.0)


def test_success_resets_consecutive_count() -> None:
    b = breaker(consecutive=3)
    for t in range(20):
        b.record(False, t * 0.1)
        b.record(False, t * 0.1)
        b.record(True, t * 0.1)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 3.0)
    b.record(False, 3.0)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 3.0)
    assert state(b) is BreakerState.OPEN


def test_single_failure_opens_with_threshold_one() -> None:
    b = breaker(consecutive=1)
    b.record(False, 0.0)
    assert state(b) is BreakerState.OPEN


def test_successes_never_open() -> None:
    b = breaker(consecutive=1, min_requests=1)
    for t in range(50):
        b.record(True, float(t))
    assert state(b) is BreakerState.CLOSED


# --- error ratio ---------------------------------------------------------------


def test_opens_on_error_ratio_once_min_requests_reached() -> None:
    b = breaker(consecutive=100, ratio=0.5, min_requests=4, window=10.0)
    b.record(True, 1.0)
    b.record(False, 1.1)
    b.record(True, 1.2)
    assert state(b) is BreakerState.CLOSED  # 3 requests < min_requests
    b.record(False, 1.3)  # 2 of 4 failed = 0.5
    assert state(b) is BreakerState.OPEN


def test_ratio_below_threshold_stays_closed() -> None:
    b = breaker(consecutive=100, ratio=0.5, min_requests=4, window=10.0)
    pattern = [True, True, False] * 10  # 1/3 failures
    for i, ok in enumerate(pattern):
        b.record(ok, i * 0.1)
    assert state(b) is BreakerState.CLOSED


def test_ratio_not_judged_below_min_requests() -> None:
    b = breaker(consecutive=100, ratio=0.5, min_requests=10, window=100.0)
    for i in range(9):
        b.record(False, float(i))  # 100% failures, but only 9 requests
    assert state(b) is BreakerState.CLOSED
    b.record(False, 9.0)
    assert state(b) is BreakerState.OPEN


def test_old_events_expire_from_the_window() -> None:
    # Without expiry, F@0 F@1 S@2 F@20 is 3 failures in 4 requests and would open.
    b = breaker(consecutive=100, ratio=0.5, min_requests=4, window=10.0)
    b.record(False, 0.0)
    b.record(False, 1.0)
    b.record(True, 2.0)
    b.record(False, 20.0)  # the first three fall out of the window
    assert state(b) is BreakerState.CLOSED
    b.record(True, 21.0)
    b.record(False, 22.0)  # 2 of 3 in window, still below min_requests
    assert state(b) is BreakerState.CLOSED
    b.record(True, 23.0)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 24.0)  # F20 S21 F22 S23 F24: 3 of 5 = 0.6
    assert state(b) is BreakerState.OPEN


def test_window_boundary_event_exactly_window_old_is_kept() -> None:
    b = breaker(consecutive=100, ratio=1.0, min_requests=2, window=10.0)
    b.record(False, 0.0)
    b.record(False, 10.0)  # the event at 0.0 is exactly window_s old: still inside
    assert state(b) is BreakerState.OPEN

    b = breaker(consecutive=100, ratio=1.0, min_requests=2, window=10.0)
    b.record(False, 0.0)
    b.record(False, 10.001)
    assert state(b) is BreakerState.CLOSED


def test_expired_failures_no_longer_count_in_ratio() -> None:
    b = breaker(consecutive=100, ratio=0.5, min_requests=4, window=10.0)
    for t in (0.0, 0.1, 0.2):
        b.record(False, t)
    b.record(True, 0.3)  # 3 failures, no judgement on success
    assert state(b) is BreakerState.CLOSED
    # long after: 1 failure in 4 -> 0.25, must stay closed
    for t in (50.0, 50.1, 50.2):
        b.record(True, t)
    b.record(False, 50.3)
    assert state(b) is BreakerState.CLOSED


# --- open / half-open --------------------------------------------------------------


def test_open_refuses_until_cooldown() -> None:
    b = breaker(consecutive=1, cooldown=5.0)
    open_breaker(b, 100.0)
    assert not b.allow(100.0)
    assert not b.allow(104.999)
    assert state(b) is BreakerState.OPEN
    assert b.allow(105.0)
    assert state(b) is BreakerState.HALF_OPEN


def test_half_open_allows_exactly_one_trial_at_a_time() -> None:
    b = breaker(consecutive=1, cooldown=5.0)
    open_breaker(b, 0.0)
    assert b.allow(6.0)
    assert state(b) is BreakerState.HALF_OPEN
    assert not b.allow(6.0)
    assert not b.allow(7.0)
    assert not b.allow(1000.0)


def test_trial_success_closes() -> None:
    b = breaker(consecutive=2, cooldown=5.0)
    open_breaker(b, 0.0)
    assert b.allow(5.0)
    b.record(True, 5.5)
    assert state(b) is BreakerState.CLOSED
    assert b.allow(5.5)
    assert b.allow(5.5)
    # the consecutive count starts from zero again
    b.record(False, 6.0)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 6.0)
    assert state(b) is BreakerState.OPEN


def test_trial_failure_reopens_with_fresh_cooldown() -> None:
    b = breaker(consecutive=1, cooldown=5.0)
    open_breaker(b, 0.0)
    assert b.allow(5.0)
    b.record(False, 7.0)
    assert state(b) is BreakerState.OPEN
    assert not b.allow(7.0)
    assert not b.allow(11.999)  # would have been past the first cooldown
    assert b.allow(12.0)
    assert state(b) is BreakerState.HALF_OPEN


def test_release_trial_frees_the_slot() -> None:
    b = breaker(consecutive=1, cooldown=5.0)
    open_breaker(b, 0.0)
    assert b.allow(5.0)
    assert not b.allow(5.0)
    b.release_trial()
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow(5.1)
    assert not b.allow(5.1)


def test_release_trial_when_closed_is_harmless() -> None:
    b = breaker()
    b.release_trial()
    assert state(b) is BreakerState.CLOSED
    assert b.allow(0.0)


def test_closed_again_after_trial_judges_a_fresh_window() -> None:
    b = breaker(consecutive=100, ratio=0.5, min_requests=4, window=100.0, cooldown=1.0)
    for t, ok in ((0.0, True), (0.1, False), (0.2, True), (0.3, False)):
        b.record(ok, t)
    assert state(b) is BreakerState.OPEN
    assert b.allow(1.5)
    b.record(True, 1.5)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 2.0)
    b.record(True, 2.1)
    b.record(True, 2.2)
    assert state(b) is BreakerState.CLOSED
    b.record(False, 2.3)  # 2 of 4 in the window since closing
    assert state(b) is BreakerState.OPEN


def test_window_memory_is_constant_at_any_rate() -> None:
    b = breaker(consecutive=10**9, ratio=1.0, min_requests=10**9, window=10.0)
    for i in range(100_000):
        b.record(i % 2 == 0, i * 0.001)  # 1000 requests a second for 100 s
    assert len(b._buckets) <= 11
    assert b._requests <= 11_000


def test_a_copy_starts_in_the_same_state_and_records_apart() -> None:
    live = breaker(consecutive=2, ratio=1.0, min_requests=3)
    live.record(False, 1.0)  # one failure: one more opens it
    probe = live.copy()
    assert state(probe) is BreakerState.CLOSED
    probe.record(False, 2.0)
    assert state(probe) is BreakerState.OPEN  # the copy had the live one's count
    assert state(live) is BreakerState.CLOSED  # and what it recorded stayed with it
    live.record(True, 3.0)
    live.record(False, 4.0)
    assert state(live) is BreakerState.CLOSED  # the success reset the live count, not the copy's
    live.record(False, 5.0)
    assert state(live) is BreakerState.OPEN
    opened = live.copy()
    assert state(opened) is BreakerState.OPEN and not opened.allow(6.0)  # an open breaker is skipped in a test too
