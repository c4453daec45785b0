"""The spend ledger's writes (see :class:`SpendWriter`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gateway.state.base import BackendUnavailable, SpendBatch, StateBackend
from gateway.state.reservations import Reservations
from gateway.state.spend_counters import BatchId, SpendCounters
from gateway.state.spend_journal import SpendJournal

log = logging.getLogger("gateway.state.ledger")


class SpendWriter:
    """Writes the ledger's batches: each under its id ``(owner, seq)``, the
    held ones (failed, or replayed from the journal) first and whole, then the
    buffered amounts as a new batch, with this process's reservations when the
    backend is shared. The caller serialises :meth:`flush` (one at a time)."""

    def __init__(
        self,
        backend: StateBackend,
        counters: SpendCounters,
        reservations: Reservations,
        journal: SpendJournal | None,
        owner: str,
        reserved_ttl_s: float,
    ) -> None:
        self.backend = backend
        self.owner = owner
        self.failures = 0
        self.duplicates = 0
        """Batches the backend had applied already (a late-applied call, then its retry)."""
        self._counters = counters
        self._reservations = reservations
        self._journal = journal
        self._shared = backend.kind != "embedded"  # other processes read our reservations
        self._reserved_ttl_s = reserved_ttl_s
        self._seq = 0
        self._failing = False

    async def flush(self) -> bool:
        """Write the held batches again (oldest first), then the buffered amounts
        as a new batch; False (everything kept) if the backend is down."""
        for batch_id, amounts in self._counters.held():
            if not await self._write(batch_id, amounts, {}):
                return False
        journal = self._journal
        if journal is not None:
            seq = journal.seal()  # the turn so far written: its segment is exactly this batch
        else:
            seq = self._seq = self._seq + 1
        batch = self._counters.take((self.owner, seq))
        reserved = self._reservations.to_publish() if self._shared else {}
        if not batch and not reserved:
            if journal is not None:
                journal.applied(self.owner, seq)  # a segment of zeros, if any
            return True
        return await self._write((self.owner, seq), batch, reserved)

    async def _write(self, batch_id: BatchId, amounts: Mapping[str, float], reserved: Mapping[str, float]) -> bool:
        owner, seq = batch_id
        batch = SpendBatch(owner, seq, amounts, reserved or None, self._reserved_ttl_s)
        try:
            applied = await self.backend.apply_spend(batch)
        except BackendUnavailable as exc:
            self.failures += 1
            if not self._failing:  # once per outage, not once per interval
                log.warning("spend flush failed; buffering and retrying: %s", exc)
            self._failing = True
            return False  # the batch stays held, whole, for the next flush
        except Exception:
            self.failures += 1
            raise
        self._counters.settle(batch_id, written=True)
        if reserved:
            self._reservations.published(reserved)
        if amounts and not applied:
            self.duplicates += 1
            log.info("spend batch %s/%d was applied already (a retry after a timeout): not counted again", owner, seq)
        if self._journal is not None:
            self._journal.applied(owner, seq)
        if self._failing:
            log.info("spend flush succeeded again after %d failures", self.failures)
        self._failing = False
        return True
