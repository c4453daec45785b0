"""``gateway backup`` and ``gateway restore FILE``: the state of the config file's backend
to an encrypted archive and back (gateway/state/backup.py; docs/configuration.md "Backups").

    gateway backup --config config/gateway.yaml              # into backup.dir, then retention
    gateway backup --config config/gateway.yaml --out /mnt/x # into another directory, no retention
    gateway restore data/backups/gateway-20261206T020000Z.gwbak --config config/gateway.yaml --yes

The key comes from the environment (``GATEWAY_BACKUP_KEY``, else ``GATEWAY_SECRETS_KEY``),
never from the command line. A backup may run beside a serving gateway. A restore goes into
an empty state (a new SQLite path, an empty Redis, an empty PostgreSQL database: stop the
gateways first) unless ``--force``; it first reads the whole archive and refuses, by name,
one that is not an archive, of a newer format, of another installation (another key),
changed or truncated; nothing is written then.

Exit codes: 0 done, 1 refused or failed (the archive, the backend, a target not empty),
2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli.config_file import load_or_say
from gateway.config.settings import Settings
from gateway.state.backup import (
    ArchiveRefused,
    BackupError,
    Counts,
    backup_key,
    check_archive,
    prune,
    restore,
    write_backup,
)
from gateway.state.base import BackendUnavailable, NewerSchema
from gateway.state.factory import create_backend


def add_parsers(sub: Any, default_config: str) -> None:
    backup = sub.add_parser("backup", help="write an encrypted backup of the state (keys, users, spend, audit log...)")
    backup.add_argument("--config", default=default_config, help="config file (its state backend is backed up)")
    backup.add_argument("--out", default=None, help="directory to write to (default backup.dir; no retention there)")
    restore_ = sub.add_parser("restore", help="restore the state from a backup archive")
    restore_.add_argument("file", help="the archive (.gwbak)")
    restore_.add_argument("--config", default=default_config, help="config file (its state backend is restored)")
    restore_.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore_.add_argument("--force", action="store_true", help="restore over a state that is not empty")


def run(args: argparse.Namespace) -> int:
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    try:
        key = backup_key(os.environ)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "backup":
            return asyncio.run(_backup(loaded.settings, key, args.out))
        return _restore(loaded.settings, key, args)
    except ArchiveRefused as exc:
        print(f"error: refused ({exc.reason}): {exc}", file=sys.stderr)
        return 1
    except (BackupError, BackendUnavailable, NewerSchema, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _backup(settings: Settings, key: bytes, out: str | None) -> int:
    backend = create_backend(settings.state, cache_max_bytes=1024 * 1024)
    try:
        directory = Path(out or settings.backup.dir)
        path, header = await write_backup(backend, directory, key)
    finally:
        await backend.aclose()
    kept = ""
    if out is None:
        left, gone = prune(directory, settings.backup.keep)
        kept = f"; {len(left)} kept" + (f", {len(gone)} older deleted" if gone else "")
    counts = Counts(**header["counts"])
    print(f"wrote {path} ({counts.describe()}, {path.stat().st_size:,} bytes){kept}")
    return 0


def _restore(settings: Settings, key: bytes, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 1
    header, counts = check_archive(path, key)
    print(
        f"{path}: written {header.get('created_at')} by gateway {header.get('gateway_version')}"
        f" from the {header.get('backend')} backend: {counts.describe()}"
    )
    target = _describe(settings)
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"error: restoring into {target} needs confirmation: pass --yes", file=sys.stderr)
            return 2
        if input(f"restore into {target}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not restored")
            return 1
    done = asyncio.run(_restore_into(settings, key, path, args.force))
    note = f"; {done.expired_blobs} stored responses expired since, skipped" if done.expired_blobs else ""
    if done.renumbered_streams:
        note += f"; new sequence numbers in log stream(s) {', '.join(done.renumbered_streams)} (order kept)"
    print(f"restored into {target}: {done.counts.describe()}{note}")
    return 0


async def _restore_into(settings: Settings, key: bytes, path: Path, force: bool) -> Any:
    backend = create_backend(settings.state, cache_max_bytes=1024 * 1024)
    try:
        return await restore(backend, path, key, force=force)
    finally:
        await backend.aclose()


def _describe(settings: Settings) -> str:
    state = settings.state
    if state.backend == "embedded":
        return f"the embedded state {state.path}"
    if state.backend == "redis":
        return "the redis state"
    return "the postgres state (PostgreSQL + Redis)"
