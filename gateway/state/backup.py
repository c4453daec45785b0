"""Backups of the state (issue 16): everything that is not in the config file, from any
state backend to an encrypted archive (``backup_archive.py``), and back.

What an archive holds (every backend's enumeration, ``StateBackend.tables`` and after):
every record of every table (client keys, teams, users and their sessions, runtime models
and routing rules, secrets still sealed, the scheduler's runs, report statistics, ...),
every spend counter's total and the spend ledger's marks (the last batch applied per
owner, so a journal replayed after a restore is not counted twice), every stored response
not yet expired (with its expiry), and every log stream (the audit log) with its sequence
numbers. Not in it: what lives only while the gateway runs (the response cache, rate-limit
windows, concurrency slots, budget reservations), the ``postgres`` backend's request detail
(its retention tier and archives, ``gateway archive``) and its per-batch ledger history.

The key: ``GATEWAY_BACKUP_KEY`` (32 random bytes, base64), else ``GATEWAY_SECRETS_KEY``.
Files: ``<backup.dir>/gateway-<UTC time>.gwbak``, written under a temporary name and
renamed when complete (a reader never sees half a file); after each, all but the newest
``backup.keep`` are deleted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config.backup import BACKUP_KEY_ENV, BackupSettings
from gateway.config.settings import Settings
from gateway.state.backup_archive import ArchiveReader, ArchiveRefused, ArchiveWriter
from gateway.state.base import Record, StateBackend

SECRETS_KEY_ENV = "GATEWAY_SECRETS_KEY"
SUFFIX = ".gwbak"
_NAME = re.compile(r"^gateway-(\d{8}T\d{6}Z)(?:-(\d+))?\.gwbak$")
_LOG_PAGE = 1000


class BackupError(Exception):
    """A backup or restore that cannot be done (no key, a target that is not empty, ...)."""


def backup_key(env: Mapping[str, str]) -> bytes:
    """The archive key: ``GATEWAY_BACKUP_KEY``, else ``GATEWAY_SECRETS_KEY`` (32 bytes in base64)."""
    for name in (BACKUP_KEY_ENV, SECRETS_KEY_ENV):
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise BackupError(f"{name} is not valid base64") from None
        if len(raw) != 32:
            raise BackupError(f"{name} must be 32 bytes (base64 of 32 random bytes), got {len(raw)}")
        return raw
    raise BackupError(f"backups are encrypted: set {BACKUP_KEY_ENV} (32 random bytes, base64) or {SECRETS_KEY_ENV}")


@dataclass
class Counts:
    tables: int = 0
    records: int = 0
    spend_counters: int = 0
    spend_marks: int = 0
    blobs: int = 0
    log_streams: int = 0
    log_records: int = 0

    def describe(self) -> str:
        return (
            f"{self.records:,} records in {self.tables:,} tables, {self.spend_counters:,} spend counters,"
            f" {self.log_records:,} log records, {self.blobs:,} stored responses"
        )


async def write_backup(
    backend: StateBackend, directory: Path, key: bytes, *, now: float | None = None, format_version: int | None = None
) -> tuple[Path, dict[str, Any]]:
    """One archive of ``backend`` in ``directory`` (created if needed); its path and header."""
    created = time.time() if now is None else now
    final = await asyncio.to_thread(_free_name, directory, created)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    extra = {} if format_version is None else {"format_version": format_version}
    writer = await asyncio.to_thread(ArchiveWriter, tmp, key, **extra)
    try:
        counts = await _fill(backend, writer, created)
        header = await asyncio.to_thread(
            writer.finish,
            {
                "created_at": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
                "created_epoch": created,
                "gateway_version": __version__,
                "backend": backend.kind,
                "counts": vars(counts),
            },
        )
        await asyncio.to_thread(_publish, tmp, final)
    except BaseException:
        await asyncio.to_thread(writer.abandon)
        raise
    return final, header


async def _fill(backend: StateBackend, writer: ArchiveWriter, created: float) -> Counts:
    counts = Counts()
    for table in await backend.tables():
        counts.tables += 1
        for id_, record in await backend.scan_items(table):
            writer.add({"t": "rec", "tbl": table, "id": id_, "v": record})
            counts.records += 1
    for counter, usd in (await backend.spend_counters()).items():
        writer.add({"t": "spend", "k": counter, "usd": usd})
        counts.spend_counters += 1
    for owner, seq in (await backend.spend_marks()).items():
        writer.add({"t": "mark", "owner": owner, "seq": seq})
        counts.spend_marks += 1
    async for key, value, left_s in backend.blob_items():
        writer.add({"t": "blob", "k": key, "v": base64.b64encode(value).decode(), "exp": created + left_s})
        counts.blobs += 1
        if counts.blobs % 64 == 0:
            await asyncio.sleep(0)  # frames are written on add: let the loop breathe
    for stream in await backend.log_streams():
        counts.log_streams += 1
        for record in await _whole_log(backend, stream):
            writer.add({"t": "log", "s": stream, "r": record})
            counts.log_records += 1
    return counts


async def _whole_log(backend: StateBackend, stream: str) -> list[Record]:
    """Every record of ``stream``, oldest first."""
    out: list[Record] = []
    before: int | None = None
    while True:
        page = await backend.read_log(stream, _LOG_PAGE, before)
        out.extend(page)
        if len(page) < _LOG_PAGE:
            return out[::-1]
        before = int(page[-1]["seq"])


def _free_name(directory: Path, created: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = directory / f"gateway-{stamp}{SUFFIX}", 1
    while path.exists():
        n += 1
        path = directory / f"gateway-{stamp}-{n}{SUFFIX}"
    return path


def _publish(tmp: Path, final: Path) -> None:
    """Rename into place (never over another file), and make the rename durable."""
    os.link(tmp, final)  # fails if ``final`` appeared meanwhile, unlike a rename
    tmp.unlink()
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def archives(directory: Path) -> list[Path]:
    """The archives in ``directory``, oldest first (by the time in their names)."""
    if not directory.is_dir():
        return []
    found = [(m.group(1), int(m.group(2) or 1), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, _, p in sorted(found)]


def prune(directory: Path, keep: int) -> tuple[list[Path], list[Path]]:
    """Delete all but the newest ``keep`` archives; (kept, deleted)."""
    found = archives(directory)
    old, kept = found[: max(0, len(found) - keep)], found[max(0, len(found) - keep) :]
    for path in old:
        path.unlink(missing_ok=True)
    return kept, old


async def backup_job(settings: Settings, backend: StateBackend, env: Mapping[str, str] | None = None) -> str:
    """The scheduler's ``backup`` job: one archive into ``settings.backup.dir``, then retention.
    The one-line summary the scheduler records."""
    conf: BackupSettings = settings.backup
    key = backup_key(os.environ if env is None else env)
    directory = Path(conf.dir)
    path, header = await write_backup(backend, directory, key)
    kept, _ = await asyncio.to_thread(prune, directory, conf.keep)
    counts = Counts(**header["counts"])
    return f"wrote {path} ({counts.describe()}, {_size(path.stat().st_size)}); {len(kept)} kept"


def _size(n: int) -> str:
    return f"{n:,} B" if n < 1024 else f"{n / 1024:,.0f} KB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MB"


def check_archive(path: Path, key: bytes) -> tuple[dict[str, Any], Counts]:
    """Read the whole archive once (blocking): its header and what it holds, or
    :class:`ArchiveRefused` naming why it cannot be restored."""
    reader = ArchiveReader(path, key)
    header = reader.header()
    counts = Counts()
    tables: set[str] = set()
    streams: set[str] = set()
    for item in reader.items():
        kind = item.get("t")
        if kind == "rec":
            counts.records += 1
            tables.add(item["tbl"])
        elif kind == "spend":
            counts.spend_counters += 1
        elif kind == "mark":
            counts.spend_marks += 1
        elif kind == "blob":
            counts.blobs += 1
        elif kind == "log":
            counts.log_records += 1
            streams.add(item["s"])
    counts.tables, counts.log_streams = len(tables), len(streams)
    return header, counts


@dataclass
class Restored:
    counts: Counts = field(default_factory=Counts)
    expired_blobs: int = 0
    renumbered_streams: list[str] = field(default_factory=list)


async def target_holds(backend: StateBackend) -> Counts:
    """What ``backend`` holds already (a restore goes into an empty one unless forced)."""
    held = Counts()
    tables = await backend.tables()
    held.tables = len(tables)
    held.spend_counters = len(await backend.spend_counters())
    held.log_streams = len(await backend.log_streams())
    async for _ in backend.blob_items():
        held.blobs += 1
        break
    return held


async def restore(backend: StateBackend, path: Path, key: bytes, *, force: bool = False) -> Restored:
    """Check ``path`` whole, then put it into ``backend``: records by id, spend totals and
    marks as they were, stored responses until their own expiry, log records with their
    sequence numbers (into a stream the target holds already, or where the backend cannot
    keep them: appended in order under new ones, named in ``renumbered_streams``).
    Refuses a target holding state unless ``force`` (records of the same id are replaced)."""
    header, _ = await asyncio.to_thread(check_archive, path, key)
    held = await target_holds(backend)
    if not force and (held.tables or held.spend_counters or held.log_streams or held.blobs):
        raise BackupError(
            f"the {backend.kind} state is not empty ({held.tables} tables, {held.spend_counters} spend counters,"
            f" {held.log_streams} log streams{', stored responses' if held.blobs else ''}): restore into an empty"
            " one, or pass --force to restore over it"
        )
    existing_streams = set(await backend.log_streams())
    done = Restored()
    totals: dict[str, float] = {}
    marks: dict[str, int] = {}
    logs: dict[str, list[Record]] = {}
    items = await asyncio.to_thread(lambda: iter(ArchiveReader(path, key).items()))
    while (item := await asyncio.to_thread(next, items, None)) is not None:
        kind = item["t"]
        if kind == "rec":
            await backend.put(item["tbl"], item["id"], item["v"])
            done.counts.records += 1
        elif kind == "spend":
            totals[item["k"]] = float(item["usd"])
        elif kind == "mark":
            marks[item["owner"]] = int(item["seq"])
        elif kind == "blob":
            left_s = float(item["exp"]) - time.time()
            if left_s <= 0:
                done.expired_blobs += 1
                continue
            await backend.blob_put(item["k"], base64.b64decode(item["v"]), left_s)
            done.counts.blobs += 1
        elif kind == "log":
            logs.setdefault(item["s"], []).append(item["r"])
    await backend.restore_spend(totals, marks)
    done.counts.spend_counters, done.counts.spend_marks = len(totals), len(marks)
    for stream, records in logs.items():
        if stream in existing_streams:
            for record in records:
                await backend.append_log(stream, {k: v for k, v in record.items() if k != "seq"})
            kept = False
        else:
            kept = await backend.restore_log(stream, records)
        if not kept:
            done.renumbered_streams.append(stream)
        done.counts.log_records += len(records)
    done.counts.log_streams = len(logs)
    done.counts.tables = int(header.get("counts", {}).get("tables", 0))
    return done


__all__ = ["ArchiveRefused", "BackupError", "backup_job", "backup_key", "check_archive", "prune", "restore"]
