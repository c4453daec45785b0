"""The embedded backend's blobs beyond the shared contract (``tests/state_contract.py``):
they are in the SQLite file (not memory) when a put returns, survive a restart
with their expiry, and expired rows are deleted on read and by the bounded sweep."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.state import embedded_blobs
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend
from gateway.state.embedded_schema import migrate


def rows(path: Path) -> dict[str, bytes]:
    """The ``blobs`` table as another process reads it (expired rows included)."""
    with sqlite3.connect(path) as conn:
        found = {str(k): bytes(v) for k, v in conn.execute("SELECT key, value FROM blobs")}
    conn.close()
    return found


async def test_blobs_survive_closing_and_reopening_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "state" / "gateway.db"
    big = bytes(range(256)) * 8192  # 2 MiB
    first = EmbeddedBackend(str(path))
    await first.blob_put("resp_1", b'{"id":"resp_1"}', 30 * 86400)
    await first.blob_put("resp_big", big, 60)
    await first.blob_put("resp_gone", b"x", 60)
    await first.blob_put("resp_short", b"x", 0.05)
    assert await first.blob_delete("resp_gone") is True
    assert rows(path).keys() == {"resp_1", "resp_big", "resp_short"}, "on disk when the call returns"
    await first.aclose()

    await asyncio.sleep(0.1)  # resp_short expires while no gateway runs: wall-clock expiry
    second = EmbeddedBackend(str(path))
    try:
        assert await second.blob_get("resp_1") == b'{"id":"resp_1"}'
        assert await second.blob_get("resp_big") == big
        assert await second.blob_get("resp_gone") is None
        assert await second.blob_get("resp_short") is None
    finally:
        await second.aclose()


async def test_an_expired_row_found_by_a_read_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    b = EmbeddedBackend(str(path))
    try:
        await b.blob_put("short", b"v", 0.05)
        await b.blob_put("long", b"w", 60)
        await asyncio.sleep(0.1)
        assert rows(path).keys() == {"short", "long"}, "expired, but nothing has looked yet"
        assert await b.blob_get("short") is None
        assert rows(path) == {"long": b"w"}
    finally:
        await b.aclose()


async def test_expired_rows_nobody_reads_are_swept_every_so_many_puts(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    b = EmbeddedBackend(str(path))
    try:
        for i in range(3):
            await b.blob_put(f"stale-{i}", b"old", 0.05)
        await b.blob_put("kept", b"live", 60)
        await b.blobs_written()
        await asyncio.sleep(0.1)
        for i in range(embedded_blobs.SWEEP_EVERY - 5):  # rows 5 .. SWEEP_EVERY - 1: no sweep yet
            await b.blob_put(f"fill-{i}", b"f", 60)
        await b.blobs_written()
        assert {f"stale-{i}" for i in range(3)} <= rows(path).keys(), "not swept before its turn"
        await b.blob_put("the-100th", b"f", 60)
        await b.blobs_written()
        left = rows(path)
        assert not any(k.startswith("stale-") for k in left), "swept with the SWEEP_EVERY-th put"
        assert left["kept"] == b"live" and left["the-100th"] == b"f", "live rows stay"
    finally:
        await b.aclose()


def test_one_sweep_deletes_at_most_its_limit_oldest_first(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, path)
        now = time.time()
        for i in range(5):
            embedded_blobs.put(conn, f"expired-{i}", b"x", now - 100 + i)
        embedded_blobs.put(conn, "live", b"y", now + 60)
        assert embedded_blobs.sweep(conn, now, limit=2) == 2
        left = sorted(k for (k,) in conn.execute("SELECT key FROM blobs"))
        assert left == ["expired-2", "expired-3", "expired-4", "live"], "the two oldest went"
        assert embedded_blobs.sweep(conn, now, limit=10) == 3
        assert embedded_blobs.sweep(conn, now, limit=10) == 0
        assert embedded_blobs.get(conn, "live", now) == b"y"
    finally:
        conn.close()


async def test_blob_calls_on_a_closed_or_unusable_backend_are_unavailable(tmp_path: Path) -> None:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    await b.blob_put("k", b"v", 60)
    await b.aclose()
    (tmp_path / "file").write_text("")
    unusable = EmbeddedBackend(str(tmp_path / "file" / "gw.db"))  # a parent that is a file
    try:
        for backend in (b, unusable):
            with pytest.raises(BackendUnavailable):
                await backend.blob_put("k", b"v", 60)
            with pytest.raises(BackendUnavailable):
                await backend.blob_get("k")
            with pytest.raises(BackendUnavailable):
                await backend.blob_delete("k")
    finally:
        await unusable.aclose()


async def test_puts_are_readable_at_once_and_written_behind_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    backend = EmbeddedBackend(str(path))
    try:
        await backend.blob_put("warm", b"w", 60)  # the file is open and migrated from here on
        await backend.blobs_written()
        for i in range(50):
            await backend.blob_put(f"resp_{i}", b"v%d" % i, 60)
            assert await backend.blob_get(f"resp_{i}") == b"v%d" % i, "readable at once, written or not"
        await backend.blobs_written()
        assert len(rows(path)) == 51
        assert backend._db.blob_puts == 51  # one row each, however the batches fell
        await backend.blob_put("resp_0", b"new", 60)
        assert await backend.blob_delete("resp_0") is True  # a delete waits for the write: it has the last word
        assert await backend.blob_get("resp_0") is None and "resp_0" not in rows(path)
    finally:
        await backend.aclose()
    assert "resp_49" in rows(path), "aclose waits for what is pending"


async def test_write_behind_batches_what_arrives_while_a_write_runs() -> None:
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def run(rows_: list[tuple[str, bytes, float]]) -> None:
        batches.append([key for key, _, _ in rows_])
        if len(batches) == 1:
            await release.wait()  # the first write is slow: the others queue behind it

    writer = embedded_blobs.WriteBehind(run, delay_s=0)
    writer.put("a", b"1", time.time() + 60)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    for key in ("b", "c", "b"):
        writer.put(key, b"2", time.time() + 60)
    assert writer.get("a", time.time()) == (True, b"1"), "being written: still read from memory"
    assert writer.get("b", time.time()) == (True, b"2")
    assert writer.get("zz", time.time()) == (False, None)
    release.set()
    await writer.flush()
    assert batches == [["a"], ["b", "c"]]
    assert writer.get("a", time.time()) == (False, None), "written: read from the file"


async def test_a_failed_write_is_logged_and_the_writer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    written: list[str] = []

    async def run(rows_: list[tuple[str, bytes, float]]) -> None:
        if any(key == "bad" for key, _, _ in rows_):
            raise BackendUnavailable("disk gone")
        written.extend(key for key, _, _ in rows_)

    writer = embedded_blobs.WriteBehind(run, delay_s=0)
    writer.put("bad", b"", time.time() + 60)
    await writer.flush()
    assert "could not write 1 stored blob(s)" in caplog.text and "disk gone" in caplog.text
    writer.put("good", b"", time.time() + 60)
    await writer.flush()
    assert written == ["good"]


def test_a_batch_over_one_statement_is_written_in_one_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, path)
        n = embedded_blobs.ROWS_PER_STATEMENT * 2 + 7
        later = time.time() + 60
        embedded_blobs.put_many(conn, [(f"k{i}", b"%d" % i, later) for i in range(n)])
        embedded_blobs.put_many(conn, [("k0", b"again", later), ("k1", b"again", later)])  # upserts
        assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == n
        assert embedded_blobs.get(conn, "k0", time.time()) == b"again"
        assert embedded_blobs.get(conn, f"k{n - 1}", time.time()) == b"%d" % (n - 1)
        bad = [(f"x{i}", b"v", later) for i in range(n)] + [("x-bad", None, later)]  # NOT NULL breaks the last chunk
        with pytest.raises(sqlite3.IntegrityError):
            embedded_blobs.put_many(conn, bad)  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM blobs WHERE key LIKE 'x%'").fetchone()[0] == 0, "all or nothing"
        assert not conn.in_transaction
    finally:
        conn.close()


async def test_puts_made_while_a_batch_is_written_wait_for_the_next_batch() -> None:
    """Each batch waits ``delay_s`` first, also the one after a write: a write that takes
    a while does not turn into a write per put (each a thread hop)."""
    batches: list[list[str]] = []

    async def run(rows_: list[tuple[str, bytes, float]]) -> None:
        batches.append([key for key, _, _ in rows_])
        if len(batches) == 1:
            writer.put("b", b"2", time.time() + 60)  # while the first batch is written
            await asyncio.sleep(0)
            writer.put("c", b"3", time.time() + 60)

    writer = embedded_blobs.WriteBehind(run, delay_s=0.05)
    writer.put("a", b"1", time.time() + 60)
    started = time.monotonic()
    await writer.flush()
    assert batches == [["a"], ["b", "c"]]
    assert time.monotonic() - started >= 0.1, "two batches, each after its delay"
