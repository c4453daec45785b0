"""The scheduled jobs' metrics (gateway/jobs/), read at each scrape from what the
scheduler knows of every job (label ``name``: ``job`` is Prometheus's own): its last run,
success, duration and outcome as recorded in the state backend (so every replica exports the
cluster's view, whichever replica ran it), its period, and this process's runs. Part of the
metrics catalog (:mod:`gateway.observability.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class JobFacts(NamedTuple):
    name: str
    period_s: float
    """The longest gap between two runs of its cron expression (a day, a week, 31 days)."""
    next_run: float
    last_success: float
    """Epoch seconds of the last successful run on any replica (0: none recorded)."""
    scheduled_since: float
    """When any replica first scheduled the job (its missed-run alert counts from here before a success)."""
    last_duration_s: float
    last_failed: bool
    runs_ok: int
    runs_failed: int
    """Runs of this process."""


class JobsCollector:
    def __init__(self, read: Callable[[], Sequence[JobFacts]]) -> None:
        self._read = read

    def describe(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        return list(self._families([JobFacts("backup", 86400.0, 0.0, 0.0, 0.0, 0.0, False, 0, 0)]))

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        facts = self._read()
        if facts:
            yield from self._families(facts)

    @staticmethod
    def _families(facts: Sequence[JobFacts]) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        gauges = (
            (
                "gateway_job_last_success_timestamp_seconds",
                "When the job last succeeded, on any replica (0: never).",
                "last_success",
            ),
            ("gateway_job_last_duration_seconds", "How long the job's last run took.", "last_duration_s"),
            ("gateway_job_last_failed", "1 when the job's last run failed, else 0.", "last_failed"),
            (
                "gateway_job_scheduled_since_timestamp_seconds",
                "When any replica first scheduled the job (its missed-run alert counts from here before a success).",
                "scheduled_since",
            ),
            ("gateway_job_period_seconds", "The longest gap between two runs of the job's schedule.", "period_s"),
            ("gateway_job_next_run_timestamp_seconds", "When the job runs next (epoch seconds).", "next_run"),
        )
        for name, text, field in gauges:
            family = GaugeMetricFamily(name, text, labels=["name"])
            for f in facts:
                family.add_metric([f.name], float(getattr(f, field)))
            yield family
        runs = CounterMetricFamily(
            "gateway_job_runs", "Runs of each job in this process, by outcome (ok, failed).", labels=["name", "outcome"]
        )
        for f in facts:
            runs.add_metric([f.name, "ok"], float(f.runs_ok))
            runs.add_metric([f.name, "failed"], float(f.runs_failed))
        yield runs
