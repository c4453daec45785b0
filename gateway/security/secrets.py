"""Secrets at rest (provider API keys given through the admin API): AES-256-GCM.

The master key comes from the environment: ``GATEWAY_SECRETS_KEY`` holds 32
random bytes in base64 (``python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"``).
Each sealed secret is ``{"v": 1, "kid", "nonce", "ct"}``: a fresh 96-bit
nonce per encryption, the secret's name as associated data (a ciphertext
moved to another name does not open), and ``kid``, the first 8 hex digits of
SHA-256 of the master key, which says which key sealed it. A :class:`SecretBox`
seals with its first key and opens with any of its keys, so during a rotation
a box holding the new and the old key reads both.

:class:`SecretStore` keeps sealed secrets in the state backend (table
``secrets``, by name) with a masked ``hint``; callers hold a reference
``secret:<name>`` and open it only when they call the provider.
:func:`rotate_all` re-encrypts every stored secret under a new key
(``gateway secrets rotate``).

Usage (the models admin API)::

    ref = await host.secrets.put_secret("openai-prod", api_key)   # -> "secret:openai-prod"
    api_key = await host.secrets.get_secret(ref)
    shown = mask(api_key)                                          # "sk-p…"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.security.masking import iso_time, mask
from gateway.state.base import Record, StateBackend

SECRETS_KEY_ENV = "GATEWAY_SECRETS_KEY"
TABLE = "secrets"
REF_PREFIX = "secret:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_SECRET_BYTES = 16 * 1024


class SecretError(Exception):
    """A sealed secret does not open: tampered with, or sealed under a key this box lacks."""


class SecretsNotConfigured(GatewayError):
    status: ClassVar[int] = 503
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "secrets_not_configured"


def parse_key(text: str, what: str = SECRETS_KEY_ENV) -> bytes:
    """32 bytes from base64 (standard or URL-safe); ValueError naming ``what`` otherwise."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes (base64 of 32 random bytes), got {len(raw)}")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class SecretBox:
    """AES-256-GCM sealing with one current key and any number of older ones."""

    def __init__(self, key: bytes, *older: bytes) -> None:
        self._keys = {key_id(k): AESGCM(k) for k in (key, *older)}
        self.kid = key_id(key)

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str = SECRETS_KEY_ENV) -> SecretBox | None:
        """The box for ``$name``; None when unset; ValueError when malformed."""
        text = env.get(name)
        return cls(parse_key(text, name)) if text else None

    def seal(self, name: str, plaintext: str) -> Record:
        nonce = os.urandom(12)
        ct = self._keys[self.kid].encrypt(nonce, plaintext.encode(), name.encode())
        return {"v": 1, "kid": self.kid, "nonce": _b64(nonce), "ct": _b64(ct)}

    def open(self, name: str, sealed: Mapping[str, Any]) -> str:
        aead = self._keys.get(str(sealed.get("kid")))
        if aead is None:
            raise SecretError(f"secret {name!r} was sealed under key {sealed.get('kid')}, which is not configured")
        try:
            nonce = base64.b64decode(str(sealed["nonce"]), validate=True)
            ct = base64.b64decode(str(sealed["ct"]), validate=True)
            return aead.decrypt(nonce, ct, name.encode()).decode()
        except (KeyError, binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            raise SecretError(f"secret {name!r} does not decrypt: it was altered or sealed for another name") from None


def ref_name(ref: str) -> str:
    if not ref.startswith(REF_PREFIX) or not NAME_RE.match(ref[len(REF_PREFIX) :]):
        raise InvalidRequest(f"not a secret reference: use {REF_PREFIX}<name>", param="ref", code="invalid_secret_ref")
    return ref[len(REF_PREFIX) :]


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidRequest(
            "a secret name is 1-100 characters: letters, digits, '.', '_', '-'", param="name", code="invalid_field"
        )
    return name


def public(record: Record) -> Record:
    """What the admin API shows of a stored secret: never the ciphertext."""
    shown = {k: record.get(k) for k in ("name", "ref", "hint", "kid")}
    return {**shown, "created_at": iso_time(record.get("created_at")), "updated_at": iso_time(record.get("updated_at"))}


class SecretStore:
    """Encrypted secrets by name in the state backend."""

    def __init__(self, backend: StateBackend, box: SecretBox | None) -> None:
        self._backend = backend
        self.box = box

    def _box(self) -> SecretBox:
        if self.box is None:
            raise SecretsNotConfigured(
                f"secrets cannot be stored or read: set {SECRETS_KEY_ENV} (32 random bytes, base64) and restart"
            )
        return self.box

    async def put_secret(self, name: str, plaintext: str) -> str:
        """Seal and store ``plaintext`` under ``name`` (replacing it); the reference."""
        check_name(name)
        if not plaintext or len(plaintext.encode()) > MAX_SECRET_BYTES:
            raise InvalidRequest(
                f"a secret value is 1 to {MAX_SECRET_BYTES} bytes", param="value", code="invalid_field"
            )
        now = time.time()
        old = await self._backend.get(TABLE, name)
        record = {
            "name": name,
            "ref": REF_PREFIX + name,
            "hint": mask(plaintext),
            "created_at": (old or {}).get("created_at", now),
            "updated_at": now,
            **self._box().seal(name, plaintext),
        }
        await self._backend.put(TABLE, name, record)
        return REF_PREFIX + name

    async def get_secret(self, ref: str) -> str:
        """The plaintext behind ``secret:<name>``; NotFound if there is none.
        A secret that does not open is logged by the caller and is a 500 there."""
        name = ref_name(ref)
        record = await self._backend.get(TABLE, name)
        if record is None:
            raise NotFound(f"no secret named {name!r}", code="secret_not_found")
        return self._box().open(name, record)

    async def describe(self, name: str) -> Record:
        record = await self._backend.get(TABLE, check_name(name))
        if record is None:
            raise NotFound(f"no secret named {name!r}", code="secret_not_found")
        return public(record)

    async def exists(self, name: str) -> bool:
        return await self._backend.get(TABLE, check_name(name)) is not None

    async def all(self) -> list[Record]:
        return sorted((public(r) for r in await self._backend.scan(TABLE)), key=lambda r: str(r["name"]))

    async def delete(self, name: str) -> bool:
        return await self._backend.delete(TABLE, check_name(name))


async def rotate_all(backend: StateBackend, old: SecretBox, new: SecretBox) -> int:
    """Re-encrypt every stored secret under ``new``'s key; the number rewritten.
    Every secret is opened first, so a secret that does not open (wrong old key,
    tampering) stops the rotation before anything is written."""
    records = await backend.scan(TABLE)
    opened = [(r, old.open(str(r["name"]), r)) for r in records if r.get("kid") != new.kid]
    for record, plaintext in opened:
        name = str(record["name"])
        await backend.put(TABLE, name, {**record, **new.seal(name, plaintext), "updated_at": time.time()})
    return len(opened)
