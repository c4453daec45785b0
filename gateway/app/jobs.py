"""The jobs the gateway runs on schedule (``jobs`` in the config; gateway/jobs/scheduler.py),
built from their parts: each is a :class:`~gateway.jobs.scheduler.Job` whose ``run()`` does
the work and answers a one-line summary. ``gateway jobs run NAME`` and
``POST /admin/jobs/{name}/run`` run the same ones.

- ``backup``: an encrypted archive of the state (gateway/state/backup.py);
- ``weekly_report``, ``monthly_report``: the period that just ended, delivered to the
  receivers ``notifications.routes.reports`` names (gateway/reports/delivery.py);
- ``security_review``: the review (gateway/security/review.py), delivered to the receivers
  for ``security``;
- ``retention``: request records, sessions and feedback past ``retention.days``
  (gateway/security/data_retention.py).

Each reads the settings in force when it runs (a reload between two runs applies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from gateway.config.settings import Settings
from gateway.jobs.scheduler import Job
from gateway.notify import Message, Notifier
from gateway.reports.builder import ReportSources
from gateway.reports.delivery import deliver_report
from gateway.security.data_retention import retention_job
from gateway.security.review_job import security_review_job
from gateway.state.backup import backup_job
from gateway.state.base import StateBackend


@dataclass(frozen=True)
class JobParts:
    """What the jobs work with: the settings in force, the state backend, the notifier, and the
    report sources (the app's: this process's statistics merged with the other replicas')."""

    settings: Callable[[], Settings]
    backend: StateBackend
    notifier: Notifier
    report_sources: Callable[[], ReportSources]


def build_jobs(parts: JobParts) -> dict[str, Job]:
    """Every job the gateway knows, by name."""

    async def send_security(subject: str, text: str) -> object:
        return await parts.notifier.send(Message(subject=subject, text=text, kind="security"))

    def report(period: Literal["weekly", "monthly"]) -> Callable[[], Awaitable[str]]:
        return lambda: deliver_report(period, parts.settings(), parts.report_sources(), parts.notifier.send)

    return {
        "backup": Job("backup", lambda: backup_job(parts.settings(), parts.backend)),
        "weekly_report": Job("weekly_report", report("weekly")),
        "monthly_report": Job("monthly_report", report("monthly")),
        "security_review": Job(
            "security_review", lambda: security_review_job(parts.settings(), parts.backend, send_security)
        ),
        "retention": Job("retention", lambda: retention_job(parts.settings(), parts.backend)),
    }


async def announce_user(notifier: Notifier, username: str, role: str, actor: str) -> None:
    """The info notice of a new admin user (``notifications.routes.events``)."""
    text = f"User **{username}** was created with the role **{role}** by {actor}."
    await notifier.send(Message(subject=f"New gateway user {username} ({role})", text=text, kind="events"))
