"""The ``jobs`` section: the operations manual's scheduled work (gateway/jobs/), each job's
cron expression and the timezone they are read in. Defaults are the manual's schedule:
backup daily 02:00, weekly report Monday 09:00, monthly analysis on the 1st 10:00,
security review Sunday 03:00, and the data retention job daily 04:30."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from gateway.config.fields import Flag, PositiveFloat
from gateway.config.fields import Strict as _Strict

JOB_NAMES = ("backup", "weekly_report", "monthly_report", "security_review", "retention")
"""The jobs the gateway knows (gateway/app/jobs.py builds them)."""
DEFAULT_CRON = {
    "backup": "0 2 * * *",
    "weekly_report": "0 9 * * 1",
    "monthly_report": "0 10 1 * *",
    "security_review": "0 3 * * 0",
    "retention": "30 4 * * *",
}


class JobSpec(_Strict):
    cron: str
    """Five fields (minute hour day-of-month month day-of-week), read in ``jobs.timezone``."""
    enabled: Flag = True
    timeout_s: Annotated[PositiveFloat, Field(le=24 * 3600)] = 3600.0
    """A run still going after this long is stopped and counted as failed."""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter  # the config loader stays importable without the scheduler

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
        return value


def _defaults() -> dict[str, JobSpec]:
    return {name: JobSpec(cron=cron) for name, cron in DEFAULT_CRON.items()}


class JobsSettings(_Strict):
    enabled: Flag = True
    """Off: no job runs in the gateway (``gateway jobs run NAME`` still runs one by hand)."""
    timezone: str = "UTC"
    """The IANA timezone the cron expressions are read in (e.g. ``Asia/Seoul``)."""
    schedule: dict[str, JobSpec] = Field(default_factory=_defaults)
    """Per job: its cron expression (a job left out keeps its default; ``enabled: false`` stops it)."""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as UTC or Asia/Seoul)") from None
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(JOB_NAMES))
        if unknown:
            raise ValueError(f"unknown job(s) {unknown}: the jobs are {list(JOB_NAMES)}")
        merged: dict[str, object] = {name: {"cron": cron} for name, cron in DEFAULT_CRON.items()}
        for name, spec in value.items():
            merged[name] = {"cron": DEFAULT_CRON[name], **spec} if isinstance(spec, dict) else spec
        return merged
