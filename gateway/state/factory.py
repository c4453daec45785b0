"""Build the configured state backend."""

from __future__ import annotations

from gateway.config.settings import StateSettings
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend


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
