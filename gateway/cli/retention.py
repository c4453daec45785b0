"""``gateway retention run`` and ``gateway archive load|verify``: the request-detail tier
of the postgres state backend (docs/configuration.md "PostgreSQL retention tiers").

``retention run`` does what the gateway does every ``state.postgres.retention.interval_s``:
each whole UTC day of request detail older than ``detail_days`` is exported to
``archive_dir/requests-YYYY-MM-DD.jsonl.gz``, then deleted (from cron, with
``run_in_app: false``, or by hand). ``archive load FILE`` checks an archive file and
loads it into ``gw_requests_loaded`` for a query (again: nothing added);
``archive verify FILE`` only checks it (no database needed).

Exit codes: 0 done, 1 PostgreSQL failed, a day was left in PostgreSQL or the file
was refused, 2 bad usage or config (or a backend other than postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.cli.config_file import load_or_say
from gateway.config.state import PostgresSettings
from gateway.state.base import BackendUnavailable


def add_parsers(sub: Any, default: str) -> None:
    retention = sub.add_parser("retention", help="postgres backend: archive and delete old request detail")
    actions = retention.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="archive each day of request detail older than detail_days, then delete it")
    run.add_argument("--config", default=default, help="the gateway's config file")

    archive = sub.add_parser("archive", help="postgres backend: request archive files")
    actions = archive.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser("load", help="check an archive file and load it into gw_requests_loaded")
    load.add_argument("file")
    load.add_argument("--config", default=default, help="the gateway's config file")
    verify = actions.add_parser("verify", help="check an archive file (row count and sha256)")
    verify.add_argument("file")


def run(args: argparse.Namespace) -> int:
    from gateway.state.request_archive import ArchiveError, ArchiveReader

    if args.command == "archive" and args.action == "verify":
        try:
            info = ArchiveReader(Path(args.file)).verify()
        except ArchiveError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{info.path}: OK, day {info.day}, {info.rows} request(s), sha256 {info.sha256}")
        return 0
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    state = loaded.settings.state
    if state.backend != "postgres" or state.postgres is None:
        print(
            f"error: {args.config}: state.backend is {state.backend}; request detail and its archives are kept"
            " by the postgres backend only",
            file=sys.stderr,
        )
        return 2
    from gateway.state.postgres_schema import SchemaTooNew

    try:
        if args.command == "retention":
            return asyncio.run(_retain(state.postgres))
        return asyncio.run(_load(state.postgres, Path(args.file)))
    except (BackendUnavailable, SchemaTooNew, ArchiveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _pool(pg: PostgresSettings) -> Any:
    from gateway.state.postgres_client import Pool

    return Pool(pg.url, max_connections=2, connect_timeout_s=pg.connect_timeout_s)


async def _retain(pg: PostgresSettings) -> int:
    from gateway.state.retention import Retention

    settings = pg.retention
    pool = _pool(pg)
    archive_dir = Path(settings.archive_dir) if settings.archive else None
    try:
        result = await Retention(pool, detail_days=settings.detail_days, archive_dir=archive_dir).run()
    finally:
        await pool.aclose()
    if result.skipped:
        print("another retention run holds the lock (a gateway replica): nothing done", file=sys.stderr)
        return 0
    for day in result.days:
        where = f"archived to {day.archive.path} (sha256 {day.archive.sha256}), " if day.archive else ""
        print(f"{day.day}: {day.deleted} request(s) {where}deleted from postgresql")
    for day_text, why in result.failed:
        print(f"error: {day_text} kept in postgresql: {why}", file=sys.stderr)
    if not result.days and not result.failed:
        print(f"no request detail before {result.cutoff.isoformat()}: nothing to do")
    return 1 if result.failed else 0


async def _load(pg: PostgresSettings, path: Path) -> int:
    from gateway.state.retention import load_archive

    pool = _pool(pg)
    try:
        done = await load_archive(pool, path)
    finally:
        await pool.aclose()
    print(
        f"{path}: checked (day {done.day}, {done.rows} request(s)); {done.inserted} row(s) added to gw_requests_loaded"
        f" (archive = '{done.archive}')"
    )
    return 0
