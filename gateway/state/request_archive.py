"""Archive files of request detail: ``requests-YYYY-MM-DD.jsonl.gz``, one per UTC day
(written by the retention job, ``retention.py``; read back by ``gateway archive load``).

A gzip file of JSON lines:

- the first line is the header, ``{"_archive": {"format": "gateway.requests",
  "version": 1, "day": "YYYY-MM-DD", "columns": [...], "created_at": "..."}}``;
- then one object per request, the columns of ``gw_requests`` by name (``ts`` in
  RFC 3339 with microseconds, UTC), in ``(ts, request_id)`` order;
- the last line is ``{"_end": {"rows": N, "sha256": "<hex>"}}``: the number of
  request lines and the SHA-256 of every line before it (header included, as
  stored, newlines included).

A file whose end line is missing (truncated), whose count or checksum does not
match (altered or damaged) or that is not gzip is refused, by name
(:class:`ArchiveError`). The checksum detects damage and careless edits; it is
not a signature (whoever can rewrite the file can rewrite its end line).

A file is written to a temporary name in the same directory, fsynced, renamed
over the final name and the directory fsynced: a reader sees the old file or
the whole new one, and a crash leaves at most a ``.requests-...tmp-<pid>`` file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FORMAT = "gateway.requests"
VERSION = 1


class ArchiveError(Exception):
    """An archive file that cannot be read or written, or that is not as written."""


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    day: str
    rows: int
    sha256: str


def archive_name(day: str) -> str:
    return f"requests-{day}.jsonl.gz"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArchiveWriter:
    """One archive file being written (see the module docstring). Blocking: the
    retention job calls it from a thread."""

    def __init__(self, path: Path, day: str, columns: Sequence[str]) -> None:
        self.path = path
        self.day = day
        self.rows = 0
        self._hash = hashlib.sha256()
        self._tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = self._tmp.open("wb")
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot write: {exc}") from exc
        created = datetime.now(UTC).isoformat(timespec="seconds")
        header = {"format": FORMAT, "version": VERSION, "day": day, "columns": list(columns), "created_at": created}
        self._write(orjson.dumps({"_archive": header}) + b"\n")

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        try:
            self._gz.write(data)
        except OSError as exc:
            raise ArchiveError(f"{self.path}: cannot write: {exc}") from exc

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        lines = [orjson.dumps(row) for row in rows]
        if lines:
            self._write(b"\n".join(lines) + b"\n")
            self.rows += len(lines)

    def commit(self) -> ArchiveInfo:
        """The end line; then the file is made durable and given its name."""
        digest = self._hash.hexdigest()
        try:
            self._gz.write(orjson.dumps({"_end": {"rows": self.rows, "sha256": digest}}) + b"\n")
            self._gz.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            self._tmp.replace(self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self.abort()
            raise ArchiveError(f"{self.path}: cannot write: {exc}") from exc
        return ArchiveInfo(self.path, self.day, self.rows, digest)

    def abort(self) -> None:
        """Close and remove the temporary file (the final name is left as it was)."""
        with contextlib.suppress(OSError):
            self._gz.close()
        with contextlib.suppress(OSError):
            self._raw.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def remove_stale(path: Path) -> None:
    """Remove the temporary files a crashed writer of ``path`` left."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        with contextlib.suppress(OSError):
            stale.unlink()


class ArchiveReader:
    """Reads an archive file and checks it as it goes: :meth:`chunks` raises
    :class:`ArchiveError` where it finds a problem, and the end line is checked
    last, so a caller that must not act on a bad file finishes the iteration
    before it commits anything (``gateway archive load`` loads in one
    transaction). ``header``, ``rows`` and ``sha256`` are known once it is done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] = {}
        self.rows = 0
        self.sha256 = ""

    def _refuse(self, why: str) -> ArchiveError:
        return ArchiveError(f"{self.path}: {why}; refused")

    def chunks(self, size: int = 5000) -> Iterator[list[dict[str, Any]]]:
        digest = hashlib.sha256()
        end: Any = None
        chunk: list[dict[str, Any]] = []
        try:
            with gzip.open(self.path, "rb") as f:
                first = f.readline()
                self._check_header(first)
                digest.update(first)
                for line in f:
                    if end is not None:
                        raise self._refuse("lines after the end line")
                    obj = orjson.loads(line)
                    if not isinstance(obj, dict):
                        raise self._refuse(f"line {self.rows + 2} is not an object")
                    if "_end" in obj:
                        end = obj["_end"]
                        continue
                    digest.update(line)
                    self.rows += 1
                    chunk.append(obj)
                    if len(chunk) >= size:
                        yield chunk
                        chunk = []
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise self._refuse(f"not a readable archive ({exc})") from exc
        except orjson.JSONDecodeError as exc:
            raise self._refuse(f"a line is not JSON ({exc})") from exc
        if not isinstance(end, dict):
            raise self._refuse("truncated: no end line")
        self.sha256 = digest.hexdigest()
        if end.get("rows") != self.rows or end.get("sha256") != self.sha256:
            raise self._refuse(
                f"altered or damaged: {self.rows} row(s) with sha256 {self.sha256}, but its end line says"
                f" {end.get('rows')} with {end.get('sha256')}"
            )
        if chunk:
            yield chunk

    def _check_header(self, line: bytes) -> None:
        try:
            header = orjson.loads(line).get("_archive") if line.startswith(b"{") else None
        except orjson.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise self._refuse(f"not a request archive (no {FORMAT!r} header line)")
        if header.get("version") != VERSION:
            raise self._refuse(f"archive version {header.get('version')!r}; this release reads {VERSION}")
        self.header = header

    def verify(self) -> ArchiveInfo:
        """Read the whole file; its description, or :class:`ArchiveError`."""
        for _ in self.chunks():
            pass
        return ArchiveInfo(self.path, str(self.header.get("day")), self.rows, self.sha256)
