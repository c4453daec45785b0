"""The embedded backend's schema versions: a file of the previous release opens
in this one, migrations run in order and once, a file of a newer release is
refused (and the gateway does not start on it)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.app.gateway_app import create_app
from gateway.cli.main import main
from gateway.config.loader import parse_config
from gateway.state.base import SpendBatch
from gateway.state.embedded import EmbeddedBackend
from gateway.state.embedded_schema import MIGRATIONS, Migration, SchemaTooNew, migrate

# The previous release's schema, verbatim (gateway/state/embedded.py before the
# schema had a version): the first two at every open, the log table and its
# index on the first audit-log write. It wrote no user_version (0).
PREVIOUS_RELEASE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,"
    " PRIMARY KEY (tbl, id))",
    "CREATE TABLE IF NOT EXISTS spend (key TEXT PRIMARY KEY, usd REAL NOT NULL)",
)
PREVIOUS_RELEASE_LOG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, json TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS logs_by_stream ON logs (stream, seq)",
)


def previous_release_file(path: Path, *, with_logs: bool) -> None:
    """A state file as the previous release left it, with records, spend and
    (``with_logs``) audit-log entries."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for ddl in PREVIOUS_RELEASE_SCHEMA + (PREVIOUS_RELEASE_LOG_SCHEMA if with_logs else ()):
        conn.execute(ddl)
    conn.executemany(
        "INSERT INTO records (tbl, id, json) VALUES (?, ?, ?)",
        [
            ("keys", "h1", '{"id":"h1","team":"eng","models":["chat"],"budget":{"daily_usd":5.0}}'),
            ("keys", "h2", '{"id":"h2","team":"ops"}'),
            ("teams", "eng", '{"id":"eng","rpm":60}'),
        ],
    )
    conn.executemany("INSERT INTO spend (key, usd) VALUES (?, ?)", [("spend:team:eng:2026-11", 12.5), ("k", 0.25)])
    if with_logs:
        conn.executemany(
            "INSERT INTO logs (stream, json) VALUES (?, ?)",
            [("audit", '{"action":"key.create","n":1}'), ("audit", '{"action":"key.delete","n":2}')],
        )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").fetchall()
    conn.close()
    return [(str(t), str(n), str(s)) for t, n, s in rows]


# --- a file of the previous release ----------------------------------------------------------------


async def test_a_previous_release_file_opens_with_everything_in_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    previous_release_file(path, with_logs=True)
    b = EmbeddedBackend(str(path))
    try:
        assert await b.get("keys", "h1") == {
            "id": "h1",
            "team": "eng",
            "models": ["chat"],
            "budget": {"daily_usd": 5.0},
        }
        assert sorted(r["id"] for r in await b.scan("keys")) == ["h1", "h2"]
        assert await b.scan("teams") == [{"id": "eng", "rpm": 60}]
        assert await b.read_spend(["spend:team:eng:2026-11", "k", "none"]) == {
            "spend:team:eng:2026-11": 12.5,
            "k": 0.25,
            "none": 0.0,
        }
        assert await b.read_log("audit", 10) == [
            {"action": "key.delete", "n": 2, "seq": 2},
            {"action": "key.create", "n": 1, "seq": 1},
        ]
        assert await b.append_log("audit", {"n": 3}) == 3, "the sequence goes on"
        await b.incr_spend({"k": 0.5})
        assert await b.read_spend(["k"]) == {"k": 0.75}
    finally:
        await b.aclose()
    assert user_version(path) == len(MIGRATIONS), "recognised as the baseline and stamped"


async def test_a_previous_release_file_without_audit_entries_gets_the_log_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    previous_release_file(path, with_logs=False)
    b = EmbeddedBackend(str(path))
    try:
        assert await b.read_log("audit", 10) == []
        assert await b.append_log("audit", {"n": 1}) == 1
        assert await b.get("teams", "eng") == {"id": "eng", "rpm": 60}
    finally:
        await b.aclose()


