"""OpenAI's ``x-ratelimit-*`` headers: per unit (requests, tokens), the limit,
remaining and reset of the window with the fewest remaining."""

from __future__ import annotations

import math
from types import MappingProxyType

_NAMES = MappingProxyType(
    {
        unit: tuple(f"x-ratelimit-{what}-{unit}".encode() for what in ("limit", "remaining", "reset"))
        for unit in ("requests", "tokens")
    }
)


def format_duration(seconds: float) -> str:
    """A reset time as OpenAI writes it (Go duration style): 20ms, 1s, 59.5s, 6m0s, 1h2m3s."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}".rstrip("0")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


class Tightest:
    """Collects every window of a request, keeps the tightest per unit."""

    __slots__ = ("_best",)

    def __init__(self) -> None:
        self._best: dict[str, tuple[int, int, float]] = {}  # unit: remaining, limit, reset in (s)

    def offer(self, unit: str, remaining: int, limit: int, reset_s: float) -> None:
        best = self._best.get(unit)
        if best is None or remaining < best[0]:
            self._best[unit] = (remaining, limit, reset_s)

    def wire(self) -> list[tuple[bytes, bytes]]:
        """The headers as the response sends them."""
        out = []
        for unit, (remaining, limit, reset_s) in self._best.items():
            names = _NAMES[unit]
            out += [
                (names[0], b"%d" % limit),
                (names[1], b"%d" % remaining),
                (names[2], format_duration(reset_s).encode()),
            ]
        return out

    def headers(self) -> dict[str, str]:
        return {name.decode(): value.decode() for name, value in self.wire()}
