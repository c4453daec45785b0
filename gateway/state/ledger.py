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

The counters themselves (no I/O) are :class:`~gateway.state.spend_counters.SpendCounters`;
here are the writes, the fetches and when they are due (:class:`FetchSchedule`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.periodic import Periodic
from gateway.state.spend_counters import SpendCounters

log = logging.getLogger("gateway.state.ledger")


class FetchSchedule:
    """When each counter's backend total is due to be fetched again: at most
    once per ``interval_s``; after a failed fetch, its keys fail fast (no I/O)
    for one interval. It also remembers, for a key list a caller passes again
    and again, until when all of it is fresh, so the common refresh is one
    dict lookup."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next_fetch: dict[str, float] = {}
        self._failed_until: dict[str, float] = {}
        self._fresh: dict[int, tuple[list[str], float]] = {}

    def fresh(self, keys: Iterable[str]) -> bool:
        """True when this very list was all fetched within the interval."""
        fresh = self._fresh.get(id(keys))
        return fresh is not None and fresh[0] is keys and self._clock() < fresh[1]

    def due(self, keys: list[str]) -> list[str]:
        """The keys to fetch now; raises if one of them failed within the interval."""
        now = self._clock()
        due = [k for k in keys if self._next_fetch.get(k, 0.0) <= now]
        if any(self._failed_until.get(k, 0.0) > now for k in due):
            raise BackendUnavailable("spend refresh failed recently; retrying after the refresh interval")
        return due

    def fetched(self, keys: list[str], at: float) -> None:
        self._next_fetch.update(dict.fromkeys(keys, at + self.interval_s))
        for key in keys:
            self._failed_until.pop(key, None)

    def failed(self, keys: list[str], at: float) -> None:
        self._failed_until.update(dict.fromkeys(keys, at + self.interval_s))

    def remember(self, keys: Iterable[str], wanted: list[str]) -> None:
        """Until when every key of ``keys`` (if a list) needs no fetch."""
        if not isinstance(keys, list):
            return
        until = min((self._next_fetch.get(k, 0.0) for k in wanted), default=0.0)
        if len(self._fresh) > 10_000:
            self._fresh.clear()
        self._fresh[id(keys)] = (keys, until)


class SpendLedger:
    """Spend counters buffered in memory (:class:`SpendCounters`) and flushed
    to a :class:`StateBackend` (see the module docstring for the guarantees)."""

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
        self._counters = SpendCounters()
        self._schedule = FetchSchedule(refresh_interval_s, clock)
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
        self._counters.add(increments)

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None:
        """Add ``amounts[i]`` to every counter of ``keys[i]``, summed per
        ``group`` until a flush (see :meth:`SpendCounters.tally`)."""
        self._counters.tally(group, keys, amounts)

    def pending(self) -> dict[str, float]:
        """What is not yet confirmed written (buffered plus a flush in flight)."""
        return self._counters.pending()

    def known(self, keys: Iterable[str]) -> dict[str, float]:
        """Best local view of each total: last fetched + written since + pending."""
        return self._counters.known(keys)

    # --- I/O -------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write the buffered increments; False (and kept) if the backend is down."""
        async with self._lock:
            batch = self._counters.take()
            if not batch:
                return True
            written = False
            try:
                await self.backend.incr_spend(batch)
                written = True
            except BackendUnavailable as exc:
                self.flush_failures += 1
                if not self._failing:  # once per outage, not once per interval
                    log.warning("spend flush failed; buffering and retrying: %s", exc)
                self._failing = True
                return False
            except Exception:
                self.flush_failures += 1
                raise
            finally:
                self._counters.settle(batch, written=written)  # a failed batch goes back, merged with newer amounts
            if self._failing:
                log.info("spend flush succeeded again after %d failures", self.flush_failures)
            self._failing = False
            return True

    async def refresh(self, keys: Iterable[str]) -> None:
        """Fetch backend totals of the keys not fetched in the last
        ``refresh_interval_s``. Raises :class:`BackendUnavailable` (old values
        kept); after a failure, those keys fail fast without I/O for one
        interval, so an outage does not stall every request."""
        schedule = self._schedule
        if schedule.fresh(keys):
            return  # the commonest case: this very list was all fetched within the interval
        wanted = list(dict.fromkeys(keys))
        if not schedule.due(wanted):  # the common case: no lock, no I/O
            schedule.remember(keys, wanted)
            return
        async with self._lock:
            due = schedule.due(wanted)
            if not due:
                return
            now = self._clock()
            try:
                totals = await self.backend.read_spend(due)
            except BackendUnavailable:
                schedule.failed(due, now)
                raise
            self._counters.fetched(totals)
            schedule.fetched(due, now)
            schedule.remember(keys, wanted)

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
