"""The security review's metrics, read at each scrape from the last review run in this
process (gateway/security/review_job.py): the findings by kind and when it ran. Only the
process that ran a review exports its findings (one replica a week, the one that took the
job's lease; a restart forgets them until the next review). Part of the metrics catalog
(:mod:`gateway.observability.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily

from gateway.security.review import KINDS
from gateway.security.review_job import ReviewFacts


class SecurityReviewCollector:
    """``gateway_security_findings{kind}`` (every kind, after a review; none before) and
    ``gateway_security_review_timestamp_seconds`` (0 before a review)."""

    def __init__(self, read: Callable[[], ReviewFacts | None]) -> None:
        self._read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families(ReviewFacts(0.0, dict.fromkeys(KINDS, 0))))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(self._read())

    @staticmethod
    def _families(facts: ReviewFacts | None) -> Iterator[GaugeMetricFamily]:
        findings = GaugeMetricFamily(
            "gateway_security_findings",
            "Findings of the last security review this process ran, by kind (absent before its first review).",
            labels=["kind"],
        )
        for kind in KINDS:
            if facts is not None:
                findings.add_metric([kind], float(facts.counts.get(kind, 0)))
        yield findings
        yield GaugeMetricFamily(
            "gateway_security_review_timestamp_seconds",
            "When this process last ran the security review (epoch seconds; 0: not yet).",
            value=facts.at if facts is not None else 0.0,
        )
