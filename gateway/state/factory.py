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

        redis = RedisBackend(settings.url)
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
        return PostgresBackend(pool, redis, mirror_ttl_s=pg.mirror_ttl_s)
    return EmbeddedBackend(settings.path, cache_max_bytes=cache_max_bytes)


def create_ledger(settings: StateSettings, backend: StateBackend) -> SpendLedger:
    """The spend ledger over ``backend``. On the embedded and postgres backends (unless
    ``spend_journal`` is off) it journals spend beside the state file
    (:mod:`gateway.state.spend_journal`); :meth:`SpendLedger.start` takes the
    journal and replays what an earlier process left."""
    journal = None
    if settings.backend in ("embedded", "postgres") and settings.spend_journal:
        # postgres: every process (worker, replica on one disk) takes a journal directory of its own
        siblings = JOURNAL_SIBLINGS if settings.backend == "postgres" else 0
        journal = SpendJournal(journal_dir(settings.path), siblings=siblings)
    return SpendLedger(
        backend,
        flush_interval_s=settings.flush_interval_s,
        refresh_interval_s=settings.refresh_interval_s,
        journal=journal,
    )
