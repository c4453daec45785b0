"""A circuit breaker per deployment.

closed --(N consecutive failures, or error ratio over the window with enough
requests)--> open --(cooldown passed)--> half_open: one trial request at a time
--(success)--> closed, --(failure)--> open again with a fresh cooldown.

Time is passed in (``now``) so the state machine is tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from gateway.settings import BreakerPolicy


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = ("_consecutive", "_events", "_failures_in_window", "_opened_at", "_policy", "_trial", "state")

    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._events: deque[tuple[float, bool]] = deque()
        self._failures_in_window = 0
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
            len(self._events) >= p.min_requests and self._failures_in_window / len(self._events) >= p.error_ratio
        ):
            self._open(now)

    def release_trial(self) -> None:
        """A half-open trial ended without a verdict (e.g. the client went away)."""
        self._trial = False

    def _window(self, ok: bool, now: float) -> None:
        events = self._events
        events.append((now, ok))
        if not ok:
            self._failures_in_window += 1
        horizon = now - self._policy.window_s
        while events and events[0][0] < horizon:
            _, was_ok = events.popleft()
            if not was_ok:
                self._failures_in_window -= 1

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._consecutive = 0
        self._events.clear()
        self._failures_in_window = 0

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._events.clear()
        self._failures_in_window = 0
