"""The PostgreSQL state backend's metrics (``state.backend: postgres``), read from its
pool at each scrape: whether the server answers, the pool's use, calls refused by a
saturated pool and failed calls. Part of the metrics catalog
(:mod:`gateway.observability.metrics`); absent on the other backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.state.postgres import PostgresBackend
from gateway.state.postgres_client import PoolFacts
from gateway.state.retention import TierFacts


async def watch_pool(backend: object) -> Callable[[], PoolFacts | None]:
    """What :class:`PostgresCollector` reads for ``backend``: on the PostgreSQL backend its
    pool's facts (``gateway_state_postgres_up`` kept current by the app's state probe, which
    pings the backend every 5 s, and the replica's lag measured as often); on the others,
    nothing. The first probe runs now: a
    database migrated by a newer release stops the start (``SchemaTooNew``); one that cannot
    be reached does not (the pool connects when it can)."""
    if not isinstance(backend, PostgresBackend):
        return lambda: None
    await backend.pg.probe()
    backend.watch()
    return backend.facts


class PostgresCollector:
    """The metrics of :class:`PoolFacts` (``read()`` answers None on other backends)."""

    def __init__(self, read: Callable[[], PoolFacts | None]) -> None:
        self._read = read

    def describe(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        return list(self._families(PoolFacts(None, 0, 0, 0, 0, 0, replica_up=False)))

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        facts = self._read()
        if facts is not None:
            yield from self._families(facts)

    @staticmethod
    def _families(facts: PoolFacts) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "gateway_state_postgres_up",
            "1 when PostgreSQL (the state backend's system of record) answered the last call or probe, else 0.",
            value=1.0 if facts.up else 0.0,
        )
        pool = GaugeMetricFamily(
            "gateway_state_postgres_pool_connections",
            "The PostgreSQL pool's connections: in_use, open (in use or idle), max (its size limit).",
            labels=["state"],
        )
        for state, value in (("in_use", facts.in_use), ("open", facts.size), ("max", facts.max_connections)):
            pool.add_metric([state], float(value))
        yield pool
        yield CounterMetricFamily(
            "gateway_state_postgres_pool_saturated",
            "PostgreSQL calls that failed because every pooled connection stayed busy (acquire_timeout_s).",
            value=float(facts.saturated),
        )
        if facts.replica_up is not None:  # state.postgres.read_url given
            yield GaugeMetricFamily(
                "gateway_state_postgres_replica_up",
                "1 when the read replica (state.postgres.read_url) answered its last lag probe, else 0.",
                value=1.0 if facts.replica_up else 0.0,
            )
            yield GaugeMetricFamily(
                "gateway_state_postgres_replica_lag_seconds",
                "How far the read replica's replay is behind its primary (0 when it has replayed all it received).",
                value=facts.replica_lag_s if facts.replica_lag_s is not None else float("nan"),
            )
        yield CounterMetricFamily(
            "gateway_state_postgres_errors",
            "PostgreSQL calls that failed (server down, a timeout, an error), pool saturation included.",
            value=float(facts.failures),
        )


class DetailCollector:
    """The request-detail tier's metrics (``state.backend: postgres``; ``read()`` answers None
    on the other backends): rows written behind to ``gw_requests`` or dropped, the retention
    job's runs and days."""

    def __init__(self, read: Callable[[], TierFacts | None]) -> None:
        self._read = read

    def describe(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        return list(self._families(TierFacts(0, 0, 0, 0, 0, 0, 0, 0, 0.0)))

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        facts = self._read()
        if facts is not None:
            yield from self._families(facts)

    @staticmethod
    def _families(f: TierFacts) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        rows = CounterMetricFamily(
            "gateway_request_detail_rows",
            "Request detail rows (one per finished request): written to PostgreSQL (gw_requests), or dropped "
            "(the buffer was full while PostgreSQL was slow or down: the oldest went).",
            labels=["outcome"],
        )
        rows.add_metric(["written"], float(f.written))
        rows.add_metric(["dropped"], float(f.dropped))
        yield rows
        yield GaugeMetricFamily(
            "gateway_request_detail_pending", "Request detail rows held in memory, not yet written.", value=f.pending
        )
        yield CounterMetricFamily(
            "gateway_request_detail_flush_failures",
            "Writes of request detail to PostgreSQL that failed (the rows are kept for the next, within the bound).",
            value=float(f.flush_failures),
        )
        runs = CounterMetricFamily(
            "gateway_retention_runs",
            "Runs of the request-detail retention job in this process: ok, or failed (PostgreSQL down, an error).",
            labels=["outcome"],
        )
        runs.add_metric(["ok"], float(f.runs_ok))
        runs.add_metric(["failed"], float(f.runs_failed))
        yield runs
        days = CounterMetricFamily(
            "gateway_retention_day_exports",
            "Days of request detail the retention job handled: archived (then deleted), or failed (left in "
            "PostgreSQL: an archive that could not be written or was not as written).",
            labels=["outcome"],
        )
        days.add_metric(["archived"], float(f.days_archived))
        days.add_metric(["failed"], float(f.days_failed))
        yield days
        yield GaugeMetricFamily(
            "gateway_retention_last_success_timestamp_seconds",
            "When this process last completed a retention run (epoch seconds; 0 before the first).",
            value=f.last_success,
        )
