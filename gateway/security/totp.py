"""Time-based one-time passwords (RFC 6238), with pyotp.

Authenticator apps use the defaults: SHA-1, 6 digits, 30-second steps, a
base32 secret (:func:`new_secret` makes 160 random bits). :func:`match`
accepts the current step and one step either side (clock drift) and returns
the step that matched, so the caller can refuse a code used before (pyotp's
``verify`` says only yes or no). Time is the caller's ``now``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from datetime import UTC, datetime

import pyotp

STEP_S = 30
DRIFT_STEPS = 1
"""Steps either side of the current one a code is accepted in (clock drift)."""
DIGITS = 6
ISSUER = "LLM Gateway"


def _instant(now: float) -> datetime:
    """``now`` as an aware UTC datetime: pyotp takes it as is, never through local time."""
    return datetime.fromtimestamp(now, UTC)


def new_secret() -> str:
    return pyotp.random_base32()


def generator(secret: str, *, digits: int = DIGITS, digest: str = "sha1") -> pyotp.TOTP:
    """pyotp's TOTP for a base32 ``secret`` (spaces and case ignored); ValueError if it is not one."""
    text = "".join(secret.split()).upper()
    try:
        return pyotp.TOTP(text, digits=digits, digest=getattr(hashlib, digest), interval=STEP_S)
    except binascii.Error:
        raise ValueError("the TOTP secret is not base32") from None
    except ValueError as exc:
        raise ValueError(f"the TOTP secret is not usable: {exc}") from None


def decode_secret(secret: str) -> bytes:
    """The key bytes of a base32 ``secret``; ValueError if it is not base32."""
    return generator(secret).byte_secret()


def code_at(secret: str, now: float, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code an authenticator app shows at ``now``."""
    return generator(secret, digits=digits, digest=digest).at(_instant(now))


def match(secret: str, code: str, now: float, *, drift_steps: int = DRIFT_STEPS) -> int | None:
    """The time step ``code`` is valid for (within ``drift_steps``), else None."""
    if not (len(code) == DIGITS and code.isascii() and code.isdigit()):
        return None
    totp, when = generator(secret), _instant(now)
    current = totp.timecode(when)
    found = None
    for offset in range(-drift_steps, drift_steps + 1):
        if hmac.compare_digest(totp.at(when, counter_offset=offset), code):
            found = current + offset  # no early exit: the same work whichever step matches
    return found


def otpauth_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """What an authenticator app scans (as a QR code) or takes by hand."""
    return generator(secret).provisioning_uri(name=account, issuer_name=issuer)
