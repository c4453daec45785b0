"""Backoff between attempts on the same deployment: exponential with full
jitter, and an upstream's Retry-After honoured as a floor."""

from __future__ import annotations

import random

from gateway.config.settings import RetryPolicy


def backoff_delay(policy: RetryPolicy, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
    ceiling = min(policy.backoff_max_s, policy.backoff_initial_s * (2 ** (retry_number - 1)))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
