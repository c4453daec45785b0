"""The spend ledger's counters in memory: what the request path adds, what is
being written, and what the backend last said (see :class:`SpendCounters`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence


def merge(into: dict[str, float], amounts: Mapping[str, float]) -> None:
    for key, usd in amounts.items():
        into[key] = into.get(key, 0.0) + usd


class SpendCounters:
    """Spend per counter in three parts: *base* (the backend's total when last
    fetched, plus what this process wrote since), *in flight* (a write not yet
    confirmed) and *pending* (added, not yet written). :meth:`known` is their
    sum, kept up to date as amounts come in (one lookup per key to read); a
    write moves amounts between the parts and never changes it. No I/O: the
    :class:`~gateway.state.ledger.SpendLedger` does that."""

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}
        self._tallies: dict[Hashable, tuple[Sequence[Sequence[str]], list[float]]] = {}
        self._inflight: dict[str, float] = {}
        self._base: dict[str, float] = {}
        self._known: dict[str, float] = {}
        """base + inflight + pending per counter."""

    # --- the request path ------------------------------------------------------------
    def add(self, increments: Mapping[str, float]) -> None:
        """Buffer amounts (USD) to add to their counters."""
        pending, known = self._pending, self._known
        for key, usd in increments.items():
            if usd:
                pending[key] = pending.get(key, 0.0) + usd
                known[key] = known.get(key, 0.0) + usd

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None:
        """Add ``amounts[i]`` to every counter of ``keys[i]``, cheaply: the
        amounts of one ``group`` (the same ``keys`` every time) are summed here
        and spread over their counters when :meth:`pending` or :meth:`take`
        needs them. For counters that are written but not read on the request
        path (``known`` does not see them until then)."""
        slot = self._tallies.get(group)
        if slot is None:
            self._tallies[group] = (keys, list(amounts))
            return
        totals = slot[1]
        for i, amount in enumerate(amounts):
            totals[i] += amount

    def known(self, keys: Iterable[str]) -> dict[str, float]:
        """Best local view of each total: last fetched + written since + pending."""
        known = self._known
        return {k: known.get(k, 0.0) for k in keys}

    def pending(self) -> dict[str, float]:
        """What is not yet confirmed written (buffered plus a write in flight)."""
        self._fold_tallies()
        out = dict(self._inflight)
        merge(out, self._pending)
        return out

    def _fold_tallies(self) -> None:
        if not self._tallies:
            return
        tallies, self._tallies = self._tallies, {}
        pending, known = self._pending, self._known
        for keys, amounts in tallies.values():
            for counters, amount in zip(keys, amounts, strict=True):
                if amount:
                    for key in counters:
                        pending[key] = pending.get(key, 0.0) + amount
                        known[key] = known.get(key, 0.0) + amount

    # --- a write and a fetch -------------------------------------------------------------
    def take(self) -> dict[str, float]:
        """Everything pending (tallies spread), now in flight; empty when nothing is."""
        self._fold_tallies()
        batch, self._pending = self._pending, {}
        self._inflight = batch
        return batch

    def settle(self, batch: Mapping[str, float], *, written: bool) -> None:
        """The write of ``batch`` (from :meth:`take`) is over: written, it is
        part of the base; failed, it is pending again, merged with newer amounts."""
        self._inflight = {}
        merge(self._base if written else self._pending, batch)

    def fetched(self, totals: Mapping[str, float]) -> None:
        """The backend's totals of some counters (other replicas' spend included)."""
        self._base.update(totals)
        inflight, pending, known = self._inflight, self._pending, self._known
        for key, total in totals.items():
            known[key] = total + inflight.get(key, 0.0) + pending.get(key, 0.0)
