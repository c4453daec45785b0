"""The scheduler with the clock driven by the test: each job runs at its cron time (in the
configured timezone) on exactly one of two replicas sharing a real Redis, a replica that
runs it records it for both, a failing job is recorded and counted, a job is not made up
for a time before the start, and the metrics say when each last succeeded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.config.jobs import JobsSettings
from gateway.jobs.scheduler import Job, Scheduler
from gateway.state.redis import RedisBackend
from tests.redis_server import RedisServer

SEOUL = ZoneInfo("Asia/Seoul")


def at(text: str) -> float:
    """A wall-clock time in Seoul as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=SEOUL).timestamp()


class Calls:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def job(self, replica: str, name: str, *, fail: bool = False) -> Job:
        async def run() -> str:
            self.log.append((replica, name))
            if fail:
                raise RuntimeError("the archive directory is not writable")
            return f"{name} done by {replica}"

        return Job(name, run)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def backends(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    a, b = RedisBackend(redis_server.url), RedisBackend(redis_server.url)
    yield a, b
    await a.aclose()
    await b.aclose()


SETTINGS = JobsSettings.model_validate({"timezone": "Asia/Seoul"})  # the manual's schedule


async def test_each_job_runs_at_its_time_on_exactly_one_of_two_replicas(
    backends: tuple[RedisBackend, RedisBackend],
) -> None:
    calls = Calls()
    replicas = {
        name: Scheduler(SETTINGS, {j: calls.job(name, j) for j in SETTINGS.schedule}, backend)
        for name, backend in zip(("r1", "r2"), backends, strict=True)
    }
    start = at("2026-11-29T23:00:00")  # a Sunday night in Seoul
    for s in replicas.values():
        assert await s.tick(start) == [], "nothing runs for a time before the start"
    ran: dict[str, list[tuple[str, float]]] = {}
    # every 15 minutes for 8 days, both replicas wake at each tick
    moment = start
    while moment < start + 8 * 86400:
        moment += 900
        for replica, scheduler in replicas.items():
            for name in await scheduler.tick(moment):
                ran.setdefault(name, []).append((replica, moment))
    days = {
        name: [datetime.fromtimestamp(t, SEOUL).strftime("%a %d %H:%M") for _, t in runs] for name, runs in ran.items()
    }
    assert days["backup"] == [
        f"{d} 02:00" for d in ("Mon 30", "Tue 01", "Wed 02", "Thu 03", "Fri 04", "Sat 05", "Sun 06", "Mon 07")
    ]
    assert days["weekly_report"] == ["Mon 30 09:00", "Mon 07 09:00"]
    assert days["monthly_report"] == ["Tue 01 10:00"]  # December 1st
    assert days["security_review"] == ["Sun 06 03:00"]
    assert len(days["retention"]) == 8
    assert len(calls.log) == sum(len(v) for v in days.values()), "each occurrence ran once, on one replica"
    # both replicas know the last run, whichever ran it
    for scheduler in replicas.values():
        await scheduler.refresh()
    backup = [s.records["backup"] for s in replicas.values()]
    assert backup[0] == backup[1] and backup[0]["last_outcome"] == "ok"
    assert backup[0]["last_success"] == at("2026-12-07T02:00:00")


async def test_a_failing_job_is_recorded_and_counted_and_metrics_say_so(
    backends: tuple[RedisBackend, RedisBackend],
) -> None:
    calls = Calls()
    jobs = {j: calls.job("r1", j, fail=j == "backup") for j in SETTINGS.schedule}
    scheduler = Scheduler(SETTINGS, jobs, backends[0], clock=lambda: at("2026-12-01T00:00:00"))
    await scheduler.tick(at("2026-12-01T00:00:00"))
    assert await scheduler.tick(at("2026-12-01T02:00:30")) == ["backup"]
    record = scheduler.records["backup"]
    assert record["last_outcome"] == "failed"
    assert record["last_error"] == "RuntimeError: the archive directory is not writable"
    assert "last_success" not in record
    facts = {f.name: f for f in scheduler.facts()}
    assert facts["backup"].last_failed and facts["backup"].runs_failed == 1 and facts["backup"].last_success == 0
    assert facts["backup"].period_s == 86400
    assert facts["weekly_report"].period_s == 7 * 86400
    assert facts["monthly_report"].period_s == 31 * 86400
    assert facts["backup"].next_run == at("2026-12-02T02:00:00")
    done = await scheduler.run_now("weekly_report")  # `gateway jobs run weekly_report`
    assert done["last_outcome"] == "ok" and done["last_summary"] == "weekly_report done by r1"


def test_a_bad_schedule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'0 2 \\* \\*' is not a cron expression of five fields"):
        JobsSettings.model_validate({"schedule": {"backup": {"cron": "0 2 * *"}}})
    with pytest.raises(ValueError, match="unknown job\\(s\\) \\['backups'\\]"):
        JobsSettings.model_validate({"schedule": {"backups": {"cron": "0 2 * * *"}}})
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        JobsSettings.model_validate({"timezone": "Mars/Olympus"})
    only = JobsSettings.model_validate({"schedule": {"backup": {"cron": "15 1 * * *"}}})
    assert only.schedule["backup"].cron == "15 1 * * *"
    assert only.schedule["weekly_report"].cron == "0 9 * * 1", "the others keep the manual's schedule"
