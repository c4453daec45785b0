"""Buffered spend: the request path adds costs in memory; a background task
writes them to the state backend in batches.

Guarantees:

- No increment is lost or counted twice: a flush takes the pending amounts as
  one batch with an id, ``(owner, seq)`` (:class:`~gateway.state.base.SpendBatch`),
  and writes it with ONE ``apply_spend``, which the backend applies at most once
  per id. A batch that fails is kept whole and written again under the same id
  before any newer one (so a Redis call that timed out after it was applied,
  then retried, counts once); newer amounts go into the next batch. The writes
  are :class:`~gateway.state.spend_writer.SpendWriter`'s.
- Spend survives a graceful restart: :meth:`close` stops the task and makes a
  final flush, retried a few times (embedded: the totals are in SQLite).
- Spend survives a Redis outage: increments stay buffered and are retried every
  flush interval until Redis answers again.
- A killed process loses nothing with a journal (the embedded backend's:
  :mod:`gateway.state.spend_journal`): a charged request's amounts are in its
  file before its answer is sent (:meth:`SpendLedger.journal_now`), anything
  else within the event-loop turn, and :meth:`SpendLedger.start` replays what
  an earlier process left. Without one (Redis), a crash loses what was
  buffered: about one flush interval.

Budget reservations (:class:`~gateway.state.reservations.Reservations`) live
here too: a request in flight holds its estimated cost on its budgets' counters
until it is charged or ends. On a shared backend every flush publishes this
process's reservations and every refresh fetches the other replicas'.

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
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.lru import Lru
from gateway.state.periodic import Periodic
from gateway.state.reservations import Reservations
from gateway.state.shared_budgets import shared_budgets_of
from gateway.state.spend_counters import SpendCounters
from gateway.state.spend_journal import SpendJournal
from gateway.state.spend_writer import SpendWriter

log = logging.getLogger("gateway.state.ledger")
FRESH_MAX = 100_000
"""Key lists whose freshness is remembered (least recently used evicted): about one per
client key with budgets."""


class FetchSchedule:
    """When each counter's backend total is due to be fetched again: at most
    once per ``interval_s``; after a failed fetch, its keys fail fast (no I/O)
    for one interval. It also remembers, for a key list a caller passes again
    and again (as a tuple: equal tuples share the entry), until when all of it
    is fresh, so the common refresh is one dict lookup.

    Past times are forgotten as they pile up (a day's counters are not asked
    for the next day): an entry whose time has passed says what no entry says."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next_fetch: dict[str, float] = {}
        self._failed_until: dict[str, float] = {}
        self._swept_at = 0
        """The size of both maps after the last :meth:`_sweep`."""
        self._fresh: Lru[tuple[str, ...], float] = Lru(FRESH_MAX)

    def fresh(self, keys: Iterable[str]) -> bool:
        """True when a tuple equal to ``keys`` was all fetched within the interval."""
        until = self._fresh.get(keys) if isinstance(keys, tuple) else None
        return until is not None and self._clock() < until

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
        self._sweep(at)

    def failed(self, keys: list[str], at: float) -> None:
        self._failed_until.update(dict.fromkeys(keys, at + self.interval_s))
        self._sweep(at)

    def _sweep(self, now: float) -> None:
        """Forget the times that have passed (a key with none is due and not failing, as
        with a past one) once the maps have doubled since the last sweep: amortised, next
        to nothing per fetch."""
        if len(self._next_fetch) + len(self._failed_until) <= 2 * self._swept_at + 1024:
            return
        self._next_fetch = {k: t for k, t in self._next_fetch.items() if t > now}
        self._failed_until = {k: t for k, t in self._failed_until.items() if t > now}
        self._swept_at = len(self._next_fetch) + len(self._failed_until)

    def remember(self, keys: Iterable[str], wanted: list[str]) -> None:
        """Until when every key of ``keys`` (if a tuple) needs no fetch."""
        if isinstance(keys, tuple):
            self._fresh.put(keys, min((self._next_fetch.get(k, 0.0) for k in wanted), default=0.0))


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """What the ledger counted, for the metrics scrape."""

    journal_writes: int = 0
    journal_write_errors: int = 0
    journal_unreadable_lines: int = 0
    journal_replayed: int = 0
    duplicate_batches: int = 0
    reservations: int = 0
    reserved_usd: float = 0.0


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
        journal: SpendJournal | None = None,
    ) -> None:
        self.backend = backend
        self.flush_interval_s = flush_interval_s
        self.refresh_interval_s = refresh_interval_s
        self.journal = journal
        self.owner = journal.owner if journal is not None else f"p-{uuid.uuid4().hex[:16]}"
        self.reservations = Reservations()
        self._clock = clock
        self._counters = SpendCounters()
        self._writer = SpendWriter(
            backend, self._counters, self.reservations, journal, self.owner, max(5.0, 10 * flush_interval_s)
        )
        self.shared_budgets = shared_budgets_of(backend, self.add, self.owner)
        self._schedule = FetchSchedule(refresh_interval_s, clock)
        self._lock = asyncio.Lock()
        message = "spend flush failed unexpectedly; amounts kept for retry"
        self._flusher = Periodic("spend-ledger-flush", flush_interval_s, self.flush, message)

    @property
    def flush_failures(self) -> int:
        return self._writer.failures

    # --- request path (synchronous, no I/O) ----------------------------------
    def add(self, increments: Mapping[str, float]) -> None:
        """Buffer amounts (USD) to add to their counters (and to the journal's buffer)."""
        self._counters.add(increments)
        if self.journal is not None:
            self.journal.add(increments)

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None:
        """Add ``amounts[i]`` to every counter of ``keys[i]``, summed per
        ``group`` until a flush (see :meth:`SpendCounters.tally`)."""
        self._counters.tally(group, keys, amounts)
        if self.journal is not None:
            self.journal.tally(group, keys, amounts)

    def reserve(self, keys: Sequence[str], usd: float) -> None:
        """Hold ``usd`` on each counter of ``keys`` for a request in flight."""
        self.reservations.reserve(keys, usd)

    def release(self, keys: Sequence[str], usd: float) -> None:
        """Give back a reservation of :meth:`reserve` (the same keys and amount)."""
        self.reservations.release(keys, usd)

    def reserved(self, keys: Iterable[str]) -> dict[str, float]:
        """What requests in flight hold on each counter: ours, and the other
        replicas' as last fetched."""
        return self.reservations.held(keys)

    def journal_now(self) -> None:
        """Append what was added and not yet journaled to the journal now (the
        settlement calls it after charging a request, before its answer is
        sent); nothing without a journal."""
        if self.journal is not None:
            self.journal.write()

    def pending(self) -> dict[str, float]:
        """What is not yet confirmed written (held batches plus what is buffered)."""
        return self._counters.pending()

    def known(self, keys: Iterable[str]) -> dict[str, float]:
        """Best local view of each total: last fetched + written since + pending."""
        return self._counters.known(keys)

    def stats(self) -> LedgerStats:
        j, r, shared = self.journal, self.reservations, self.shared_budgets
        journal = (j.writes, j.write_errors, j.bad_lines, j.replayed) if j else (0, 0, 0, 0)
        count, usd = (r.count + shared.count, r.usd + shared.usd) if shared else (r.count, r.usd)
        return LedgerStats(*journal, self._writer.duplicates, count, max(0.0, usd))

    # --- I/O -------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write the held batches again, then the buffered amounts as a new
        batch (:class:`SpendWriter`); False (everything kept) if the backend is down."""
        async with self._lock:
            return await self._writer.flush()

    async def refresh(self, keys: Iterable[str]) -> None:
        """Fetch backend totals (and the other replicas' reservations) of the
        keys not fetched in the last ``refresh_interval_s``. Raises
        :class:`BackendUnavailable` (old values kept); after a failure, those
        keys fail fast without I/O for one interval, so an outage does not stall
        every request."""
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
                totals, others = await self.backend.read_budget(due, self.owner)
            except BackendUnavailable:
                schedule.failed(due, now)
                raise
            self._counters.fetched(totals)
            self.reservations.fetched(due, others)
            schedule.fetched(due, now)
            schedule.remember(keys, wanted)

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Replay what an earlier process left in the journal (applied once
        each; kept for the next flush if the backend is down), then start the
        task that flushes every ``flush_interval_s``."""
        if self.journal is not None:
            for owner, seq, amounts in self.journal.open():
                self._counters.hold((owner, seq), amounts)
            if self._counters.held():
                log.info("spend journal: replaying %d batch(es) left by an earlier process", len(self._counters.held()))
                await self.flush()
        self._flusher.start()

    async def close(self, *, attempts: int = 3, retry_wait_s: float = 0.2) -> dict[str, float]:
        """Stop the task (never mid-write), then flush, retrying up to
        ``attempts`` times. Returns what could not be written (logged too; with
        a journal it is kept there and applied at the next start)."""
        await self._flusher.stop()  # never mid-write
        lost: dict[str, float] = {}
        for attempt in range(attempts):
            if await self.flush():
                break
            if attempt + 1 < attempts:
                await asyncio.sleep(retry_wait_s)
        else:
            lost = self.pending()
            kept = " (kept in the spend journal: applied at the next start)" if self.journal is not None else ""
            log.error("spend not written at shutdown%s (USD by counter): %s", kept, lost)
        if self.journal is not None:
            self.journal.close()
        return lost


async def read_totals(ledger: SpendLedger, keys: Sequence[str], attempts: int = 5) -> dict[str, float]:
    """The backend's totals of ``keys`` plus what ``ledger``'s process has not yet written:
    read again when a batch was confirmed while the backend was read (it would be in
    neither the totals read before it landed nor the pending read after). After
    ``attempts`` reads that each crossed a confirmation (a flush every few ms), the last
    one is returned: it may miss one batch."""
    counters = ledger._counters  # the ledger's own parts, read together here
    for _ in range(attempts):
        before = counters.settled
        totals = await ledger.backend.read_spend(keys)
        if counters.settled == before:
            break
    for key, amount in counters.pending().items():
        if key in totals:
            totals[key] += amount
    return totals
