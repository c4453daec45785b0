"""The state backend seam: everything the traffic-control policies keep.

One small interface, three implementations:

- ``embedded`` (the default): one process, no services. Records and spend live
  in a local SQLite file (so keys, teams and spend survive a restart); the
  response cache, rate-limit windows and concurrency slots live in memory;
  blobs (large values with a TTL) live in the file only.
- ``redis``: standalone, Sentinel or Cluster. Everything is shared, so limits,
  cache, spend and key revocation hold across any number of replicas.
- ``postgres``: PostgreSQL for what must last (records, the spend ledger,
  stored responses, the audit log) and Redis for what is hot (windows, slots,
  cache, reservations, copies of records and spend totals): ``postgres.py``.

Every method may raise :class:`BackendUnavailable` when the backend cannot be
reached; each policy then follows its configured failure mode (fail-open or
fail-closed) and counts the degraded decision. Spend is never written straight
through: :class:`gateway.state.ledger.SpendLedger` buffers increments and
retries them, so a Redis outage loses nothing; each of its writes is a
:class:`SpendBatch` that a backend applies at most once (:meth:`StateBackend.apply_spend`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from limits.aio.storage import Storage

Record = dict[str, Any]


class BackendUnavailable(Exception):
    """The state backend could not be reached (or answered an error)."""


class NewerSchema(Exception):
    """The state (a SQLite file, a PostgreSQL database) was written by a newer release than
    this one. Not :class:`BackendUnavailable`: no failure mode applies; nothing may start on it."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One fixed-window counter to charge: it resets ``period_s`` after its
    first charge; ``amount`` more must keep it within ``limit``."""

    key: str
    period_s: float
    amount: int
    limit: int


@dataclass(frozen=True, slots=True)
class WindowAdjust:
    """A correction of an earlier charge (see :meth:`StateBackend.adjust_windows`)."""

    key: str
    period_s: float
    delta: int
    window_end: float


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One concurrency slot to take along with the windows: one of ``limit``;
    ``ttl_s`` bounds how long the slot of a crashed holder can linger (Redis)."""

    key: str
    limit: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class WindowHit:
    refused: int
    """Index of the first window that could not take its amount, or ``len(windows)
    + i`` when slot ``i`` was full; -1 when all were taken."""
    counts: list[int]
    """Each window's count: after this charge when admitted, unchanged when refused."""
    resets_s: list[float]
    """Seconds until each window resets (its period for a window not started)."""


@dataclass(frozen=True, slots=True)
class SpendBatch:
    """One write of the spend ledger, applied at most once: ``(owner, seq)`` names it.

    ``owner`` is one ledger (a gateway process, or the journal of an earlier one),
    ``seq`` increases with every batch it writes, and it writes them in order, one
    at a time; so a backend remembers only the last ``seq`` applied per owner and
    skips a batch whose ``seq`` is not above it (a call that timed out but was
    applied, then retried; a journal replayed twice)."""

    owner: str
    seq: int
    increments: Mapping[str, float]
    """USD (or usage units) to add to each counter; may be empty (reservations only)."""
    reserved: Mapping[str, float] | None = None
    """This owner's budget reservations now, per spend counter (absolute; 0 drops
    one), for other replicas' budget checks; None: unchanged. A shared backend keeps
    them ``reserved_ttl_s`` (so a crashed owner's go away); a one-process backend
    ignores them."""
    reserved_ttl_s: float = 30.0


