"""The spend journal (gateway/state/spend_journal.py) and the ledger over it on
the real embedded backend: amounts buffered and written in one line per write
(at a charge, or once per event-loop turn), segments sealed per batch and
deleted once applied, replay after a crash (each batch once, even when it was
committed before the crash), the lock, a failing disk."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.config.state import StateSettings
from gateway.state.embedded import EmbeddedBackend
from gateway.state.factory import create_ledger
from gateway.state.ledger import SpendLedger
from gateway.state.spend_journal import JournalBusy, SpendJournal, journal_dir, read_segment


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".spend"))


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


def ledger_on(backend: EmbeddedBackend, path: Path) -> SpendLedger:
    return SpendLedger(backend, flush_interval_s=60, refresh_interval_s=1, journal=SpendJournal(path))


# --- the journal alone ---------------------------------------------------------------------------


async def test_amounts_are_buffered_and_written_in_one_line_per_write(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "j")
    assert journal.open() == []
    for i in range(50):  # fifty amounts added in one turn, none of them charged through the settlement
        journal.add({"spend:key:k:2026-11-26": 0.001, "spend:global:all:2026-11-26": 0.001 * i})
        journal.tally(("k",), [["usage:requests:key:k:2026-11-26"]], [1])
    assert segments(tmp_path / "j") == [], "nothing written during the turn"
    await asyncio.sleep(0)  # the end of the turn: one write of all of it
    assert journal.writes == 1
    journal.add({"spend:key:k:2026-11-26": 0.5})
    journal.write()  # a charge: written at once, before its answer is sent
    journal.write()  # nothing new: nothing written
    assert journal.writes == 2
    await asyncio.sleep(0)
    assert journal.writes == 2, "the turn's write found nothing left"
    [name] = segments(tmp_path / "j")
    path = tmp_path / "j" / name
    assert path.read_bytes().count(b"\n") == 2
    totals, bad = read_segment(path)
    assert bad == 0
    assert totals["spend:key:k:2026-11-26"] == pytest.approx(0.55)
    assert totals["spend:global:all:2026-11-26"] == pytest.approx(0.001 * sum(range(50)))
    assert totals["usage:requests:key:k:2026-11-26"] == 50
    journal.close()


async def test_seal_closes_the_segment_of_the_batch_and_the_next_turn_starts_another(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "j")
    journal.open()
    journal.add({"a": 1.0})
    assert journal.seal() == 1, "the turn so far is written into segment 1 at once"
    journal.add({"a": 2.0})
    await asyncio.sleep(0)
    names = segments(tmp_path / "j")
    assert names == [f"{journal.owner}.1.spend", f"{journal.owner}.2.spend"]
    assert read_segment(tmp_path / "j" / names[0])[0] == {"a": 1.0}
    assert read_segment(tmp_path / "j" / names[1])[0] == {"a": 2.0}
    journal.applied(journal.owner, 1)
    journal.applied(journal.owner, 1)  # gone already: nothing to do
    assert segments(tmp_path / "j") == [f"{journal.owner}.2.spend"]
    journal.close()


async def test_a_second_process_on_the_directory_is_refused(tmp_path: Path) -> None:
    first = SpendJournal(tmp_path / "j")
    first.open()
    with pytest.raises(JournalBusy, match="in use by another process"):
        SpendJournal(tmp_path / "j").open()
    first.close()
    again = SpendJournal(tmp_path / "j")
    assert again.open() == []  # the lock went with the first one
    again.close()


async def test_with_siblings_each_process_takes_a_directory_of_its_own(tmp_path: Path) -> None:
    """The postgres backend's journals: several processes on one path, each in the first free
    directory; one that replaces a dead process takes its directory and replays what it left."""
    first, second, third = (SpendJournal(tmp_path / "j", siblings=2) for _ in range(3))
    assert (first.open(), second.open(), third.open()) == ([], [], [])
    assert [j.directory.name for j in (first, second, third)] == ["j", "j.1", "j.2"]
    with pytest.raises(JournalBusy, match=r"in use by another process.*its 2 numbered siblings are all in use"):
        SpendJournal(tmp_path / "j", siblings=2).open()
    second.add({"team:t": 0.25})
    second.write()
    second_owner = second.owner
    for fd in (second._fd, second._lock_fd):  # the process dies: its lock goes, its segment stays
        if fd is not None:
            os.close(fd)
    second._fd = second._lock_fd = None
    successor = SpendJournal(tmp_path / "j", siblings=2)
    assert successor.open() == [(second_owner, 1, {"team:t": 0.25})]
    assert successor.directory.name == "j.1"
    for journal in (first, third, successor):
        journal.close()


async def test_unreadable_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    good = orjson.dumps([{"a": 0.5}, [[[["b", "c"]], [2]]]])
    (directory / "j-old.3.spend").write_bytes(good + b"\n" + b'[{"a": 0.2' + b"\n" + good + b"\n[1, 2]\n")
    journal = SpendJournal(directory)
    [(owner, seq, amounts)] = journal.open()
    assert (owner, seq) == ("j-old", 3)
    assert amounts == {"a": 1.0, "b": 4.0, "c": 4.0}, "the torn line and the wrong shape skipped"
    assert journal.bad_lines == 2
    journal.close()


async def test_a_failed_write_is_counted_and_the_next_line_stands_alone(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "j")
    journal.open()
    shutil.rmtree(tmp_path / "j")  # the directory is gone: the segment cannot be created
    journal.add({"a": 1.0})
    journal.write()  # fails: counted, and the answer is not held up
    assert (journal.write_errors, journal.writes) == (1, 0)
    (tmp_path / "j").mkdir()
    journal.add({"a": 2.0})
    await asyncio.sleep(0)
    assert journal.writes == 1
    [name] = segments(tmp_path / "j")
    assert (tmp_path / "j" / name).read_bytes().startswith(b"\n"), "a fresh line after a failed one"
    assert read_segment(tmp_path / "j" / name) == ({"a": 2.0}, 0)
    journal.close()


# --- the ledger over the journal -----------------------------------------------------------------


async def test_a_killed_ledger_loses_nothing_and_a_committed_batch_is_not_replayed_twice(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path = tmp_path / "j"
    first = ledger_on(backend, path)
    await first.start()
    first.add({"spend:k": 0.25})
    assert await first.flush() is True
    assert segments(path) == [], "applied: its segment is deleted"
    first.add({"spend:k": 0.5})
    first.tally(("g",), [["usage:k"]], [3])
    first.journal_now()
    # This batch is committed, then the process dies before its segment is deleted:
    [committed] = segments(path)
    keep = (path / committed).read_bytes()
    assert await first.flush() is True
    (path / committed).write_bytes(keep)
    first.add({"spend:k": 2.0})
    first.journal_now()
    assert first.journal is not None
    first.journal.close()  # the process dies here: no flush, no graceful close (the lock goes with it)
    assert await backend.read_spend(["spend:k", "usage:k"]) == {"spend:k": 0.75, "usage:k": 3.0}

    second = ledger_on(backend, path)
    await second.start()  # replays every segment the first left
    assert await backend.read_spend(["spend:k", "usage:k"]) == {"spend:k": 2.75, "usage:k": 3.0}
    assert second.stats().journal_replayed == 2
    assert second.stats().duplicate_batches == 1, "the committed one skipped"
    assert segments(path) == []
    await second.close()


async def test_replay_waits_for_the_backend_and_the_close_keeps_the_journal(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    path = journal_dir(str(db))
    backend = EmbeddedBackend(str(db))
    ledger = create_ledger(StateSettings(path=str(db), flush_interval_s=60), backend)
    await ledger.start()
    ledger.add({"spend:k": 0.5})
    ledger.journal_now()
    assert ledger.journal is not None
    ledger.journal.close()  # killed
    await backend.aclose()  # and the disk is gone at the next start (closed: every call fails)

    again = create_ledger(StateSettings(path=str(db), flush_interval_s=60), backend)
    await again.start()  # the replay fails: kept, held, retried by later flushes
    assert again.pending() == {"spend:k": 0.5}
    assert await again.close(attempts=1) == {"spend:k": 0.5}
    assert len(segments(path)) == 1, "still in the journal for the next start"

    fresh = EmbeddedBackend(str(db))
    last = create_ledger(StateSettings(path=str(db), flush_interval_s=60), fresh)
    await last.start()
    assert await fresh.read_spend(["spend:k"]) == {"spend:k": 0.5}
    assert await last.close() == {}
    assert segments(path) == []
    await fresh.aclose()


async def test_without_the_journal_nothing_is_written_beside_the_file(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    backend = EmbeddedBackend(str(db))
    ledger = create_ledger(StateSettings(path=str(db), spend_journal=False), backend)
    await ledger.start()
    ledger.add({"a": 1.0})
    ledger.journal_now()  # nothing to do
    assert await ledger.close() == {}
    assert not journal_dir(str(db)).exists()
    assert await backend.read_spend(["a"]) == {"a": 1.0}
    await backend.aclose()


async def test_a_burst_of_charges_writes_one_line_each(backend: EmbeddedBackend, tmp_path: Path) -> None:
    ledger = ledger_on(backend, tmp_path / "j")
    await ledger.start()

    async def request(i: int) -> None:
        await asyncio.sleep(0.001 * (i % 5))
        ledger.add({"spend:k": 0.001})
        ledger.journal_now()

    await asyncio.gather(*(request(i) for i in range(200)))
    assert ledger.stats().journal_writes == 200
    [name] = segments(tmp_path / "j")
    assert (tmp_path / "j" / name).read_bytes().count(b"\n") == 200
    assert read_segment(tmp_path / "j" / name)[0]["spend:k"] == pytest.approx(0.2)
    assert await ledger.close() == {}
    assert await backend.read_spend(["spend:k"]) == {"spend:k": pytest.approx(0.2)}
    assert os.listdir(tmp_path / "j") == ["lock"]


def test_without_an_event_loop_each_add_is_written_at_once(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "j")
    journal.open()
    journal.add({"a": 1.0})
    journal.tally(("g",), [["b"]], [2])
    assert journal.writes == 2
    [name] = segments(tmp_path / "j")
    assert read_segment(tmp_path / "j" / name) == ({"a": 1.0, "b": 2.0}, 0)
    journal.close()
