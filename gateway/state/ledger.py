"""Buffered spend: the request path adds costs in memory; a background task
writes them to the state backend in batches.

Guarantees:

- No increment is lost or counted twice by the ledger: a flush takes a
  snapshot of the pending amounts, clears them, writes the snapshot with ONE
  ``incr_spend`` and, if that fails, merges the snapshot back into whatever
  was added meanwhile, to be retried on the next flush. (The one ambiguity the
  ledger cannot see: a Redis timeout after the transaction was applied but
  before its reply arrived is retried, and so counted twice. The flush task is
  never cancelled mid-write, so shutdown does not add to that.)
- Spend survives a graceful restart: :meth:`close` stops the task and makes a
  final flush, retried a few times (embedded: the totals are in SQLite).
- Spend survives a Redis outage: increments stay buffered and are retried every
  flush interval until Redis answers again.
- A crash loses at most what was buffered: about one flush interval of spend.

Reads are cheap and never do I/O on the request path: :meth:`known` returns
the last fetched backend totals plus what this process wrote since plus what
it has buffered; :meth:`refresh` fetches totals (spend of other replicas) at
most once per ``refresh_interval_s`` per key. Flush and refresh take turns
(one lock), so a fetched total and the local estimate never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.periodic import Periodic

log = logging.getLogger("gateway.state.ledger")


def _merge(into: dict[str, float], amounts: Mapping[str, float]) -> None:
    for key, usd in amounts.items():
        into[key] = into.get(key, 0.0) + usd


class SpendLedger:
    """Spend counters buffered in memory and flushed to a :class:`StateBackend`
    (see the module docstring for the guarantees)."""

    def __init__(
        self,
        backend: StateBackend,
        *,
        flush_interval_s: float,
        refresh_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.flush_interval_s = flush_interval_s
        self.refresh_interval_s = refresh_interval_s
        self.flush_failures = 0
        self._failing = False
        self._clock = clock
        self._pending: dict[str, float] = {}
        self._tallies: dict[Hashable, tuple[Sequence[Sequence[str]], list[float]]] = {}
        self._inflight: dict[str, float] = {}
        self._base: dict[str, float] = {}
        self._known: dict[str, float] = {}
        """base + inflight + pending per counter; a flush moves amounts between them, never changes it."""
        self._next_fetch: dict[str, float] = {}
        self._failed_until: dict[str, float] = {}
        self._fresh: dict[int, tuple[list[str], float]] = {}
        self._lock = asyncio.Lock()
        self._flusher = Periodic(
            "spend-ledger-flush",
            flush_interval_s,
            self.flush,
            "spend flush failed unexpectedly; amounts kept for retry",
        )

    # --- request path (synchronous, no I/O) ----------------------------------
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
        and spread over their counters when :meth:`pending` or :meth:`flush`
        needs them. For counters that are written but not read on the request
        path (``known`` does not see them until then)."""
        slot = self._tallies.get(group)
        if slot is None:
            self._tallies[group] = (keys, list(amounts))
            return
        totals = slot[1]
        for i, amount in enumerate(amounts):
            totals[i] += amount

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

    def pending(self) -> dict[str, float]:
        """What is not yet confirmed written (buffered plus a flush in flight)."""
        self._fold_tallies()
        out = dict(self._inflight)
        _merge(out, self._pending)
        return out

    def known(self, keys: Iterable[str]) -> dict[str, float]:
        """Best local view of each total: last fetched + written since + pending
        (kept up to date as those change: one lookup per key here)."""
        known = self._known
        return {k: known.get(k, 0.0) for k in keys}

    # --- I/O -------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write the buffered increments; False (and kept) if the backend is down."""
        async with self._lock:
            self._fold_tallies()
            if not self._pending:
                return True
            batch, self._pending = self._pending, {}
            self._inflight = batch
            try:
                await self.backend.incr_spend(batch)
            except BackendUnavailable as exc:
                self.flush_failures += 1
                if not self._failing:  # once per outage, not once per interval
                    log.warning("spend flush failed; buffering and retrying: %s", exc)
                self._failing = True
                return False
            except Exception:
                self.flush_failures += 1
                raise
            else:
                if self._failing:
                    log.info("spend flush succeeded again after %d failures", self.flush_failures)
                self._failing = False
                _merge(self._base, batch)
                batch = {}
                return True
            finally:
                self._inflight = {}
                _merge(self._pending, batch)  # a failed batch goes back, merged with newer amounts

    async def refresh(self, keys: Iterable[str]) -> None:
        """Fetch backend totals of the keys not fetched in the last
        ``refresh_interval_s``. Raises :class:`BackendUnavailable` (old values
        kept); after a failure, those keys fail fast without I/O for one
        interval, so an outage does not stall every request."""
        fresh = self._fresh.get(id(keys))
        if fresh is not None and fresh[0] is keys and self._clock() < fresh[1]:
            return  # the commonest case: this very list was all fetched within the interval
        wanted = list(dict.fromkeys(keys))
        if not self._due(wanted):  # the common case: no lock, no I/O
            self._remember_fresh(keys, wanted)
            return
        async with self._lock:
            due = self._due(wanted)
            if not due:
                return
            now = self._clock()
            try:
                totals = await self.backend.read_spend(due)
            except BackendUnavailable:
                self._failed_until.update(dict.fromkeys(due, now + self.refresh_interval_s))
                raise
            self._base.update(totals)
            inflight, pending = self._inflight, self._pending
            for key, total in totals.items():
                self._known[key] = total + inflight.get(key, 0.0) + pending.get(key, 0.0)
            self._next_fetch.update(dict.fromkeys(due, now + self.refresh_interval_s))
            for key in due:
                self._failed_until.pop(key, None)
            self._remember_fresh(keys, wanted)

    def _remember_fresh(self, keys: Iterable[str], wanted: list[str]) -> None:
        """Until when every key of ``keys`` (a list the caller passes again and
        again) needs no fetch: the next refresh of it is one dict lookup."""
        if not isinstance(keys, list):
            return
        until = min((self._next_fetch.get(k, 0.0) for k in wanted), default=0.0)
        if len(self._fresh) > 10_000:
            self._fresh.clear()
        self._fresh[id(keys)] = (keys, until)

    def _due(self, keys: list[str]) -> list[str]:
        """The keys to fetch now; raises if one of them failed within the interval."""
        now = self._clock()
        due = [k for k in keys if self._next_fetch.get(k, 0.0) <= now]
        if any(self._failed_until.get(k, 0.0) > now for k in due):
            raise BackendUnavailable("spend refresh failed recently; retrying after the refresh interval")
        return due

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background task that flushes every ``flush_interval_s``."""
        self._flusher.start()

    async def close(self, *, attempts: int = 3, retry_wait_s: float = 0.2) -> dict[str, float]:
        """Stop the task (never mid-write), then flush, retrying up to
        ``attempts`` times. Returns what could not be written (logged too)."""
        await self._flusher.stop()  # never mid-write
        for attempt in range(attempts):
            if await self.flush():
                return {}
            if attempt + 1 < attempts:
                await asyncio.sleep(retry_wait_s)
        lost = self.pending()
        log.error("spend not written at shutdown (USD by counter): %s", lost)
        return lost