class Blobs(Protocol):
    """Durable values with a time to live: large values (stored responses: up to a few MB,
    kept for days) that must survive a restart (embedded: the SQLite file, never held in
    memory) and be shared by replicas (Redis). A namespace apart from the cache's."""

    async def blob_put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` s, replacing it and its TTL (<= 0: removes ``key``)."""
        ...

    async def blob_put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Each ``(key, value, ttl_s)`` as :meth:`blob_put`, together (one Redis pipeline)."""
        ...

    async def blob_get(self, key: str) -> bytes | None:
        """The value stored under ``key``; None when absent or expired."""
        ...

    async def blob_get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Each key's value as :meth:`blob_get`, in order, together (one Redis pipeline, one
        trip to the file or the database)."""
        ...

    async def blob_delete(self, key: str) -> bool:
        """Remove ``key``; True when it held a value not yet expired."""
        ...


class StateBackend(Blobs, Protocol):
    kind: str
    """"embedded", "redis" or "postgres"."""

    # --- records: client keys, teams (JSON objects by table and id) ---------
    async def get(self, table: str, id: str) -> Record | None: ...

    async def put(self, table: str, id: str, record: Record) -> None: ...

    async def delete(self, table: str, id: str) -> bool:
        """True if the record existed."""
        ...

    async def scan(self, table: str) -> list[Record]:
        """Every record of a table (admin listings; not on the request path)."""
        ...

    # --- spend: float counters, USD -----------------------------------------
    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        """Add each amount to its counter, all or nothing as far as the backend
        allows (SQLite: one transaction; Redis: one MULTI pipeline)."""
        ...

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        """Current totals; a counter never written reads 0.0."""
        ...

    async def apply_spend(self, batch: SpendBatch) -> bool:
        """Add ``batch.increments`` (all or nothing, as :meth:`incr_spend`) unless
        its owner's batch ``seq`` or a later one was applied already; True when
        added now, False when skipped. The check and the increments are one atomic
        step (SQLite: one transaction; Redis: one Lua script), so a retry of a call
        that timed out after it was applied changes nothing. Also publishes
        ``batch.reserved`` (see :class:`SpendBatch`), whatever the outcome."""
        ...

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        """(spend totals as :meth:`read_spend`, the budget reservations every owner
        but ``owner`` holds now on each counter) in one operation; the second is
        empty on a one-process backend."""
        ...

    # --- response cache --------------------------------------------------------
    async def cache_get(self, key: str) -> bytes | None: ...

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    # --- blobs: the methods of Blobs (above) ---------------------------------

    # --- concurrency slots ---------------------------------------------------
    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        """Take one of ``limit`` slots; False when all are taken. ``ttl_s``
        bounds how long a slot of a crashed holder can linger (Redis)."""
        ...

    async def release_slot(self, key: str) -> None: ...

    # --- rate-limit windows ----------------------------------------------------
    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        """Charge every window and take one of each of ``slots``, or nothing at
        all, atomically (Redis: one Lua script, one round trip). A window
        refuses when ``count + amount > limit`` (an amount of 0 refuses only a
        full window); a slot refuses when ``limit`` are taken. The slots are
        the ones :meth:`acquire_slot` takes (same keys)."""
        ...

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        """Add each ``delta``: more is charged to the current window; a refund
        (``delta`` < 0) applies only while the window that ends at ``window_end``
        (epoch seconds, as hit_windows implied) is still the current one. Then
        give back one slot of each key in ``release`` (as :meth:`release_slot`).
        All in one operation (Redis: one Lua script)."""
        ...

    def limits_storage(self) -> Storage:
        """The ``limits`` library storage these windows live in."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    # --- append-only logs (the admin audit log) ------------------------------
    async def append_log(self, stream: str, record: Record) -> int:
        """Append ``record`` to ``stream``; its sequence number (1, 2, ...: one
        counter per stream, increasing across replicas). Records can never be
        changed or deleted through this interface."""
        ...

    async def read_log(self, stream: str, limit: int, before: int | None = None) -> list[Record]:
        """Up to ``limit`` records, newest first, each with its ``seq``; only those
        with ``seq < before`` when ``before`` is given (paging back)."""
        ...

    # --- enumeration and restore (backups, gateway/state/backup.py; never on the request path) ---
    async def tables(self) -> list[str]:
        """Every table holding at least one record, sorted."""
        ...

    async def scan_items(self, table: str) -> list[tuple[str, Record]]:
        """Every record of a table with its id, by id."""
        ...

    async def spend_counters(self) -> dict[str, float]:
        """Every spend counter written so far, with its total."""
        ...

    async def spend_marks(self) -> dict[str, int]:
        """The last batch ``seq`` applied per ledger owner (see :class:`SpendBatch`)."""
        ...

    async def restore_spend(self, totals: Mapping[str, float], marks: Mapping[str, int]) -> None:
        """Set each counter to its total and each owner's mark to its ``seq`` (absolute
        values, not added: a restore into an empty backend)."""
        ...

    def blob_items(self) -> AsyncIterator[tuple[str, bytes, float]]:
        """Every blob not yet expired, as (key, value, seconds it has left), by key;
        one page at a time (blobs can be large)."""
        ...

    async def log_streams(self) -> list[str]:
        """Every log stream holding at least one record, sorted."""
        ...

    async def restore_log(self, stream: str, records: Sequence[Record]) -> bool:
        """Put ``records`` (each with its ``seq``, oldest first) back into ``stream``, which
        holds none, keeping their sequence numbers; the stream's counter continues after
        the last. False when the backend could not keep the numbers (embedded: one counter
        for every stream, and a number was taken by another stream) and appended the
        records in order under new ones instead."""
        ...
