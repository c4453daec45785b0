"""The ``router.pacing`` section: upstream back-pressure (gateway/routing/pacing.py)."""

from __future__ import annotations

from pydantic import model_validator

from gateway.config.fields import Flag, PositiveFloat, Strict


class PacingSettings(Strict):
    """No requests to a deployment whose upstream said when to come back (a 429, a
    Retry-After, a rate-limit budget spent)."""

    enabled: Flag = True
    default_s: PositiveFloat = 1.0
    """The pause after a 429 that says nothing about when to come back."""
    max_s: PositiveFloat = 60.0
    """No pause is longer, whatever a header says."""

    @model_validator(mode="after")
    def _default_within_max(self) -> PacingSettings:
        if self.default_s > self.max_s:
            raise ValueError(f"default_s ({self.default_s:g}) cannot exceed max_s ({self.max_s:g})")
        return self
