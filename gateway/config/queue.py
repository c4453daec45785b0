"""The admission queue's settings (gateway/policies/admission.py): how long a request
may wait for a concurrency cap or a deployment's capacity instead of being refused at
once, how many may wait, and the priority classes keys and teams are put in."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from gateway.config.fields import Flag, PositiveFloat
from gateway.config.fields import Strict as _Strict

ClassName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class QueueSettings(_Strict):
    enabled: Flag = True
    """Off: a request at a cap is refused at once (429, or 503 when no deployment has capacity)."""
    max_wait_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    """The longest a request waits for a place; a client may ask for less with the
    ``x-gateway-max-wait`` header (seconds). 0 turns waiting off."""
    max_depth: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Requests waiting at once on this replica; one more is refused at once (``queue_full``)."""
    classes: list[ClassName] = Field(default_factory=lambda: ["critical", "high", "normal", "low"], min_length=1)
    """Priority classes, highest first: a waiter of a higher class always goes first."""
    default_class: ClassName = "normal"
    """The class of a key whose key and team name none."""
    poll_interval_s: Annotated[PositiveFloat, Field(le=5)] = 0.05
    """How often waiters look again for capacity freed where this replica cannot see it
    (another replica's requests on a shared Redis, a rate window that rolled over); capacity
    freed here wakes them at once."""

    @model_validator(mode="after")
    def _classes(self) -> QueueSettings:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        if self.default_class not in self.classes:
            raise ValueError(f"default_class {self.default_class!r} is not one of classes {self.classes}")
        return self

    def rank(self, name: str | None) -> tuple[int, str]:
        """(rank, class name) of ``name``: 0 is the highest; an unknown or absent name
        takes the default class."""
        if name is None or name not in self.classes:
            name = self.default_class
        return self.classes.index(name), name
