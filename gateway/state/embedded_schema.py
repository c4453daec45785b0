"""The embedded backend's SQLite schema, versioned, and its migrations.

The file's version is SQLite's ``PRAGMA user_version`` (0 in a new file).
:data:`MIGRATIONS` is the schema's history, oldest first: step ``i`` takes a
file from version ``i`` to ``i + 1``. :func:`migrate` runs, at start-up, every
step a file has not had yet, in order, each in its own transaction together
with the new version number, so a step is applied whole or not at all and
never twice; a file already at the newest version costs one pragma read.

Version 1 is the baseline: the schema of the first releases, which wrote no
version (their files read 0). Its statements are theirs, with
``IF NOT EXISTS``, so on such a file the step creates only what is missing
(they made the ``logs`` table on the first audit-log write) and stamps it 1.
A file of a newer version than this code knows (written by a later release)
is refused with :class:`SchemaTooNew`, never opened.

To change the schema, append a step; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.state.base import NewerSchema


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history: what it is for, and its statements."""

    does: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "the baseline: records, spend and the append-only logs",
        (
            "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,"
            " PRIMARY KEY (tbl, id))",
            "CREATE TABLE IF NOT EXISTS spend (key TEXT PRIMARY KEY, usd REAL NOT NULL)",
            "CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,"
            " json TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS logs_by_stream ON logs (stream, seq)",
        ),
    ),
    Migration(
        "the last spend batch applied per owner (a ledger or a replayed journal): each batch once",
        ("CREATE TABLE spend_batches (owner TEXT PRIMARY KEY, seq INTEGER NOT NULL, at REAL NOT NULL)",),
    ),
    Migration(
        "blobs with a time to live (stored responses): expiry in epoch seconds, indexed for the sweep",
        (
            "CREATE TABLE blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)",
            "CREATE INDEX blobs_by_expiry ON blobs (expires_at)",
        ),
    ),
)


class SchemaTooNew(NewerSchema):
    """The state file was written by a newer release than this one.

    Not a :class:`~gateway.state.base.BackendUnavailable`: no failure mode
    applies; the gateway must not start on a file it does not understand."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"state file {path} has schema version {found}, but this gateway knows versions up to {known}:"
            " it was written by a newer release. Run that release, or restore a copy of the file made for this one;"
            " the file was left as it is"
        )
        self.path = path
        self.found = found
        self.known = known


def version_of(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(conn: sqlite3.Connection, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the file open on ``conn`` (autocommit mode) to the newest version;
    that version. Raises :class:`SchemaTooNew` (nothing written) for a file
    newer than ``migrations``, and the error of a failing step (that step
    rolled back, the ones before it kept)."""
    known = len(migrations)
    while True:
        version = version_of(conn)
        if version == known:
            return version
        if version > known:
            raise SchemaTooNew(path, version, known)
        # The write lock first, then the version again: another process may
        # have run this step meanwhile.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version_of(conn) == version:
                for statement in migrations[version].statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
