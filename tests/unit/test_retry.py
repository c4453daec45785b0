"""gateway.routing.retry.backoff_delay: exponential, full jitter, Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from gateway.config.settings import RetryPolicy
from gateway.routing.retry import backoff_delay


def policy(initial: float = 0.1, maximum: float = 4.0) -> RetryPolicy:
    return RetryPolicy(backoff_initial_s=initial, backoff_max_s=maximum)


class FixedRandom(random.Random):
    """uniform(a, b) returns the top of the range, to read the ceiling exactly."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.fraction


@pytest.mark.parametrize(
    ("retry_number", "ceiling"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (6, 3.2), (7, 4.0), (8, 4.0), (20, 4.0)],
)
def test_ceiling_is_min_of_max_and_exponential(retry_number: int, ceiling: float) -> None:
    rng = FixedRandom(1.0)
    assert backoff_delay(policy(), retry_number, None, rng) == pytest.approx(ceiling)
    assert len(rng.calls) == 1
    assert rng.calls[0][0] == 0.0
    assert rng.calls[0][1] == pytest.approx(ceiling)


@pytest.mark.parametrize("retry_number", [1, 2, 3, 5, 10])
def test_delay_within_bounds_for_many_draws(retry_number: int) -> None:
    p = policy(0.05, 1.0)
    ceiling = min(1.0, 0.05 * 2 ** (retry_number - 1))
    rng = random.Random(42)
    delays = [backoff_delay(p, retry_number, None, rng) for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # full jitter: values spread over the whole range
    assert min(delays) < ceiling * 0.05
    assert max(delays) > ceiling * 0.95


def test_jitter_uses_the_rng() -> None:
    a = [backoff_delay(policy(), 3, None, random.Random(11)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    r1, r2 = random.Random(1), random.Random(1)
    s1 = [backoff_delay(policy(), 2, None, r1) for _ in range(20)]
    s2 = [backoff_delay(policy(), 2, None, r2) for _ in range(20)]
    assert s1 == s2
    assert len(set(s1)) == 20  # jittered, not constant
    expected = random.Random(11).uniform(0.0, 0.4)
    assert backoff_delay(policy(), 3, None, random.Random(11)) == expected


def test_zero_fraction_jitter_gives_zero() -> None:
    assert backoff_delay(policy(), 4, None, FixedRandom(0.0)) == 0.0


def test_retry_after_is_a_floor() -> None:
    # retry_after above the jittered delay wins
    assert backoff_delay(policy(), 1, 2.5, FixedRandom(1.0)) == 2.5
    # and above the cap too: Retry-After is what the upstream asked for
    assert backoff_delay(policy(0.1, 1.0), 10, 3.0, FixedRandom(1.0)) == 3.0


def test_retry_after_below_jitter_does_not_lower_it() -> None:
    assert backoff_delay(policy(), 3, 0.1, FixedRandom(1.0)) == pytest.approx(0.4)
    assert backoff_delay(policy(), 3, 0.0, FixedRandom(0.5)) == pytest.approx(0.2)


def test_retry_after_floor_over_many_draws() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(policy(0.1, 4.0), 4, 0.5, rng) for _ in range(1000)]
    assert all(0.5 <= d <= 0.8 for d in delays)
    assert delays.count(0.5) > 100  # about 5/8 of the draws land below the floor


def test_zero_backoff_policy() -> None:
    assert backoff_delay(policy(0.0, 0.0), 3, None, random.Random(0)) == 0.0
