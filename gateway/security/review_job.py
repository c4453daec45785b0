"""The weekly ``security_review`` job: review the state (gateway/security/review.py), keep
the counts for this process's metrics (``gateway_security_findings{kind}``, exported by the
process that ran the review: gateway/observability/security_metrics.py) and send the review
as Markdown through ``send(subject, text)`` (the notifier, wired by the app).

The counts are kept before the review is sent, so a delivery that fails still leaves them in
the metrics; the failure itself propagates (the scheduler counts the run as failed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from gateway.config.settings import Settings
from gateway.security.review import Review, security_review
from gateway.state.base import StateBackend

Send = Callable[[str, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ReviewFacts:
    """What the metrics show of the last review this process ran."""

    at: float
    counts: Mapping[str, int]


class LastReview:
    """The last review run in this process (the metrics read it at each scrape)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: ReviewFacts | None = None

    def record(self, review: Review) -> None:
        with self._lock:
            self._facts = ReviewFacts(review.at, MappingProxyType(review.counts()))

    def read(self) -> ReviewFacts | None:
        with self._lock:
            return self._facts


LAST = LastReview()
"""This process's last review: every review run through :func:`security_review_job`."""


def subject(review: Review) -> str:
    day = datetime.fromtimestamp(review.at, UTC).strftime("%Y-%m-%d")
    counts = review.counts()
    urgent = counts["key_rotation_overdue"] + counts["secret_rotation_overdue"] + counts["admin_without_mfa"]
    tail = f", {urgent} need action (rotation overdue, admins without MFA)" if urgent else ""
    return f"Security review {day}: {len(review.findings)} finding(s){tail}"


async def security_review_job(
    settings: Settings,
    backend: StateBackend,
    send: Send,
    *,
    clock: Callable[[], float] = time.time,
    last: LastReview = LAST,
) -> str:
    """Run the review now, keep its counts for the metrics, send it; a one-line summary."""
    review = await security_review(settings, backend, clock())
    last.record(review)
    await send(subject(review), review.to_markdown())
    return review.summary()
