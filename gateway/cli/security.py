"""``gateway security review [--config FILE] [--format md|json]``: the security review
(gateway/security/review.py) of the config file's state backend, printed now: what the weekly
``security_review`` job sends. It only reads the state, so it runs beside a running gateway
(the embedded backend's SQLite file included).

Exit codes: 0 the review printed (whatever it found), 1 the state backend failed,
2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from gateway.cli.config_file import load_or_say
from gateway.config.settings import Settings
from gateway.security.review import Review, security_review
from gateway.state.base import BackendUnavailable, NewerSchema
from gateway.state.factory import create_backend


def add_parser(sub: Any, default_config: str) -> None:
    security = sub.add_parser("security", help="the security review (keys, secrets, MFA, admins, grants, logins)")
    actions = security.add_subparsers(dest="action", required=True, metavar="ACTION")
    review = actions.add_parser("review", help="print the security review of the state backend")
    review.add_argument("--config", default=default_config, help="config file (its state backend is read)")
    review.add_argument("--format", choices=("md", "json"), default="md", help="Markdown (default) or JSON")


def run(args: argparse.Namespace) -> int:
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    try:
        review = asyncio.run(_review(loaded.settings))
    except (BackendUnavailable, NewerSchema, OSError) as exc:
        print(f"error: the state backend ({loaded.settings.state.backend}) failed: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(review.to_json(), indent=2, ensure_ascii=False))
    else:
        print(review.to_markdown(), end="")
    return 0


async def _review(settings: Settings) -> Review:
    backend = create_backend(settings.state, cache_max_bytes=1024 * 1024)
    try:
        return await security_review(settings, backend, time.time())
    finally:
        await backend.aclose()
