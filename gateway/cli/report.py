"""``gateway report daily|weekly|monthly|yearly``: a report from the state backend.

Reads the state backend the config file names (``--config``, default
``$GATEWAY_CONFIG`` or config/gateway.yaml): the request statistics every
replica wrote, the spend counters, teams and stored models, so it needs no
running gateway (the admin API's ``GET /admin/reports/{period}`` gives the same
report from a running one, with its unwritten last seconds included).

Exit codes: 0 written, 1 the state could not be read or the output not
written, 2 bad usage or a bad config file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.admin.model_store import ModelStore, effective_config
from gateway.cli.config_file import default_config, load_or_say
from gateway.config.loader import ConfigError, LoadedConfig
from gateway.policies.keys import KeyStore
from gateway.reports.builder import FORMATS, Renderer, ReportSources, make_report
from gateway.reports.periods import KINDS, Kind, parse_date
from gateway.reports.satisfaction import feedback_reader
from gateway.reports.store import StatsStore
from gateway.state.base import BackendUnavailable, NewerSchema, StateBackend
from gateway.state.factory import create_report_reader


def _date(text: str) -> date:
    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="print a daily, weekly, monthly or yearly report (KPIs, usage, spend, budgets)",
        description="A report of the KPIs against the operations manual's targets, requests, tokens and spend "
        "by team and alias, budget adherence, top errors and little-used aliases, read from the state backend "
        "the config names.",
    )
    report.add_argument("period", choices=KINDS, help="daily: one day; weekly: Monday to Sunday; monthly")
    report.add_argument("--date", type=_date, default=None, help="a day of the period, YYYY-MM-DD (default: today)")
    report.add_argument("--format", choices=FORMATS, default="md", help="md (default), html (with charts) or json")
    report.add_argument("--out", default=None, help="write to this file instead of standard output")
    report.add_argument("--config", default=default_config(os.environ), help="the gateway's config file")


def run(args: argparse.Namespace) -> int:
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    state = loaded.settings.state
    if state.backend == "embedded" and not Path(state.path).is_file():
        print(
            f"error: no gateway state at {state.path} (state.path of {args.config}, relative to the working "
            "directory): run the command where the gateway runs, or fix the path",
            file=sys.stderr,
        )
        return 1
    try:
        text = asyncio.run(_report(loaded, args.period, args.date, args.format))
    except (BackendUnavailable, NewerSchema) as exc:
        print(f"error: cannot read the {state.backend} state backend: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote the {args.period} report to {args.out}", file=sys.stderr)
    return 0


async def _report(loaded: LoadedConfig, kind: Kind, on: date | None, fmt: Any) -> str:
    settings = loaded.settings
    backend = create_report_reader(settings.state)  # the read replica where one is configured
    try:
        sources = await offline_sources(loaded, backend)
        return Renderer().render(await make_report(kind, on, settings, sources), fmt)
    finally:
        await backend.aclose()


async def offline_sources(loaded: LoadedConfig, backend: StateBackend) -> ReportSources:
    """What a report reads outside a running gateway: the statistics, spend, teams and
    feedback every replica wrote to ``backend``, and the aliases in force (``gateway report``,
    ``gateway jobs run``)."""
    settings = loaded.settings
    aliases = await _aliases(loaded, backend)
    return ReportSources(
        stats=StatsStore(backend, tz=ZoneInfo(settings.budgets.timezone)),
        read_spend=backend.read_spend,
        teams=KeyStore(backend, refresh_interval_s=settings.state.refresh_interval_s).list_teams,
        aliases=lambda: aliases,
        feedback=feedback_reader(backend),
    )


async def _aliases(loaded: LoadedConfig, backend: StateBackend) -> list[str]:
    """The aliases in force: the file's, with the ones stored through the admin API."""
    stored = await ModelStore(backend, refresh_interval_s=loaded.settings.state.refresh_interval_s).all()
    try:
        return list(effective_config(loaded, stored, os.environ).settings.models)
    except ConfigError:
        return list(loaded.settings.models)
