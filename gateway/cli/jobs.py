"""``gateway jobs list`` and ``gateway jobs run NAME``: the scheduled jobs (``jobs`` in the
config; docs/configuration.md "Scheduled jobs").

``list`` prints each job's schedule, next run and what its last run did (from the state
backend, whichever replica ran it). ``run NAME`` runs one job here and now, as the scheduler
would (its outcome recorded the same way), whatever its schedule says: a missed backup made
by hand, a report sent again.

Exit codes: 0 done, 1 the job failed or the state backend could not be read, 2 bad usage,
bad config or an unknown job.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gateway.cli.config_file import load_or_say
from gateway.config.jobs import JOB_NAMES
from gateway.config.loader import LoadedConfig
from gateway.state.base import BackendUnavailable, NewerSchema


def add_parser(sub: Any, default: str) -> None:
    jobs = sub.add_parser("jobs", help="the scheduled jobs: list them, or run one now")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each job's schedule, next run and last outcome")
    listing.add_argument("--config", default=default, help="the gateway's config file")
    run = actions.add_parser("run", help="run one job now, as the scheduler would")
    run.add_argument("name", help=", ".join(JOB_NAMES))
    run.add_argument("--config", default=default, help="the gateway's config file")


def run(args: argparse.Namespace) -> int:
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    if args.action == "run" and args.name not in JOB_NAMES:
        print(f"error: unknown job {args.name!r}; the jobs are {', '.join(JOB_NAMES)}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, loaded))
    except (BackendUnavailable, NewerSchema) as exc:
        print(f"error: cannot use the {loaded.settings.state.backend} state backend: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from gateway.app.jobs import JobParts, build_jobs
    from gateway.cli.report import offline_sources
    from gateway.jobs.scheduler import Scheduler
    from gateway.notify import Notifier
    from gateway.state.factory import create_backend

    settings = loaded.settings
    backend = create_backend(settings.state, cache_max_bytes=1024 * 1024)
    try:
        sources = await offline_sources(loaded, backend)
        parts = JobParts(lambda: settings, backend, Notifier(settings.notifications), lambda: sources)
        jobs = build_jobs(parts)
        scheduler = Scheduler(settings.jobs, jobs, backend)
        if args.action == "list":
            await scheduler.refresh()
            for line in _listing(scheduler, settings):
                print(line)
            return 0
        if args.name not in jobs:
            print(f"error: job {args.name!r} is not available with this config", file=sys.stderr)
            return 2
        record = await scheduler.run_now(args.name)
    finally:
        await backend.aclose()
    if record.get("last_outcome") != "ok":
        print(f"{args.name}: failed: {record.get('last_error')}", file=sys.stderr)
        return 1
    print(f"{args.name}: ok in {record['last_duration_s']:.1f} s: {record.get('last_summary', '')}")
    return 0


def _listing(scheduler: Any, settings: Any) -> list[str]:
    now = time.time()
    lines = [f"jobs in {settings.jobs.timezone}" + ("" if settings.jobs.enabled else " (jobs.enabled is false)")]
    for name in JOB_NAMES:
        spec = settings.jobs.schedule[name]
        if name not in scheduler.names():
            lines.append(f"{name:16s} {spec.cron:14s} off")
            continue
        rec = scheduler.records.get(name) or {}
        last = rec.get("last_outcome") or "never run"
        if rec.get("last_run"):
            last += f" at {_iso(rec['last_run'])}" + (f": {rec.get('last_error')}" if last == "failed" else "")
        lines.append(f"{name:16s} {spec.cron:14s} next {_iso(scheduler.next_run(name, now))}  last {last}")
    return lines


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
