"""The metrics read at each scrape from parts the app starts after the catalog exists: the
PostgreSQL pool and request-detail tier, the scheduled jobs, the state backend's probe and
the notifier (and the last security review this process ran). Part of the metrics catalog
(:mod:`gateway.observability.metrics`): each collector is registered once, with a
:class:`Late` source the app points at the running part (``metrics.sources.jobs.read =
scheduler.facts``); until then a source answers its default (nothing exported)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

from gateway.observability.jobs_metrics import JobFacts, JobsCollector
from gateway.observability.notify_metrics import Counts as NotifyCounts
from gateway.observability.notify_metrics import NotifyCollector, no_counts
from gateway.observability.postgres_metrics import DetailCollector, PostgresCollector
from gateway.observability.security_metrics import SecurityReviewCollector
from gateway.observability.state_probe import StateCollector, StateFacts
from gateway.security.review_job import LAST
from gateway.state.postgres_client import PoolFacts
from gateway.state.retention import TierFacts

T = TypeVar("T")


class Late(Generic[T]):
    """A source set after its collector was registered: calls ``read`` (the default until set)."""

    def __init__(self, default: Callable[[], T]) -> None:
        self.read = default

    def __call__(self) -> T:
        return self.read()


def _none() -> None:
    return None


class ScrapeSources:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.state_pool: Late[PoolFacts | None] = Late(_none)
        """The PostgreSQL backend's pool (that backend only)."""
        self.detail_tier: Late[TierFacts | None] = Late(_none)
        """The PostgreSQL backend's request-detail tier (that backend only)."""
        self.jobs: Late[Sequence[JobFacts]] = Late(tuple)
        """The scheduled jobs (when the scheduler starts)."""
        self.state: Late[StateFacts | None] = Late(_none)
        """Whether the state backend answers (when its probe starts)."""
        self.notifications: Late[NotifyCounts] = Late(no_counts)
        """The notifier's delivery counts."""
        registry.register(PostgresCollector(self.state_pool))
        registry.register(DetailCollector(self.detail_tier))
        registry.register(JobsCollector(self.jobs))
        registry.register(StateCollector(self.state))
        registry.register(NotifyCollector(self.notifications))
        registry.register(SecurityReviewCollector(LAST.read))  # the last security review this process ran
