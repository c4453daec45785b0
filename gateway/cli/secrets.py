"""``gateway secrets rotate``: re-encrypt every stored secret under a new master key.

    GATEWAY_SECRETS_KEY_NEW=$(python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())")
    gateway secrets rotate --config config/gateway.yaml \\
        --old-key-env GATEWAY_SECRETS_KEY --new-key-env GATEWAY_SECRETS_KEY_NEW

It works on the state backend of the config file directly (the running
gateway knows only one key): the ``secrets`` table (provider API keys) and
the users' TOTP secrets. Every secret is opened with the old key before any
is rewritten; one that does not open stops the rotation with nothing of that
table changed, and a rotation that stopped half-way can be run again (what is
already under the new key is skipped). Then set ``GATEWAY_SECRETS_KEY`` to the
new key and restart every replica. With the embedded backend, stop the gateway
first (it keeps its records in memory). Keys are read from the environment,
never from the command line, and nothing secret is printed.
Exit codes: 0 done, 1 the backend or a secret failed, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from gateway.config.loader import ConfigError, load_config
from gateway.security.accounts import rotate_totp
from gateway.security.secrets import SecretBox, SecretError, parse_key, rotate_all
from gateway.state.base import BackendUnavailable, NewerSchema
from gateway.state.factory import create_backend


def add_parser(sub: Any, default_config: str) -> None:
    secrets = sub.add_parser("secrets", help="encrypted secrets: rotate the master key")
    actions = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser("rotate", help="re-encrypt every stored secret under a new key")
    rotate.add_argument("--config", default=default_config, help="config file (its state backend is used)")
    rotate.add_argument("--old-key-env", default="GATEWAY_SECRETS_KEY", help="variable holding the current key")
    rotate.add_argument("--new-key-env", required=True, help="variable holding the new key (32 bytes, base64)")


def _key(name: str) -> bytes:
    text = os.environ.get(name)
    if not text:
        raise ValueError(f"{name} is not set")
    return parse_key(text, name)


def run(args: argparse.Namespace) -> int:
    try:
        old, new = _key(args.old_key_env), _key(args.new_key_env)
        if old == new:
            raise ValueError(f"{args.old_key_env} and {args.new_key_env} hold the same key")
        settings = load_config(args.config).settings
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.state.backend == "embedded":
        print(f"embedded state at {settings.state.path}: the gateway using it must be stopped", file=sys.stderr)
    try:
        secrets, totps = asyncio.run(_rotate(settings.state, SecretBox(new, old), SecretBox(new)))
    except (BackendUnavailable, SecretError, NewerSchema) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {secrets} secret(s) and {totps} TOTP secret(s) under key {SecretBox(new).kid}")
    print(f"now set GATEWAY_SECRETS_KEY to the value of {args.new_key_env} and restart the gateway")
    return 0


async def _rotate(state: Any, old: SecretBox, new: SecretBox) -> tuple[int, int]:
    backend = create_backend(state, cache_max_bytes=1024 * 1024)
    try:
        return await rotate_all(backend, old, new), await rotate_totp(backend, old, new)
    finally:
        await backend.aclose()
