"""The spend ledger's counters in memory: what the request path adds, what is
being written, and what the backend last said (see :class:`SpendCounters`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

BatchId = tuple[str, int]
"""A batch's owner (one ledger, or an earlier process's journal) and its ``seq``."""


def merge(into: dict[str, float], amounts: Mapping[str, float]) -> None:
    for key, usd in amounts.items():
        into[key] = into.get(key, 0.0) + usd


class SpendCounters:
    """Spend per counter in three parts: *base* (the backend's total when last
    fetched, plus what this process wrote since), *held* (batches taken for a
    write and not yet confirmed: the one in flight, and any that failed, kept
    whole to be written again under the same id) and *pending* (added, not yet
    taken). :meth:`known` is their sum, kept up to date as amounts come in (one
    lookup per key to read); a write moves amounts between the parts and never
    changes it. No I/O: the :class:`~gateway.state.ledger.SpendLedger` does that."""

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}
        self._tallies: dict[Hashable, tuple[Sequence[Sequence[str]], list[float]]] = {}
        self._held: dict[BatchId, dict[str, float]] = {}
        """Batches taken and not yet written, by id, oldest first."""
        self._base: dict[str, float] = {}
        self._known: dict[str, float] = {}
        """base + held + pending per counter."""
        self.settled = 0
        """Batches confirmed written so far: a reader that adds :meth:`pending` to the
        backend's totals checks it did not change meanwhile (a batch confirmed between
        the two reads would be in neither)."""

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
        """What is not yet confirmed written (held batches plus what is buffered)."""
        self._fold_tallies()
        out: dict[str, float] = {}
        for batch in self._held.values():
            merge(out, batch)
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
    def take(self, batch_id: BatchId) -> dict[str, float]:
        """Everything pending (tallies spread), now held as batch ``batch_id``;
        empty (and nothing held) when nothing is pending."""
        self._fold_tallies()
        batch, self._pending = self._pending, {}
        if batch:
            self._held[batch_id] = batch
        return batch

    def hold(self, batch_id: BatchId, batch: Mapping[str, float]) -> None:
        """A batch written by an earlier process and not known to be applied (a
        journal replayed at start-up): held, and counted in :meth:`known`."""
        held = self._held.setdefault(batch_id, {})
        merge(held, batch)
        merge(self._known, batch)

    def held(self) -> list[tuple[BatchId, dict[str, float]]]:
        """The batches waiting to be written again, oldest first."""
        return list(self._held.items())

    def settle(self, batch_id: BatchId, *, written: bool) -> None:
        """The write of batch ``batch_id`` is over: written (or found applied
        already), it is part of the base; failed, it stays held, whole, to be
        written again under the same id (never merged with newer amounts)."""
        if written:
            merge(self._base, self._held.pop(batch_id, {}))
            self.settled += 1

    def fetched(self, totals: Mapping[str, float]) -> None:
        """The backend's totals of some counters (other replicas' spend included)."""
        self._base.update(totals)
        pending, known = self._pending, self._known
        held = self._held.values()
        for key, total in totals.items():
            known[key] = total + sum(batch.get(key, 0.0) for batch in held) + pending.get(key, 0.0)
