"""What the app runs in the background besides serving (a part of
:class:`gateway.app.lifecycle.Lifecycle`): the scheduled jobs (gateway/jobs/scheduler.py,
with the jobs gateway/app/jobs.py builds), the notifier they deliver through
(gateway/notify/), and the state backend's probe (gateway/observability/state_probe.py),
their metrics read by the app's catalog; stopped at shutdown."""

from __future__ import annotations

from collections.abc import Callable

from gateway.app.jobs import JobParts, announce_user, build_jobs
from gateway.config.settings import Settings
from gateway.jobs.scheduler import Scheduler
from gateway.notify import Notifier
from gateway.observability.metrics import Metrics
from gateway.observability.state_probe import StateProbe
from gateway.reports.builder import ReportSources
from gateway.state.base import StateBackend


class Background:
    reload_hooks: tuple[Callable[[Settings], None], ...] = ()
    scheduler: Scheduler | None = None
    state_probe: StateProbe | None = None
    notifier: Notifier | None = None

    def report_context(self) -> tuple[Settings, ReportSources]:
        raise NotImplementedError  # the app's (gateway/app/host.py)

    def start_background(self, settings: Settings, backend: StateBackend, metrics: Metrics) -> None:
        self.state_probe = StateProbe(backend)
        metrics.sources.state.read = self.state_probe.facts
        self.state_probe.start()
        notifier = self.notifier = Notifier(settings.notifications)
        metrics.sources.notifications.read = notifier.counts
        self.reload_hooks = (*self.reload_hooks, self.apply_background)
        parts = JobParts(lambda: self.report_context()[0], backend, notifier, lambda: self.report_context()[1])
        self.scheduler = Scheduler(settings.jobs, build_jobs(parts), backend)
        metrics.sources.jobs.read = self.scheduler.facts
        self.scheduler.start()

    def apply_background(self, settings: Settings) -> None:
        """A reload: the notifier's receivers and routes (the jobs' schedule needs a restart)."""
        if self.notifier is not None:
            self.notifier.settings = settings.notifications

    async def on_user_created(self, username: str, role: str, actor: str) -> None:
        """The info notice of a new admin user (``notifications.routes.events``)."""
        if self.notifier is not None:
            await announce_user(self.notifier, username, role, actor)

    async def stop_background(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.state_probe is not None:
            await self.state_probe.stop()
