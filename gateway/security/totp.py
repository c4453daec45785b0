"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), standard library only.

Authenticator apps use the defaults: SHA-1, 6 digits, 30-second steps, a
base32 secret (:func:`new_secret` makes 160 random bits). :func:`match`
accepts the current step and one step either side (clock drift) and returns
the step that matched, so the caller can refuse a code used before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from urllib.parse import quote

STEP_S = 30
DIGITS = 6


def new_secret() -> str:
    return base64.b32encode(os.urandom(20)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("the TOTP secret is not base32") from None


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(key: bytes, now: float, *, digits: int = DIGITS, digest: str = "sha1", step_s: int = STEP_S) -> str:
    return hotp(key, int(now // step_s), digits=digits, digest=digest)


def match(secret: str, code: str, now: float, *, drift_steps: int = 1) -> int | None:
    """The time step ``code`` is valid for (within ``drift_steps``), else None."""
    if not (len(code) == DIGITS and code.isascii() and code.isdigit()):
        return None
    key = decode_secret(secret)
    current = int(now // STEP_S)
    found = None
    for step in range(current - drift_steps, current + drift_steps + 1):
        if hmac.compare_digest(hotp(key, step), code):
            found = step  # no early exit: the same work whichever step matches
    return found


def otpauth_uri(secret: str, account: str, issuer: str = "LLM Gateway") -> str:
    """What an authenticator app scans (as a QR code) or takes by hand."""
    return (
        f"otpauth://totp/{quote(issuer)}:{quote(account)}?secret={secret}&issuer={quote(issuer)}"
        f"&algorithm=SHA1&digits={DIGITS}&period={STEP_S}"
    )
