"""Fixed windows, charged all at once through the state backend.

The ``limits`` strategies read a window and then hit it, one storage call each,
rebuilding the storage key every time; on Redis that is two round trips per
window, and a request typically has six windows (requests and tokens of key,
team and alias). For fixed windows the backend does it in one operation
(:meth:`StateBackend.hit_windows`: in memory, plain counters; on Redis, one Lua
script): every window is charged or none is, atomically, so there is no
read-then-hit race and a refusal leaves nothing to roll back. ``limits`` still
defines the windows (``RateLimitItem``) and their key names.

Refunds after the call (``StateBackend.adjust_windows``) apply only while
the charged window is still the current one, so they never leak into the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem

from gateway.state.base import SlotSpec, StateBackend, WindowSpec
from gateway.state.lru import Lru

KEYS_MAX = 100_000
"""Storage keys kept (least recently used evicted): one per scope, unit and limit."""


@dataclass(frozen=True, slots=True)
class Window:
    """One counter to charge: its key, limit and the cost of this request."""

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
    """The window's count after this request's charge (before it, for a refusal)."""
    reset_s: float
    """Seconds until the window resets, as of the charge."""
    window_end: float
    """Epoch seconds at which the charged window ends."""

    @property
    def remaining(self) -> int:
        return max(0, self.window.limit - self.count)


class FixedWindows:
    def __init__(self, backend: StateBackend) -> None:
        self._backend = backend
        self._keys: Lru[tuple[str, ...], str] = Lru(KEYS_MAX)

    def window(self, item: RateLimitItem, ids: tuple[str, ...], cost: int) -> Window:
        cache_id = (*ids, str(item.amount), str(item.get_expiry()))
        key = self._keys.get(cache_id)
        if key is None:
            key = self._keys.put(cache_id, item.key_for(*ids))
        return Window(key, item, cost)

    async def charge(
        self, windows: list[Window], now: float, slots: Sequence[SlotSpec] = ()
    ) -> tuple[list[Counted], int]:
        """Charge every window and take every slot, or nothing: (the windows'
        counts, the index of the window that refused, ``len(windows) + i`` for
        a full slot ``i``, or -1)."""
        hit = await self._backend.hit_windows(
            [WindowSpec(w.key, w.item.get_expiry(), max(0, w.cost), w.limit) for w in windows], slots
        )
        counted = [Counted(w, n, r, now + r) for w, n, r in zip(windows, hit.counts, hit.resets_s, strict=True)]
        return counted, hit.refused
