"""The ``feedback`` section: user satisfaction scores (``POST /v1/feedback``,
gateway/server/feedback.py) and where they are kept. Read per request: a reload changes it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.config.fields import Flag, PositiveFloat
from gateway.config.fields import Strict as _Strict

TABLE_PREFIX = "feedback:"
"""Feedback records live in one table per day: ``feedback:2026-11-26`` (the day in
``budgets.timezone``); the retention job deletes whole days by this prefix."""
OWNER_PREFIX = "feedback-owner:"
"""The blob of one finished request (``feedback-owner:<key id>:<request id>``): which alias
served it and when; kept ``accept_days`` from the request."""
SCORED_PREFIX = "feedback-scored:"
"""The blob of a scored request (``feedback-scored:<key id>:<request id>``): the day table that
holds its score; kept as long as its owner's."""


def table_of(day: str) -> str:
    return TABLE_PREFIX + day


class FeedbackSettings(_Strict):
    enabled: Flag = True
    """Remember which key made each finished request and accept scores for them; off:
    nothing is written per request and ``/v1/feedback`` answers 404 ``feedback_disabled``."""
    accept_days: Annotated[int, Field(ge=1, le=90)] = 7
    """How long after a request its key may score it."""
    comment_max_chars: Annotated[int, Field(ge=1, le=10_000)] = 2000
    """The longest comment taken (a longer one is refused with 400, ``param: comment``)."""
    flush_interval_s: Annotated[PositiveFloat, Field(le=10)] = 0.5
    """How often the requests finished since the last write are written to the state backend."""
    max_pending: Annotated[int, Field(ge=100, le=10_000_000)] = 100_000
    """Finished requests held for the next write at most (the oldest go past it, counted in
    ``gateway_feedback_owner_records_dropped_total``)."""
