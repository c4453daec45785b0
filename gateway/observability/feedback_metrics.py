"""User satisfaction metrics (docs/metrics.md, "User satisfaction"):
:class:`~gateway.observability.metrics.Metrics` builds one as ``metrics.feedback``, in the
app's own registry.

Labels are bounded: ``alias`` is the configured alias that served the scored request (read
from the gateway's own record of it, never from the client), ``reason`` one of
:data:`REFUSALS`. The score histogram's buckets are the scores themselves (1 to 5), so
``gateway_feedback_score_bucket{le="3"}`` counts the scores of 3 or less and
``..._sum / ..._count`` is the average score.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

SCORE_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0)
COMMENT_STATES = ("kept", "dropped", "none")
"""A comment kept (``logging.log_payloads`` on), sent but dropped (off), or none sent."""
REFUSALS = ("invalid", "unknown_request", "already_scored", "disabled", "unauthenticated", "unavailable")
"""Why a feedback post was refused: a bad body or field (400); no request of this key by
that id within ``feedback.accept_days`` (404); scored before (409); ``feedback.enabled``
off (404); no valid key (401); the state backend unreachable (503)."""


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.score = Histogram(
            "gateway_feedback_score",
            "User satisfaction scores (1-5) given through POST /v1/feedback, by the alias that served the request.",
            ["alias"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.given = Counter(
            "gateway_feedback",
            "Feedback accepted, by the alias that served the scored request and its comment (kept, dropped, none).",
            ["alias", "comment"],
            registry=registry,
        )
        self.refused = Counter(
            "gateway_feedback_refused",
            "Feedback posts refused, by reason (invalid, unknown_request, already_scored, disabled, "
            "unauthenticated, unavailable).",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSALS:
            self.refused.labels(reason)
        self.owner_dropped = Counter(
            "gateway_feedback_owner_records_dropped",
            "Records of finished requests (which key made them, for feedback) lost before they were written: "
            "more pending than feedback.max_pending while the state backend was slow or down.",
            registry=registry,
        )
        self.owner_write_failures = Counter(
            "gateway_feedback_owner_write_failures",
            "Writes of finished requests' records (for feedback) that failed; the records are kept for the next try.",
            registry=registry,
        )

    def accepted(self, alias: str, score: int, comment: str) -> None:
        """``comment``: one of :data:`COMMENT_STATES`."""
        if comment not in COMMENT_STATES:
            raise ValueError(f"unknown comment state {comment!r}")
        self.score.labels(alias).observe(score)
        self.given.labels(alias, comment).inc()

    def refusal(self, reason: str) -> None:
        if reason not in REFUSALS:
            raise ValueError(f"unknown feedback refusal {reason!r}")
        self.refused.labels(reason).inc()