async def test_version_1_is_exactly_the_previous_release_schema(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    previous_release_file(old, with_logs=True)
    b = EmbeddedBackend(str(new))
    await b.ping()
    await b.aclose()
    batches = ("table", "spend_batches", MIGRATIONS[1].statements[0])  # version 2: each spend batch once
    blobs = [("table", "blobs", MIGRATIONS[2].statements[0]), ("index", "blobs_by_expiry", MIGRATIONS[2].statements[1])]
    assert schema_of(new) == sorted([*schema_of(old), batches, *blobs], key=lambda row: row[1])
    assert user_version(new) == len(MIGRATIONS)
    assert MIGRATIONS[0].statements == PREVIOUS_RELEASE_SCHEMA + PREVIOUS_RELEASE_LOG_SCHEMA


async def test_a_previous_release_file_gets_the_spend_batches_table_and_applies_each_batch_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.db"
    previous_release_file(path, with_logs=True)
    b = EmbeddedBackend(str(path))
    try:
        assert await b.apply_spend(SpendBatch("owner-a", 1, {"k": 0.5})) is True
        assert await b.apply_spend(SpendBatch("owner-a", 1, {"k": 0.5})) is False, "the same batch again"
        assert await b.read_spend(["k"]) == {"k": 0.75}, "0.25 from the previous release, 0.5 once"
    finally:
        await b.aclose()
    assert user_version(path) == len(MIGRATIONS)


async def test_a_version_2_file_is_upgraded_with_the_blobs_table(tmp_path: Path) -> None:
    """A file of the release before blobs (schema version 2, with a spend batch
    recorded) opens with everything in it, gets the blobs table, and is stamped 3."""
    path = tmp_path / "gateway.db"
    previous_release_file(path, with_logs=True)
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), MIGRATIONS[:2]) == 2
    conn.execute("INSERT INTO spend_batches (owner, seq, at) VALUES ('owner-a', 4, 0)")
    assert "blobs" not in {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    b = EmbeddedBackend(str(path))
    try:
        assert await b.get("teams", "eng") == {"id": "eng", "rpm": 60}
        assert await b.apply_spend(SpendBatch("owner-a", 4, {"k": 1.0})) is False, "its batches are remembered"
        assert await b.read_spend(["k"]) == {"k": 0.25}
        assert await b.blob_get("resp_1") is None
        await b.blob_put("resp_1", b"\x00stored", 60)
        assert await b.blob_get("resp_1") == b"\x00stored"
    finally:
        await b.aclose()
    assert user_version(path) == len(MIGRATIONS)
    names = {name for _, name, _ in schema_of(path)}
    assert {"records", "spend", "logs", "spend_batches", "blobs", "blobs_by_expiry"} <= names


# --- a file of a newer release ---------------------------------------------------------------------


def newer_release_file(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    for ddl in PREVIOUS_RELEASE_SCHEMA:
        conn.execute(ddl)
    conn.execute("INSERT INTO records VALUES ('keys', 'k', '{}')")
    newer = len(MIGRATIONS) + 1
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    return newer


async def test_a_newer_release_file_is_refused_naming_the_file_and_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    newer = newer_release_file(path)
    before = path.read_bytes()
    b = EmbeddedBackend(str(path))
    try:
        with pytest.raises(SchemaTooNew) as refused:
            await b.ping()
        message = str(refused.value)
        assert str(path) in message
        assert f"schema version {newer}" in message
        assert f"knows versions up to {len(MIGRATIONS)}" in message
        assert (refused.value.found, refused.value.known) == (newer, len(MIGRATIONS))
        for call in (lambda: b.get("keys", "k"), lambda: b.put("keys", "x", {}), lambda: b.read_spend(["a"])):
            with pytest.raises(SchemaTooNew):  # every use, not only the first
                await call()
    finally:
        await b.aclose()
    assert path.read_bytes() == before, "the file is left as it was"
    assert not (tmp_path / "gateway.db-wal").exists()


async def test_the_gateway_does_not_start_on_a_newer_release_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    newer_release_file(path)
    config = f"""
auth: {{master_key: sk-schema-test-0001}}
state: {{backend: embedded, path: "{path}"}}
models:
  chat:
    deployments: [{{provider: openai_compatible, model: m, base_url: "http://127.0.0.1:9/v1", api_key: k}}]
"""
    app = create_app(parse_config(config, source=str(tmp_path / "gateway.yaml")))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)  # type: ignore[arg-type]
    [answer] = outbox
    assert answer["type"] == "lifespan.startup.failed", "the server (uvicorn) exits on this answer"
    assert str(path) in answer["message"] and f"schema version {len(MIGRATIONS) + 1}" in answer["message"]
    # A file this release knows again, so shutdown (it flushes to the backend)
    # can close what the failed start had opened.
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    conn.close()
    await app.shutdown()


# --- the migration runner --------------------------------------------------------------------------


def steps(n: int) -> list[Migration]:
    """``n`` steps that each leave a trace, so a step run twice or out of order shows."""
    first = Migration("trail", ("CREATE TABLE trail (step INTEGER NOT NULL)", "INSERT INTO trail VALUES (1)"))
    return [first, *(Migration(f"step {i}", (f"INSERT INTO trail VALUES ({i})",)) for i in range(2, n + 1))]


def trail(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT step FROM trail ORDER BY rowid")]


def test_migrations_run_in_order_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, path, steps(3)) == 3
        assert trail(conn) == [1, 2, 3]
        assert migrate(conn, path, steps(3)) == 3, "reopening is a no-op"
        assert trail(conn) == [1, 2, 3]
        assert migrate(conn, path, steps(5)) == 5, "a later release runs only its new steps"
        assert trail(conn) == [1, 2, 3, 4, 5]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()


def test_a_failing_step_is_rolled_back_and_the_ones_before_it_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    conn = sqlite3.connect(path, isolation_level=None)
    broken = Migration("broken", ("INSERT INTO trail VALUES (3)", "INSERT INTO no_such_table VALUES (1)"))
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            migrate(conn, path, [*steps(2), broken])
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert trail(conn) == [1, 2], "the broken step's first insert was rolled back"
        assert not conn.in_transaction
        assert migrate(conn, path, steps(3)) == 3, "a fixed step runs next time"
        assert trail(conn) == [1, 2, 3]
    finally:
        conn.close()


async def test_reopening_a_current_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    first = EmbeddedBackend(str(path))
    await first.put("keys", "k", {"v": 1})
    await first.aclose()
    schema = schema_of(path)
    second = EmbeddedBackend(str(path))
    assert await second.get("keys", "k") == {"v": 1}
    await second.aclose()
    assert schema_of(path) == schema
    assert user_version(path) == len(MIGRATIONS)


def test_the_report_command_names_a_newer_release_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.db"
    newer_release_file(path)
    config = tmp_path / "gateway.yaml"
    config.write_text(f'auth: {{master_key: sk-schema-test-0001}}\nstate: {{backend: embedded, path: "{path}"}}\n')
    assert main(["report", "daily", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the embedded state backend: state file")
    assert f"schema version {len(MIGRATIONS) + 1}" in err and "Traceback" not in err
