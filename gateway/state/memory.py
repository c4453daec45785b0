"""Fixed-window counters and concurrency slots in process memory (the
embedded backend's)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.state.base import SlotSpec, WindowAdjust, WindowHit, WindowSpec


class MemoryWindows:
    """``hit_windows``/``adjust_windows`` and the slots of :class:`StateBackend`, in memory.

    Every window and slot is checked, then all are taken, with no await in
    between: atomic on the event loop, so nothing ever needs rolling back.
    Ended windows are dropped now and then, so memory stays bounded by the live
    ones; a slot key goes when its last slot is given back.
    """

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}  # key -> [count, ends at (epoch s)]
        self._slots: dict[str, int] = {}  # key -> slots taken
        self._swept = 0.0

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        now = time.time()
        known = self._windows
        current: list[list[float]] = []
        refused = -1
        for i, w in enumerate(windows):  # one pass: find each window, and the first that refuses
            cur = known.get(w.key)
            if cur is None or cur[1] <= now:
                cur = self._window(w.key, w.period_s, now)
            current.append(cur)
            if refused < 0 and ((cur[0] + w.amount > w.limit) if w.amount > 0 else (cur[0] >= w.limit)):
                refused = i
        if refused < 0:
            held = self._slots
            for i, slot in enumerate(slots):
                if held.get(slot.key, 0) >= slot.limit:
                    refused = len(current) + i
                    break
        if refused < 0:
            for w, cur in zip(windows, current, strict=True):
                cur[0] += w.amount
            for slot in slots:
                self._slots[slot.key] = self._slots.get(slot.key, 0) + 1
        return WindowHit(refused, [int(c[0]) for c in current], [c[1] - now for c in current])

    def acquire_slot(self, key: str, limit: int) -> bool:
        held = self._slots.get(key, 0)
        if held >= limit:
            return False
        self._slots[key] = held + 1
        return True

    def release_slot(self, key: str) -> None:
        held = self._slots.get(key, 0)
        if held <= 1:
            self._slots.pop(key, None)
        else:
            self._slots[key] = held - 1

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        for key in release:
            self.release_slot(key)
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
