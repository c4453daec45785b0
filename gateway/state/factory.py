"""Build the configured state backend and the spend ledger over it."""

from __future__ import annotations

from gateway.config.settings import StateSettings
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from gateway.state.spend_journal import SpendJournal, journal_dir


def create_backend(settings: StateSettings, *, cache_max_bytes: int) -> StateBackend:
    """The backend ``settings`` names. ``cache_max_bytes`` bounds the embedded
    cache (Redis bounds its own memory with ``maxmemory``). Connects lazily: no
    I/O here; call ``ping()`` to check reachability and ``aclose()`` at shutdown."""
    if settings.backend == "redis":
        if not settings.url:
            raise ValueError("state.url is required for the redis backend")
        from gateway.state.redis import RedisBackend

        return RedisBackend(settings.url)
    return EmbeddedBackend(settings.path, cache_max_bytes=cache_max_bytes)


def create_ledger(settings: StateSettings, backend: StateBackend) -> SpendLedger:
    """The spend ledger over ``backend``. On the embedded backend (unless
    ``spend_journal`` is off) it journals spend beside the state file
    (:mod:`gateway.state.spend_journal`); :meth:`SpendLedger.start` takes the
    journal and replays what an earlier process left."""
    journal = None
    if settings.backend == "embedded" and settings.spend_journal:
        journal = SpendJournal(journal_dir(settings.path))
    return SpendLedger(
        backend,
        flush_interval_s=settings.flush_interval_s,
        refresh_interval_s=settings.refresh_interval_s,
        journal=journal,
    )
