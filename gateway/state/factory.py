"""Build the configured state backend and the spend ledger over it."""

from __future__ import annotations

from gateway.config.state import StateSettings
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from gateway.state.spend_journal import SpendJournal, journal_dir

JOURNAL_SIBLINGS = 64
"""On the postgres backend, how many more journal directories beside the first a process may take."""


def create_backend(settings: StateSettings, *, cache_max_bytes: int) -> StateBackend:
    """The backend ``settings`` names. ``cache_max_bytes`` bounds the embedded
    cache (Redis bounds its own memory with ``maxmemory``). Connects lazily: no
    I/O here; call ``ping()`` to check reachability and ``aclose()`` at shutdown."""
    if settings.backend in ("redis", "postgres"):
        if not settings.url:
            raise ValueError(f"state.url is required for the {settings.backend} backend")
        from gateway.state.redis import RedisBackend

        redis = RedisBackend(
            settings.url, spend_replicas=settings.spend_replicas, spend_replica_wait_s=settings.spend_replica_wait_s
        )
        if settings.backend == "redis":
            return redis
        pg = settings.postgres
        if pg is None:
            raise ValueError("state.postgres is required for the postgres backend")
        from gateway.state.postgres import PostgresBackend
        from gateway.state.postgres_client import Pool

        pool = Pool(
            pg.url,
            max_connections=pg.max_connections,
            statement_timeout_s=pg.statement_timeout_s,
            connect_timeout_s=pg.connect_timeout_s,
            acquire_timeout_s=pg.acquire_timeout_s,
        )
        replica = None
        if pg.read_url:
            replica = Pool(
                pg.read_url,
                max_connections=min(4, pg.max_connections),
                statement_timeout_s=pg.statement_timeout_s,
                connect_timeout_s=pg.connect_timeout_s,
                acquire_timeout_s=pg.acquire_timeout_s,
                migrate_schema=False,  # a replica is read-only: its primary's migrations reach it
            )
        return PostgresBackend(pool, redis, mirror_ttl_s=pg.mirror_ttl_s, replica=replica)
    return EmbeddedBackend(settings.path, cache_max_bytes=cache_max_bytes)


def create_report_reader(settings: StateSettings) -> StateBackend:
    """The backend ``gateway report`` reads: on postgres with ``postgres.read_url``, one whose
    database is the read replica (reads only: records, statistics, spend totals); else the
    backend itself."""
    pg = settings.postgres
    if settings.backend != "postgres" or pg is None or not pg.read_url or not settings.url:
        return create_backend(settings, cache_max_bytes=1024 * 1024)
    from gateway.state.postgres import PostgresBackend
    from gateway.state.postgres_client import Pool
    from gateway.state.redis import RedisBackend

    replica = Pool(pg.read_url, max_connections=4, connect_timeout_s=pg.connect_timeout_s, migrate_schema=False)
    return PostgresBackend(replica, RedisBackend(settings.url), mirror_ttl_s=pg.mirror_ttl_s)


def create_ledger(settings: StateSettings, backend: StateBackend) -> SpendLedger:
    """The spend ledger over ``backend``. With ``spend_journal`` (by default on the embedded
    and postgres backends, on redis when set) it journals spend beside the state file
    (:mod:`gateway.state.spend_journal`); :meth:`SpendLedger.start` takes the
    journal and replays what an earlier process left."""
    journal = None
    if settings.journaled:
        # shared backends: every process (worker, replica on one disk) takes a journal directory of its own
        siblings = 0 if settings.backend == "embedded" else JOURNAL_SIBLINGS
        journal = SpendJournal(journal_dir(settings.path), siblings=siblings)
    return SpendLedger(
        backend,
        flush_interval_s=settings.flush_interval_s,
        refresh_interval_s=settings.refresh_interval_s,
        journal=journal,
    )
