"""``SpendLedger.totals``: the backend's totals plus this process's unwritten amounts, never
missing a batch that a flush confirms while the backend is read (the reports and
``/admin/usage`` read through it; a usage row once missed one replica's requests so)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger, read_totals

KEY = "usage:requests:model:a:2026-12-06"


class _Crossed(EmbeddedBackend):
    """A backend whose next read runs ``during`` after taking its snapshot: a flush that
    lands and is confirmed while the read is on its way back."""

    during: Callable[[], Awaitable[None]] | None = None

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        totals = await super().read_spend(keys)
        if self.during is not None:
            during, self.during = self.during, None
            await during()
        return totals


async def test_a_batch_confirmed_during_the_read_is_counted_once(tmp_path: Path) -> None:
    backend = _Crossed(str(tmp_path / "gw.db"))
    ledger = SpendLedger(backend, flush_interval_s=60, refresh_interval_s=60)
    try:
        await backend.incr_spend({KEY: 2.0})  # another replica's requests, written already
        ledger.add({KEY: 2.0})  # this process's two, about to be flushed
        counters = ledger._counters
        batch = counters.take(("me", 1))  # the flush has taken them: held, in flight

        async def lands() -> None:  # applied and confirmed after the read's snapshot
            await backend.incr_spend(batch)
            counters.settle(("me", 1), written=True)

        backend.during = lands
        # Snapshot 2 (before the batch) + pending 0 (after its confirmation) would miss the
        # batch; the read sees the confirmation cross it and reads again: 2 + 2.
        assert (await read_totals(ledger, [KEY]))[KEY] == 4.0
        assert counters.settled == 1

        ledger.add({KEY: 1.0})  # unwritten amounts are still added to what is read
        assert (await read_totals(ledger, [KEY]))[KEY] == 5.0
    finally:
        await backend.aclose()
