"""The notifications' metrics (gateway/notify/), read at each scrape from the notifier's
counts: deliveries by receiver kind (webhook, slack, email) and outcome (ok, failed), one per
message and receiver whatever its attempts. Every kind and outcome is always exported (0
until the first delivery), so ``increase()`` sees the first failure. Part of the metrics
catalog (:mod:`gateway.observability.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily

from gateway.config.notify import RECEIVER_KINDS
from gateway.notify.notifier import OUTCOMES

Counts = Mapping[tuple[str, str], int]
"""(receiver kind, outcome) -> deliveries: :meth:`gateway.notify.Notifier.counts`."""


def no_counts() -> Counts:
    return {}


class NotifyCollector:
    def __init__(self, read: Callable[[], Counts]) -> None:
        self._read = read

    def describe(self) -> list[CounterMetricFamily]:
        return [self._family({})]

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield self._family(self._read())

    @staticmethod
    def _family(counts: Counts) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "gateway_notifications",
            "Notifications delivered (ok) or given up after every attempt (failed), by receiver kind; "
            "one per message and receiver.",
            labels=["receiver_kind", "outcome"],
        )
        for kind in RECEIVER_KINDS:
            for outcome in OUTCOMES:
                family.add_metric([kind, outcome], float(counts.get((kind, outcome), 0)))
        return family
