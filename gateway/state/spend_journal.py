"""The spend journal: spend in an append-only file as it is added, so a killed
process loses none of it (see :class:`SpendJournal`).

Layout: a directory beside the embedded SQLite file (``<state.path>.spend-journal/``)
holding a ``lock`` file and *segments* ``<owner>.<seq>.spend``, one per batch of
the :class:`~gateway.state.ledger.SpendLedger`: segment ``seq`` holds, in JSON
lines, exactly the amounts that batch ``(owner, seq)`` writes.

- **Written before the answer**: the request path adds to a buffer, and the
  settlement writes it (:meth:`SpendJournal.write`: ONE ``write(2)`` of one
  JSON line, no ``fsync``) right after it charges a request, in the same
  synchronous step that then sends the answer: an answer the client received
  is in the file, and a kill can fall between the two only within that step.
  Amounts added otherwise are written once per event-loop turn (the first of
  a turn schedules the write with ``call_soon``). A killed process loses
  nothing (the page cache holds what was written); an OS crash or power cut
  may lose what the kernel had not written back yet (Linux: up to
  ``vm.dirty_expire_centisecs``, 30 s by default), the same window as the
  SQLite file's own last transactions (``synchronous=NORMAL``).
- **Sealed per flush**: before the ledger takes a batch it seals the current
  segment (what is buffered written first), and what is added next goes to
  segment ``seq + 1``. Once the backend has the batch, its segment is deleted.
- **Replayed at start**: every segment left by an earlier process (a crash, or
  a shutdown whose last flush failed) is read back and handed to the ledger as
  a batch of its old owner; the backend applies each ``(owner, seq)`` at most
  once (``StateBackend.apply_spend``), so a crash between the SQLite commit and
  the segment's deletion counts nothing twice.
- One process per directory: the ``lock`` file is held (``flock``) for the
  process's life; a second gateway on the same state file is refused.

A line that cannot be read (a torn write after a disk-full error or an OS
crash) is skipped and counted (``bad_lines``); a failed write is logged and
counted (``write_errors``): the amounts are still in memory and flushed as
usual, only a crash would lose them.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import uuid
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import orjson

log = logging.getLogger("gateway.state.journal")

_SEGMENT = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)\.(?P<seq>\d+)\.spend$")


class JournalBusy(Exception):
    """Another process holds the journal directory (two gateways on one state file)."""


def journal_dir(state_path: str) -> Path:
    """Where the embedded backend at ``state_path`` keeps its spend journal."""
    return Path(f"{state_path}.spend-journal")


def read_segment(path: Path) -> tuple[dict[str, float], int]:
    """The amounts of one segment, summed, and how many of its lines could not be read."""
    total: dict[str, float] = {}
    bad = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            adds, tallies = orjson.loads(line)
            for key, usd in adds.items():
                total[key] = total.get(key, 0.0) + float(usd)
            for keys, amounts in tallies:
                for counters, amount in zip(keys, amounts, strict=True):
                    for key in counters:
                        total[key] = total.get(key, 0.0) + float(amount)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            bad += 1
    return total, bad


def segments_in(directory: Path) -> list[tuple[str, int, Path]]:
    """The segments of a journal directory, ``(owner, seq, path)``, in the order to apply them."""
    found = []
    for path in directory.iterdir():
        match = _SEGMENT.match(path.name)
        if match is not None:
            found.append((match["owner"], int(match["seq"]), path))
    return sorted(found)


class SpendJournal:
    """One process's spend journal (see the module docstring)."""

    def __init__(self, directory: Path, *, siblings: int = 0) -> None:
        """``siblings``: when ``directory`` is held by another process, take the first free
        of ``<directory>.1`` ... ``<directory>.<siblings>`` instead (several processes on one
        shared backend, each with a journal of its own; a process that replaces a dead one
        takes its directory and replays it). 0: refuse (one embedded state file, one process)."""
        self.directory = directory
        self._siblings = siblings
        self.owner = f"j-{uuid.uuid4().hex[:16]}"
        self.seq = 1
        """The segment the next write goes to (the batch id the next flush takes)."""
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._adds: dict[str, float] = {}
        self._tallies: dict[Hashable, tuple[Sequence[Sequence[str]], list[float]]] = {}
        self._scheduled = False
        self._torn = False
        self.writes = 0
        self.write_errors = 0
        self.replayed = 0
        self.bad_lines = 0

    # --- start and end -------------------------------------------------------------------
    def open(self) -> list[tuple[str, int, dict[str, float]]]:
        """Take the directory (raises :class:`JournalBusy` if another process has
        it) and read back the segments earlier processes left: ``(owner, seq,
        amounts)``, in the order they must be applied."""
        first = self.directory
        for n in range(self._siblings + 1):
            self.directory = first if n == 0 else first.with_name(f"{first.name}.{n}")
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._lock_fd = fd
            break
        else:
            self.directory = first
            raise JournalBusy(
                f"the spend journal {first} is in use by another process: two gateways on one"
                " embedded state file? Stop the other one, or give this one its own state.path"
                + (f" (and its {self._siblings} numbered siblings are all in use)" if self._siblings else "")
            )
        leftovers = []
        for owner, seq, path in segments_in(self.directory):
            amounts, bad = read_segment(path)
            if bad:
                log.error("spend journal %s: %d unreadable line(s) skipped", path, bad)
            self.bad_lines += bad
            leftovers.append((owner, seq, amounts))
        self.replayed += len(leftovers)
        return leftovers

    def close(self) -> None:
        """Write what is buffered, close the segment and give the directory back."""
        self.write()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- the request path: buffered; written by the charge, or once per turn -------------
    def add(self, increments: Mapping[str, float]) -> None:
        adds = self._adds
        for key, usd in increments.items():
            if usd:
                adds[key] = adds.get(key, 0.0) + usd
        self._schedule()

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None:
        slot = self._tallies.get(group)
        if slot is None:
            self._tallies[group] = (keys, list(amounts))
        else:
            totals = slot[1]
            for i, amount in enumerate(amounts):
                totals[i] += amount
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script adding spend): written at once
            self.write()
            return
        self._scheduled = True
        loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self._scheduled = False
        self.write()

    # --- the flush: seal a segment, delete it once applied -----------------------------------
    def seal(self) -> int:
        """Write what is buffered into the current segment and close it: its
        ``seq``, the id of the batch the ledger takes now. What is added next
        goes to segment ``seq + 1``."""
        self.write()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        seq, self.seq = self.seq, self.seq + 1
        return seq

    def applied(self, owner: str, seq: int) -> None:
        """The backend has batch ``(owner, seq)``: its segment goes."""
        try:
            (self.directory / f"{owner}.{seq}.spend").unlink()
        except FileNotFoundError:
            pass  # no spend while it was current, or deleted already
        except OSError as exc:  # kept: replaying it is harmless (applied once)
            log.warning("spend journal: cannot delete segment %s.%s: %s", owner, seq, exc)

    def write(self) -> None:
        """Append what was added since the last write, now, as one line (nothing if nothing was)."""
        adds, tallies = self._adds, self._tallies
        if adds or tallies:
            self._adds, self._tallies = {}, {}
            line = orjson.dumps([adds, list(tallies.values())]) + b"\n"
            self._append(b"\n" + line if self._torn else line)

    def _append(self, data: bytes) -> None:
        try:
            if self._fd is None:
                path = self.directory / f"{self.owner}.{self.seq}.spend"
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
        except OSError as exc:
            if not self.write_errors:
                log.error("spend journal %s: write failed (spend kept in memory only): %s", self.directory, exc)
            self.write_errors += 1
            self._torn = True  # the next line starts on a line of its own
            return
        self._torn = False
        self.writes += 1
