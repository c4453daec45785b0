"""Fixed-window counters on a ``limits`` storage: one atomic increment per window.

The ``limits`` strategies read a window (``get_window_stats``) and then hit it,
rebuilding the storage key each time. For fixed windows the storage's own
``incr`` does both at once: it returns the new count, so a request is admitted
when every window's count stays within its limit, and a window that went over
is rolled back (with every window charged before it). That is atomic per
window on memory and on Redis (INCRBY), so no read-then-hit race exists, and
the window keys are built once and cached.

A rolled-back increment can make another request, concurrent with it, see the
window as full for that instant: the error is always on the side of refusing.
On Redis a token refund is applied when the charged window is still current as
far as a TTL in whole seconds can tell; a request admitted within a second of
its window's end may have its refund land in the next window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, Storage

# Bounded cache of storage keys (one per scope, unit and limit).
_MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Window:
    """One counter to charge: its storage key, limit and the cost of this request."""

    key: str
    item: RateLimitItem
    cost: int

    @property
    def limit(self) -> int:
        return int(self.item.amount)


@dataclass(slots=True)
class Counted:
    window: Window
    count: int
    """The count after this request's increment."""
    at: float

    @property
    def remaining(self) -> int:
        return max(0, self.window.limit - self.count)


class FixedWindows:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._keys: dict[tuple[str, ...], str] = {}
        # A window's start is exact in memory; Redis gives its end from a TTL in
        # whole seconds, so "started before the charge" is known to within 1 s.
        self._start_slack_s = 0.0 if isinstance(storage, MemoryStorage) else 1.0

    def window(self, item: RateLimitItem, ids: tuple[str, ...], cost: int) -> Window:
        cache_id = (*ids, str(item.amount), str(item.get_expiry()))
        key = self._keys.get(cache_id)
        if key is None:
            if len(self._keys) > _MAX_KEYS:
                self._keys.clear()
            key = self._keys[cache_id] = item.key_for(*ids)
        return Window(key, item, cost)

    async def charge(self, windows: list[Window]) -> tuple[list[Counted], Counted | None]:
        """Charge every window in order. On the first that goes over its limit,
        roll back everything charged (that one included) and return it as the
        refusal; otherwise (counted, None)."""
        storage, counted = self._storage, list[Counted]()
        for w in windows:
            if w.cost > 0:
                count = await storage.incr(w.key, w.item.get_expiry(), w.cost)
                over = count > w.limit
            else:  # nothing to add, but a full window still refuses
                count = int(await storage.get(w.key))
                over = count >= w.limit
            entry = Counted(w, count, time.time())  # after the increment: a new window starts with it
            if over:
                await self.refund([*counted, entry])
                return counted, entry
            counted.append(entry)
        return counted, None

    async def refund(self, counted: list[Counted]) -> None:
        for c in reversed(counted):
            if c.window.cost > 0:
                await self._storage.incr(c.window.key, c.window.item.get_expiry(), -c.window.cost)

    async def reset_in(self, window: Window) -> float:
        """Seconds until the window's counter resets."""
        return max(0.0, await self._storage.get_expiry(window.key) - time.time())

    async def adjust(self, counted: Counted, delta: int, margin_s: float) -> None:
        """Correct a charge by ``delta`` tokens: more is always charged (to the
        current window); a refund only while the charged window is still the
        current one (it started before the charge and has not ended)."""
        w = counted.window
        if delta > 0:
            await self._storage.incr(w.key, w.item.get_expiry(), delta)
            return
        end = await self._storage.get_expiry(w.key)
        if end - w.item.get_expiry() <= counted.at + self._start_slack_s and time.time() < end - margin_s:
            await self._storage.incr(w.key, w.item.get_expiry(), delta)
