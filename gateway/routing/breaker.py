"""A circuit breaker per deployment.

closed --(N consecutive failures, or error ratio over the window with enough
requests)--> open --(cooldown passed)--> half_open: one trial request at a time
--(success)--> closed, --(failure)--> open again with a fresh cooldown.

The error ratio is counted in ``WINDOW_BUCKETS`` time buckets of
``window_s / WINDOW_BUCKETS`` each, so memory stays constant at any request rate
(a bucket leaves the window once its start is older than ``window_s``).
Time is passed in (``now``) so the state machine is tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from gateway.config.settings import BreakerPolicy


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


WINDOW_BUCKETS = 10


class CircuitBreaker:
    __slots__ = (
        "_buckets",
        "_consecutive",
        "_failures",
        "_opened_at",
        "_policy",
        "_requests",
        "_trial",
        "_width",
        "state",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._width = policy.window_s / WINDOW_BUCKETS
        self._buckets: deque[list[float]] = deque()  # [start, requests, failures]
        self._requests = 0
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    def allow(self, now: float) -> bool:
        """May a request go to this deployment now? In half-open, only one at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self._policy.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._trial = False
        if self._trial:
            return False
        self._trial = True
        return True

    def ready(self, now: float) -> bool:
        """Would :meth:`allow` admit a request now? Unlike it, takes no trial slot."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now - self._opened_at >= self._policy.cooldown_s
        return not self._trial

    def record(self, ok: bool, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._trial = False
            if ok:
                self._close()
            else:
                self._open(now)
            return
        self._window(ok, now)
        if ok:
            self._consecutive = 0
            return
        self._consecutive += 1
        p = self._policy
        if self._consecutive >= p.consecutive_failures or (
            self._requests >= p.min_requests and self._failures / self._requests >= p.error_ratio
        ):
            self._open(now)

    def copy(self) -> CircuitBreaker:
        """An independent breaker in this one's state: what is recorded into the copy
        (a connection test's verdicts, gateway/health/runner.py) never reaches this one."""
        twin = CircuitBreaker(self._policy)
        twin.state = self.state
        twin._consecutive = self._consecutive
        twin._buckets = deque([list(bucket) for bucket in self._buckets])
        twin._requests = self._requests
        twin._failures = self._failures
        twin._opened_at = self._opened_at
        twin._trial = self._trial
        return twin

    def release_trial(self) -> None:
        """A half-open trial ended without a verdict (e.g. the client went away)."""
        self._trial = False

    def _window(self, ok: bool, now: float) -> None:
        buckets = self._buckets
        start = now - now % self._width
        if not buckets or buckets[-1][0] != start:
            buckets.append([start, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        self._requests += 1
        if not ok:
            bucket[2] += 1
            self._failures += 1
        horizon = now - self._policy.window_s
        while buckets[0][0] < horizon:
            _, requests, failures = buckets.popleft()
            self._requests -= int(requests)
            self._failures -= int(failures)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._reset_counts()

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._consecutive = 0
        self._buckets.clear()
        self._requests = 0
        self._failures = 0
