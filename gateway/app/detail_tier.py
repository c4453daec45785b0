"""The postgres backend's request-detail tier, as the app runs it (a part of
:class:`gateway.app.lifecycle.Lifecycle`): every finished request's row written
behind to ``gw_requests``, and the retention job (``gateway/state/retention.py``).
On the embedded and Redis backends there is none (the access log is the only
per-request record there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config.state import StateSettings
from gateway.observability.logs import RequestSink
from gateway.observability.metrics import Metrics
from gateway.state.base import StateBackend

if TYPE_CHECKING:
    from gateway.state.retention import DetailTiers


class DetailTier:
    detail: DetailTiers | None = None

    def start_detail(self, state: StateSettings, backend: StateBackend, metrics: Metrics) -> list[RequestSink]:
        """Start the tier on the postgres backend (its metrics read by ``metrics``); the request
        sinks it adds (none on the others)."""
        if state.backend != "postgres" or state.postgres is None:
            return []
        from gateway.state.postgres import PostgresBackend  # only this backend's modules load asyncpg
        from gateway.state.retention import DetailTiers

        assert isinstance(backend, PostgresBackend)
        self.detail = DetailTiers(backend.pg, state.postgres.retention, flush_interval_s=state.flush_interval_s)
        self.detail.start()
        metrics.sources.detail_tier.read = self.detail.facts
        return [self.detail.record] if self.detail.writes else []

    async def close_detail(self) -> None:
        """Stop the retention job and write the detail still held (what cannot be written is logged)."""
        if self.detail is not None:
            await self.detail.close()
            self.detail = None
