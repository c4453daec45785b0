"""The PostgreSQL records backend's schema, versioned, and its migrations.

The database's version is the one row of ``gw_schema`` (absent in a new
database: version 0). :data:`MIGRATIONS` is the schema's history, oldest first:
step ``i`` takes a database from version ``i`` to ``i + 1``. :func:`migrate` runs,
at the backend's first use, every step a database has not had yet, in order,
each in its own transaction together with the new version number, under a
session-level advisory lock, so replicas that start together apply each
step once, whole or not at all. A database of a newer version than this code
knows is refused (:class:`SchemaTooNew`); nothing is written to it.

To change the schema, append a step; never edit one that has shipped. The same
mechanism as the embedded backend's SQLite file (``embedded_schema.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.state.base import NewerSchema
from gateway.state.embedded_schema import Migration

LOCK_ID = 0x67770001
"""The advisory lock the migrations hold (an arbitrary constant of this project)."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "the baseline: records, the spend ledger and its totals, blobs, the append-only logs",
        (
            "CREATE TABLE gw_records (tbl text NOT NULL, id text NOT NULL, record jsonb NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tbl, id))",
            # the ledger: one row per batch a ledger (or a replayed journal) wrote, never twice
            "CREATE TABLE gw_spend_batches (owner text NOT NULL, seq bigint NOT NULL, increments jsonb NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (owner, seq))",
            # the last batch applied per owner: an older one is skipped (a late retry)
            "CREATE TABLE gw_spend_marks (owner text PRIMARY KEY, seq bigint NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())",
            # the maintained aggregate budgets and reports read
            "CREATE TABLE gw_spend_totals (counter text PRIMARY KEY, usd double precision NOT NULL)",
            "CREATE TABLE gw_blobs (key text PRIMARY KEY, value bytea NOT NULL, expires_at double precision NOT NULL)",
            "CREATE INDEX gw_blobs_by_expiry ON gw_blobs (expires_at)",
            "CREATE TABLE gw_log_seq (stream text PRIMARY KEY, seq bigint NOT NULL)",
            "CREATE TABLE gw_logs (stream text NOT NULL, seq bigint NOT NULL, record jsonb NOT NULL,"
            " at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, seq))",
            # append-only in the database too, not only for want of a code path
            "CREATE FUNCTION gw_refuse_change() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
            "CREATE TRIGGER gw_logs_append_only BEFORE UPDATE OR DELETE ON gw_logs"
            " FOR EACH ROW EXECUTE FUNCTION gw_refuse_change()",
            "CREATE TRIGGER gw_spend_batches_append_only BEFORE UPDATE ON gw_spend_batches"
            " FOR EACH ROW EXECUTE FUNCTION gw_refuse_change()",
        ),
    ),
    Migration(
        "request detail (one row per finished request, no prompt or answer) and archives loaded back",
        (
            # keyed by (ts, request_id): a request id may come from the client, so it alone is not unique;
            # ts first, so the key's index serves the retention job's and reports' time ranges
            "CREATE TABLE gw_requests (ts timestamptz NOT NULL, request_id text NOT NULL, route text NOT NULL,"
            " status integer NOT NULL, latency_ms double precision NOT NULL, trace_id text, key_id text, team text,"
            " alias text NOT NULL, deployment text, provider text, model text, attempts integer NOT NULL DEFAULT 0,"
            " ttft_ms double precision, prompt_tokens integer, completion_tokens integer, cost_usd double precision,"
            " cache text, error_code text, stream boolean NOT NULL DEFAULT false, PRIMARY KEY (ts, request_id))",
            # `gateway archive load`: archived days put back for a query, apart from the live detail
            "CREATE TABLE gw_requests_loaded (LIKE gw_requests INCLUDING ALL, archive text NOT NULL)",
            "CREATE INDEX gw_requests_loaded_by_archive ON gw_requests_loaded (archive)",
        ),
    ),
)


class SchemaTooNew(NewerSchema):
    """The database was written by a newer release than this one; the gateway must
    not start on a schema it does not understand (no failure mode applies)."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the PostgreSQL state database has schema version {found}, but this gateway knows versions up to"
            f" {known}: it was migrated by a newer release. Run that release, or restore a backup made for this"
            " one; the database was left as it is"
        )
        self.found = found
        self.known = known


async def version_of(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('gw_schema') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT version FROM gw_schema")
    return int(version or 0)


async def migrate(conn: Any, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database ``conn`` (an asyncpg connection) is on to the newest
    version; that version. Raises :class:`SchemaTooNew` (nothing written) for a
    database newer than ``migrations``, and the error of a failing step (that step
    rolled back, the ones before it kept)."""
    known = len(migrations)
    version = await version_of(conn)
    if version == known:
        return version  # the common start: one query, no lock
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        while True:
            version = await version_of(conn)  # again under the lock: another replica may have moved it
            if version == known:
                return version
            if version > known:
                raise SchemaTooNew(version, known)
            async with conn.transaction():
                if version == 0:
                    await conn.execute("CREATE TABLE gw_schema (version integer NOT NULL)")
                    await conn.execute("INSERT INTO gw_schema VALUES (0)")
                for statement in migrations[version].statements:
                    await conn.execute(statement)
                await conn.execute("UPDATE gw_schema SET version = $1", version + 1)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
