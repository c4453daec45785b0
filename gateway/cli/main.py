"""Command line: ``gateway serve | init | check-config | keys | models | users | report | secrets |
security | retention | archive | backup | restore | jobs | state | mock``
(also ``python -m gateway``); ``gateway --version``.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import backup as cli_backup
from gateway.cli import init as cli_init
from gateway.cli import jobs as cli_jobs
from gateway.cli import keys as cli_keys
from gateway.cli import models as cli_models
from gateway.cli import report as cli_report
from gateway.cli import retention as cli_retention
from gateway.cli import secrets as cli_secrets
from gateway.cli import security as cli_security
from gateway.cli import serve
from gateway.cli import state as cli_state
from gateway.cli import users as cli_users
from gateway.cli.config_file import default_config, load_or_say


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An observability-first LLM gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve.add_parser(sub)
    cli_init.add_parser(sub)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")

    cli_keys.add_parser(sub)
    cli_models.add_parser(sub)
    cli_report.add_parser(sub)
    cli_users.add_parser(sub)
    cli_secrets.add_parser(sub, default_config(os.environ))
    cli_security.add_parser(sub, default_config(os.environ))
    cli_retention.add_parsers(sub, default_config(os.environ))
    cli_backup.add_parsers(sub, default_config(os.environ))
    cli_jobs.add_parser(sub, default_config(os.environ))
    cli_state.add_parser(sub, default_config(os.environ))

    mock = sub.add_parser("mock", help="run the mock upstream (OpenAI, Anthropic and Gemini wire formats)")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8090)
    mock.add_argument("--config", default=None, help="mock behaviour config (YAML)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "init":
        return cli_init.run(args)
    if args.command == "keys":
        return cli_keys.run(args)
    if args.command == "models":
        return cli_models.run(args)
    if args.command == "report":
        return cli_report.run(args)
    if args.command == "users":
        return cli_users.run(args)
    if args.command == "secrets":
        return cli_secrets.run(args)
    if args.command == "security":
        return cli_security.run(args)
    if args.command in ("backup", "restore"):
        return cli_backup.run(args)
    if args.command in ("retention", "archive"):
        return cli_retention.run(args)
    if args.command == "jobs":
        return cli_jobs.run(args)
    if args.command == "state":
        return cli_state.run(args)
    if args.command == "mock":
        from gateway.mock import run_mock  # the mock is a tool, not part of the serving path

        run_mock(args.host, args.port, args.config)
        return 0
    return serve.run(args)


def _check_config(path: str) -> int:
    loaded = load_or_say(path)
    if loaded is None:
        return 2
    models = loaded.settings.models
    print(f"{path}: OK - {len(models)} model alias(es): {', '.join(models) or '(none)'}")
    if loaded.disabled_aliases:
        print(f"left out (required environment not set): {', '.join(loaded.disabled_aliases)}")
    return 0
