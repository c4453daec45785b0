"""The scheduler: runs each configured job at its cron time (``jobs`` in the config, read in
``jobs.timezone`` by croniter), on exactly one replica.

Each occurrence of a job is taken by one replica through a lease in the state backend: the
concurrency slot ``job:<name>:<fire time>`` (limit 1), held for the job's timeout and never
given back, so the replicas that wake for the same occurrence find it taken and skip it. A
replica that dies mid-job holds that occurrence only; the next one is free for any replica.
A run that misses its time (every replica was down) is not made up: the job's alert
(``GatewayJobMissed``) says so, and ``gateway jobs run NAME`` runs it by hand.

What a run did is recorded in the state backend (record ``jobs/<name>``: last run, last
success, duration, outcome, a one-line summary or the error), so every replica, the metrics
and ``gateway jobs list`` see the same, whichever replica ran it. The clock and the sleep are
injectable, so tests drive time: :meth:`Scheduler.tick` runs what is due at a given moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from gateway.config.jobs import JobSpec, JobsSettings
from gateway.observability.jobs_metrics import JobFacts
from gateway.state.base import BackendUnavailable, Record, StateBackend

log = logging.getLogger("gateway.jobs")

TABLE = "jobs"
MAX_SLEEP_S = 60.0
"""The longest the loop sleeps at once (a changed clock or a new record is seen within it)."""


@dataclass(frozen=True)
class Job:
    """A job the app knows: ``run()`` does it and answers a one-line summary."""

    name: str
    run: Callable[[], Awaitable[str]]


class Scheduler:
    """Runs the jobs of ``settings`` (see the module docstring)."""

    def __init__(
        self,
        settings: JobsSettings,
        jobs: Mapping[str, Job],
        backend: StateBackend,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._tz = ZoneInfo(settings.timezone)
        self._specs: dict[str, JobSpec] = {n: s for n, s in settings.schedule.items() if s.enabled and n in jobs}
        self._jobs = jobs
        self._backend = backend
        self._clock = clock
        self._sleep = sleep
        self._due: dict[str, float] = {}
        self._periods: dict[str, float] = {}
        self.records: dict[str, Record] = {}
        """The last known record of each job (refreshed from the backend by the loop)."""
        self.runs: dict[str, list[int]] = {name: [0, 0] for name in self._specs}
        """This process's runs of each job: [ok, failed]."""
        self._task: asyncio.Task[None] | None = None

    # --- the schedule ------------------------------------------------------------------------
    def next_run(self, name: str, after: float) -> float:
        """The first fire time of ``name`` strictly after ``after`` (epoch seconds)."""
        start = datetime.fromtimestamp(after, self._tz)
        fire: datetime = croniter(self._specs[name].cron, start).get_next(datetime)
        return fire.timestamp()

    def period_s(self, name: str) -> float:
        """The longest gap between two runs in the coming year (a month's job: 31 days); worked
        out once per job."""
        if name not in self._periods:
            self._periods[name] = longest_gap(lambda at: self.next_run(name, at), self._clock())
        return self._periods[name]

    def names(self) -> list[str]:
        return sorted(self._specs)

    # --- running -----------------------------------------------------------------------------
    async def tick(self, now: float) -> list[str]:
        """Run every job due at ``now`` whose occurrence this replica takes; the names it ran."""
        ran = []
        for name in self.names():
            due = self._due.get(name)
            if due is None:  # the first turn: a time passed before the start is not run
                due = self._due[name] = self.next_run(name, now)
            if due > now:
                continue
            self._due[name] = self.next_run(name, now)
            if await self._take(name, due):
                await self.run_now(name, now=now)
                ran.append(name)
        return ran

    async def _take(self, name: str, due: float) -> bool:
        spec = self._specs[name]
        try:
            return await self._backend.acquire_slot(f"job:{name}:{int(due)}", 1, max(spec.timeout_s, 3600.0))
        except BackendUnavailable as exc:
            log.warning(
                "job %s due at %s not run: the state backend holds its lease and is unreachable: %s", name, due, exc
            )
            return False

    async def run_now(self, name: str, *, now: float | None = None) -> Record:
        """Run ``name`` here and now (the scheduler's turn, or ``gateway jobs run``); its record."""
        job, spec = self._jobs[name], self._settings.schedule[name]
        started = self._clock() if now is None else now
        record: Record = dict(self.records.get(name) or {})
        try:
            summary = await asyncio.wait_for(job.run(), spec.timeout_s)
        except Exception as exc:  # a job's failure is recorded and logged, never the loop's end
            record.update(last_outcome="failed", last_error=f"{type(exc).__name__}: {exc}"[:500])
            self.runs.setdefault(name, [0, 0])[1] += 1
            log.error("job %s failed: %s", name, record["last_error"])
        else:
            record.update(last_outcome="ok", last_success=started, last_summary=summary[:500], last_error=None)
            self.runs.setdefault(name, [0, 0])[0] += 1
            log.info("job %s done: %s", name, summary)
        record.update(name=name, last_run=started, last_duration_s=max(0.0, self._clock() - started))
        self.records[name] = record
        with contextlib.suppress(BackendUnavailable):
            await self._backend.put(TABLE, name, record)
        return record

    async def refresh(self) -> None:
        """The records every replica wrote (a job another replica ran); a job no replica has a
        record of yet gets one saying since when it is scheduled (what its missed-run alert
        counts from before its first success)."""
        for name in self.names():
            with contextlib.suppress(BackendUnavailable):
                found = await self._backend.get(TABLE, name)
                if found is None:
                    found = {"name": name, "scheduled_since": self._clock()}
                    await self._backend.put(TABLE, name, found)
                self.records[name] = found

    async def _loop(self) -> None:
        while True:
            now = self._clock()
            try:  # whatever goes wrong (a state file of a newer release), the next turn comes
                await self.refresh()
                await self.tick(now)
            except Exception:
                log.exception("the scheduler's turn failed; trying again in %.0f s", MAX_SLEEP_S)
            nearest = min((self._due.get(n, now + MAX_SLEEP_S) for n in self.names()), default=now + MAX_SLEEP_S)
            await self._sleep(min(MAX_SLEEP_S, max(0.05, nearest - self._clock())))

    def start(self) -> None:
        if self._settings.enabled and self._specs and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- what the metrics read -----------------------------------------------------------------
    def facts(self) -> list[JobFacts]:
        """One per scheduled job; none while ``jobs.enabled`` is off (nothing is scheduled, so
        nothing can be missed: a job run by hand then shows in ``/admin/status`` only)."""
        if not self._settings.enabled:
            return []
        now = self._clock()
        out = []
        for name in self.names():
            rec = self.records.get(name) or {}
            ok, failed = self.runs.get(name, [0, 0])
            out.append(
                JobFacts(
                    name,
                    self.period_s(name),
                    self._due.get(name) or self.next_run(name, now),
                    float(rec.get("last_success") or 0.0),
                    float(rec.get("scheduled_since") or rec.get("last_run") or 0.0),
                    float(rec.get("last_duration_s") or 0.0),
                    rec.get("last_outcome") == "failed",
                    ok,
                    failed,
                )
            )
        return out


def longest_gap(next_run: Callable[[float], float], start: float) -> float:
    """The longest gap between two fire times from ``start`` through the coming year (a daily
    job's year; a job more frequent than that reads its first 400 gaps)."""
    at, longest = start, 0.0
    for _ in range(400):
        nxt = next_run(at)
        longest, at = max(longest, nxt - at), nxt
        if at - start > 366 * 86400:
            break
    return longest
