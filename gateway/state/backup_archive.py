"""The backup archive file: versioned, encrypted and authenticated (AES-256-GCM), read
and written one frame at a time (``backup.py`` fills it from a state backend and puts it
back).

Layout::

    b"GWBACKUP"                      8 bytes, the magic
    header                           4096 bytes: JSON (plain text), padded with spaces
    header tag                       16 bytes: AES-GCM over nothing, the magic and header as AAD
    frame 0, frame 1, ... frame n-1  each: u32 length (big-endian), then AES-GCM ciphertext

The header says the format version (:data:`FORMAT`), the installation (a hash of the key:
an archive is read only with the key that wrote it), when and by which gateway version it
was written, the state backend it came from, what it holds (counts), its random nonce
prefix, and its body's size and frame count. A frame is a zlib-compressed run of JSON
lines (one item each, ``backup.py``); its nonce is the prefix and its index, its AAD the
prefix, the index and whether it is the last. So every byte is authenticated: a changed
header fails its tag, a changed, reordered or foreign frame fails its own, and a file cut
short is shorter than its header says or lacks its last frame.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"GWBACKUP"
FORMAT = 1
"""The archive format this release writes and the newest it reads."""
HEADER_BYTES = 4096
TAG_BYTES = 16
PREFIX_BYTES = 8
FRAME_BYTES = 1 << 20
"""Plain text gathered into one frame (before compression)."""
_BODY_AT = len(MAGIC) + HEADER_BYTES + TAG_BYTES
_HEADER_NONCE = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">I")


class ArchiveRefused(Exception):
    """The file cannot be restored; the message names why (and what to do)."""

    reason = "refused"


class NotAnArchive(ArchiveRefused):
    reason = "not_an_archive"


class OtherInstallation(ArchiveRefused):
    reason = "other_installation"


class NewerFormat(ArchiveRefused):
    reason = "newer_format"


class Tampered(ArchiveRefused):
    reason = "tampered"


class Truncated(ArchiveRefused):
    reason = "truncated"


def installation_of(key: bytes) -> str:
    """The installation an archive belongs to: a hash of its key (the key cannot be found from it)."""
    return hashlib.sha256(b"gateway backup installation\x00" + key).hexdigest()[:32]


def _frame_aad(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", index, last)


class ArchiveWriter:
    """Writes one archive to ``path`` (a temporary name: ``backup.py`` renames it when done).
    :meth:`add` items, then :meth:`finish` with the header's fields. Blocking: call it off
    the event loop."""

    def __init__(self, path: Path, key: bytes, *, format_version: int = FORMAT) -> None:
        self.path = path
        self._aead = AESGCM(key)
        self._installation = installation_of(key)
        self._format = format_version
        self._prefix = os.urandom(PREFIX_BYTES)
        self._file: IO[bytes] = path.open("xb")
        self._file.write(MAGIC + b" " * (HEADER_BYTES + TAG_BYTES))  # the header goes here at the end
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.frames = 0
        self.body_bytes = 0

    def add(self, item: dict[str, Any]) -> None:
        line = orjson.dumps(item) + b"\n"
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= FRAME_BYTES:
            self._frame(last=False)

    def _frame(self, *, last: bool) -> None:
        plain = zlib.compress(b"".join(self._buffer), 6)
        self._buffer, self._buffered = [], 0
        nonce = self._prefix + struct.pack(">I", self.frames)
        sealed = self._aead.encrypt(nonce, plain, _frame_aad(self._prefix, self.frames, last))
        self._file.write(_LENGTH.pack(len(sealed)) + sealed)
        self.frames += 1
        self.body_bytes += _LENGTH.size + len(sealed)

    def finish(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The last frame, then the header (``fields`` and the format's own); the file is
        flushed to disk and closed. The header written."""
        self._frame(last=True)
        header = {
            **fields,
            "format": self._format,
            "installation": self._installation,
            "nonce_prefix": self._prefix.hex(),
            "frames": self.frames,
            "body_bytes": self.body_bytes,
        }
        text = orjson.dumps(header)
        if len(text) > HEADER_BYTES:
            raise ValueError(f"backup header of {len(text)} bytes does not fit in {HEADER_BYTES}")
        area = text + b" " * (HEADER_BYTES - len(text))
        tag = self._aead.encrypt(self._prefix + _HEADER_NONCE, b"", MAGIC + area)
        self._file.seek(len(MAGIC))
        self._file.write(area + tag)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return header

    def abandon(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class ArchiveReader:
    """Checks and reads one archive with ``key``: :meth:`header` refuses a file that is not an
    archive, of a newer format, of another installation, changed or cut short; :meth:`items`
    decrypts the frames one at a time (refusing at the first bad one: call it once through to
    check the whole file before acting on any of it)."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._header: dict[str, Any] | None = None

    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = self._read_header()
        return self._header

    def _read_header(self) -> dict[str, Any]:
        name = self.path
        with self.path.open("rb") as f:
            head = f.read(_BODY_AT)
        if not head.startswith(MAGIC):
            raise NotAnArchive(f"{name} is not a gateway backup archive (no {MAGIC.decode()} mark at its start)")
        if len(head) < _BODY_AT:
            raise Truncated(f"{name} is truncated: it ends inside its header ({len(head)} bytes)")
        area, tag = head[len(MAGIC) : len(MAGIC) + HEADER_BYTES], head[len(MAGIC) + HEADER_BYTES :]
        try:
            header = orjson.loads(area.rstrip(b" "))
        except orjson.JSONDecodeError:
            raise Tampered(f"{name} was changed after it was written: its header is not readable") from None
        if not isinstance(header, dict) or not isinstance(header.get("format"), int):
            raise Tampered(f"{name} was changed after it was written: its header has no format version")
        if header["format"] > FORMAT:
            raise NewerFormat(
                f"{name} has archive format {header['format']}, newer than this gateway reads ({FORMAT}):"
                f" it was written by gateway {header.get('gateway_version', '?')}; restore it with that release"
            )
        ours = installation_of(self._key)
        if header.get("installation") != ours:
            raise OtherInstallation(
                f"{name} belongs to another installation ({header.get('installation')}; this one is {ours}):"
                " it was encrypted with another key. Set GATEWAY_BACKUP_KEY (or GATEWAY_SECRETS_KEY) to the key"
                " of the installation that wrote it"
            )
        try:
            prefix = bytes.fromhex(str(header["nonce_prefix"]))
            AESGCM(self._key).decrypt(prefix + _HEADER_NONCE, tag, MAGIC + area)
            body_bytes, frames = int(header["body_bytes"]), int(header["frames"])
        except (InvalidTag, KeyError, ValueError, TypeError):
            raise Tampered(f"{name} was changed after it was written: its header fails authentication") from None
        size = self.path.stat().st_size
        if size < _BODY_AT + body_bytes:
            raise Truncated(f"{name} is truncated: {size} bytes, its header says {_BODY_AT + body_bytes}")
        if size > _BODY_AT + body_bytes or frames < 1:
            raise Tampered(
                f"{name} was changed after it was written: {size} bytes, its header says {_BODY_AT + body_bytes}"
            )
        return dict(header)

    def items(self) -> Iterator[dict[str, Any]]:
        header = self.header()
        prefix, frames = bytes.fromhex(header["nonce_prefix"]), int(header["frames"])
        aead = AESGCM(self._key)
        with self.path.open("rb") as f:
            f.seek(_BODY_AT)
            for index in range(frames):
                raw = f.read(_LENGTH.size)
                length = _LENGTH.unpack(raw)[0] if len(raw) == _LENGTH.size else -1
                sealed = f.read(length) if length >= 0 else b""
                if length < 0 or len(sealed) != length:
                    raise Tampered(f"{self.path} was changed after it was written: frame {index} is cut")
                try:
                    nonce = prefix + struct.pack(">I", index)
                    plain = aead.decrypt(nonce, sealed, _frame_aad(prefix, index, index == frames - 1))
                except InvalidTag:
                    raise Tampered(
                        f"{self.path} was changed after it was written: frame {index} fails authentication"
                    ) from None
                for line in zlib.decompress(plain).splitlines():
                    yield orjson.loads(line)
