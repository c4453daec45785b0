"""``gateway state migrate``: apply the PostgreSQL state backend's schema migrations, then exit.

What a deployment runs once before the replicas of a new release start (the Helm chart's
pre-install and pre-upgrade hook Job, ``deploy/helm/gateway/templates/migration-job.yaml``).
The gateway still migrates at first use (``gateway/state/postgres_schema.py``, the same steps
under the same advisory lock, so a replica and this command never apply a step twice); run
first, a step that fails stops the rollout before any replica of the new release serves, and the
replicas' first calls do not wait on it.

The database: ``--url-env VAR`` reads its URL from that environment variable (never a command
line, where the password would show in the process list); without it, ``state.postgres.url`` of
``--config``.

Exit codes: 0 migrated or already current; 1 PostgreSQL unreachable or refusing, a step failed,
the lock not had in time, or a database migrated by a newer release; 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Any

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_TIMEOUT_S = 300.0


def add_parser(sub: Any, default: str) -> None:
    state = sub.add_parser("state", help="the state backend's schema: apply the PostgreSQL migrations")
    actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate", help="apply the PostgreSQL state backend's schema migrations and exit (0: current)"
    )
    migrate.add_argument("--config", default=default, help="the gateway's config file (state.postgres.url)")
    migrate.add_argument(
        "--url-env",
        metavar="VAR",
        default=None,
        help="read the database URL from this environment variable instead of the config",
    )
    migrate.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"connecting waits at most S seconds (default: the config's connect_timeout_s, else "
        f"{DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    migrate.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"the migration, waiting for the migration lock included, at most S seconds (default "
        f"{DEFAULT_TIMEOUT_S:g})",
    )


def run(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 2
    url, connect_timeout_s = target
    if args.connect_timeout is not None:
        connect_timeout_s = args.connect_timeout
    if connect_timeout_s <= 0 or args.timeout <= 0:
        print("error: --connect-timeout and --timeout must be more than 0 seconds", file=sys.stderr)
        return 2
    return asyncio.run(_migrate(url, connect_timeout_s, args.timeout))


def _target(args: argparse.Namespace) -> tuple[str, float] | None:
    """(database URL, connect timeout), or None after saying why there is none."""
    if args.url_env is not None:
        url = os.environ.get(args.url_env, "")
        if not url:
            print(f"error: the environment variable {args.url_env} (--url-env) is not set or empty", file=sys.stderr)
            return None
        if not re.match(r"^postgres(ql)?://", url):
            print(
                f"error: {args.url_env} must hold a PostgreSQL URL starting with postgresql:// or postgres://",
                file=sys.stderr,
            )
            return None
        return url, DEFAULT_CONNECT_TIMEOUT_S
    from gateway.cli.config_file import load_or_say

    loaded = load_or_say(args.config)
    if loaded is None:
        return None
    state = loaded.settings.state
    if state.backend != "postgres" or state.postgres is None:
        print(
            f"error: {args.config}: state.backend is {state.backend}; only the postgres backend has schema"
            " migrations to run before a rollout (embedded migrates its file at start, redis has no schema)",
            file=sys.stderr,
        )
        return None
    return state.postgres.url, state.postgres.connect_timeout_s


async def _migrate(url: str, connect_timeout_s: float, timeout_s: float) -> int:
    import asyncpg

    from gateway.state.postgres_client import PG_ERRORS, redact
    from gateway.state.postgres_schema import MIGRATIONS, SchemaTooNew, migrate, version_of

    where = redact(url)
    unreachable: tuple[type[Exception], ...] = (*PG_ERRORS, ValueError)  # ValueError: a malformed URL
    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout_s)
    except unreachable as exc:
        print(f"error: cannot reach PostgreSQL at {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        before = await version_of(conn)
        after = await asyncio.wait_for(migrate(conn), timeout_s)
    except SchemaTooNew as exc:
        print(f"error: {where}: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"error: {where}: the migration did not finish within {timeout_s:g} s (another process holds the"
            " migration lock, or a step is slow); steps already applied stay applied, run it again",
            file=sys.stderr,
        )
        return 1
    except PG_ERRORS as exc:
        print(f"error: {where}: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            await asyncio.wait_for(conn.close(), connect_timeout_s)
        except PG_ERRORS:
            conn.terminate()
    if after == before:
        print(f"{where}: schema version {after}, current: nothing to apply")
    else:
        print(f"{where}: schema version {before} -> {after}")
        for number, step in enumerate(MIGRATIONS[before:after], start=before + 1):
            print(f"  applied step {number}: {step.does}")
    return 0
