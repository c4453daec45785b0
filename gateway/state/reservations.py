"""Budget reservations in memory: what requests in flight may still cost (see
:class:`Reservations`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class Reservations:
    """USD reserved per spend counter by this process's requests in flight
    (*local*, exact), plus what the other replicas reserve (*remote*, as last
    fetched with the spend totals). No I/O: the ledger publishes the local part
    with its flushes and fetches the remote part with its refreshes.

    A counter's local amount goes back to exactly 0 when its last reservation
    is released (a count per counter), so float rounding never accumulates."""

    def __init__(self) -> None:
        self._local: dict[str, list[float]] = {}
        """counter -> [USD, number of reservations]"""
        self._remote: dict[str, float] = {}
        self._published: set[str] = set()
        """Counters whose last published amount was above 0."""
        self.count = 0
        """Reservations held now."""
        self.usd = 0.0
        """USD held now (each reservation once, however many counters it covers)."""

    def reserve(self, keys: Sequence[str], usd: float) -> None:
        local = self._local
        for key in keys:
            entry = local.get(key)
            if entry is None:
                local[key] = [usd, 1.0]
            else:
                entry[0] += usd
                entry[1] += 1.0
        self.count += 1
        self.usd += usd

    def release(self, keys: Sequence[str], usd: float) -> None:
        local = self._local
        for key in keys:
            entry = local.get(key)
            if entry is None:
                continue
            if entry[1] <= 1.0:
                del local[key]
            else:
                entry[0] -= usd
                entry[1] -= 1.0
        self.count -= 1
        self.usd = self.usd - usd if self.count else 0.0

    def held(self, keys: Iterable[str]) -> dict[str, float]:
        """Local plus remote reservations of each counter."""
        local, remote = self._local, self._remote
        out = {}
        for key in keys:
            entry = local.get(key)
            out[key] = (entry[0] if entry is not None else 0.0) + remote.get(key, 0.0)
        return out

    def fetched(self, keys: Iterable[str], others: Mapping[str, float]) -> None:
        """The other replicas' reservations on ``keys`` (absent: none)."""
        remote = self._remote
        for key in keys:
            amount = others.get(key, 0.0)
            if amount > 0:
                remote[key] = amount
            else:
                remote.pop(key, None)

    def to_publish(self) -> dict[str, float]:
        """This process's reservations for the shared backend: every counter held
        now, and 0 for those released since the last :meth:`published`; empty
        when there is nothing to say."""
        out = {key: entry[0] for key, entry in self._local.items()}
        for key in self._published - out.keys():
            out[key] = 0.0
        return out

    def published(self, sent: Mapping[str, float]) -> None:
        """``sent`` (from :meth:`to_publish`) is in the backend."""
        self._published = {key for key, usd in sent.items() if usd > 0}
