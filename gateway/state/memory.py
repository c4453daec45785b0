"""Fixed-window counters in process memory (the embedded backend's windows)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.state.base import WindowAdjust, WindowHit, WindowSpec


class MemoryWindows:
    """``hit_windows``/``adjust_windows`` of :class:`StateBackend`, in memory.

    Every window is checked, then all are charged, with no await in between:
    atomic on the event loop, so nothing ever needs rolling back. Ended windows
    are dropped now and then, so memory stays bounded by the live ones.
    """

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}  # key -> [count, ends at (epoch s)]
        self._swept = 0.0

    async def hit_windows(self, windows: Sequence[WindowSpec]) -> WindowHit:
        now = time.time()
        current = [self._window(w.key, w.period_s, now) for w in windows]
        refused = -1
        for i, (w, cur) in enumerate(zip(windows, current, strict=True)):
            if (cur[0] + w.amount > w.limit) if w.amount > 0 else (cur[0] >= w.limit):
                refused = i
                break
        if refused < 0:
            for w, cur in zip(windows, current, strict=True):
                cur[0] += w.amount
        return WindowHit(refused, [int(c[0]) for c in current], [c[1] - now for c in current])

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust]) -> None:
        now = time.time()
        for a in adjustments:
            if a.delta > 0:
                self._window(a.key, a.period_s, now)[0] += a.delta
                continue
            cur = self._windows.get(a.key)
            # The same window: its end as the caller computed it (from its own clock).
            if cur is not None and abs(cur[1] - a.window_end) < 0.25 and now < cur[1]:
                cur[0] = max(0.0, cur[0] + a.delta)

    def _window(self, key: str, period_s: float, now: float) -> list[float]:
        cur = self._windows.get(key)
        if cur is None or cur[1] <= now:
            if now - self._swept > 60:
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
                self._swept = now
            cur = self._windows[key] = [0.0, now + period_s]
        return cur
