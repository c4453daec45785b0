"""The ``security_review`` section: the thresholds of the weekly security review
(gateway/security/review.py; the ``security_review`` job and ``gateway security review``).
Defaults are the operations manual's: monthly rotation of provider secrets and client keys,
admins seen within 90 days, temporary grants flagged a week before and after they expire."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.config.fields import Strict as _Strict

Days = Annotated[int, Field(ge=1, le=3650)]


class SecurityReviewSettings(_Strict):
    rotation_days: Days = 30
    """A provider secret or client key set (or rotated) longer ago than this is overdue rotation."""
    admin_idle_days: Days = 90
    """An admin (by role or by an unexpired admin grant) not logged in for this long is listed."""
    grant_warning_days: Days = 7
    """A temporary grant that expires within this many days, or expired within as many, is listed."""
