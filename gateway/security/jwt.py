"""JSON Web Tokens, HS256 only (RFC 7519 / RFC 7515), with the standard library.

Only what the admin API needs: :func:`encode` signs a claims object with
HMAC-SHA256; :func:`decode` accepts a token only if its header is exactly
``alg: HS256`` (``none`` and every other algorithm are refused, so a token
cannot choose how it is checked), its signature matches (constant-time
comparison), it has ``iat`` and ``exp`` with ``exp`` in the future, and its
``type`` claim is the one expected (an access token is not a refresh token).

The signing key comes from the environment (see ``signing_key``): the
``GATEWAY_JWT_SECRET`` variable (at least 32 bytes), else a key derived from
the master key with HKDF-SHA256 (RFC 5869, info ``gateway admin jwt v1``), so
changing the master key also ends every session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_HEADER = {"alg": "HS256", "typ": "JWT"}
MAX_TOKEN_BYTES = 4096
JWT_SECRET_ENV = "GATEWAY_JWT_SECRET"


class TokenError(Exception):
    """The token is malformed, forged, expired or of the wrong type (the message says which)."""


def _b64encode(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64decode(part: bytes) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None


def _sign(signing_input: bytes, key: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def encode(claims: Mapping[str, Any], key: bytes) -> str:
    signing_input = _b64encode(orjson.dumps(_HEADER)) + b"." + _b64encode(orjson.dumps(dict(claims)))
    return (signing_input + b"." + _b64encode(_sign(signing_input, key))).decode("ascii")


def decode(token: str | bytes, key: bytes, *, typ: str, now: float) -> dict[str, Any]:
    """The claims of a valid token of type ``typ``; :class:`TokenError` otherwise."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_BYTES or raw.count(b".") != 2:
        raise TokenError("malformed token")
    header_b64, claims_b64, sig_b64 = raw.split(b".")
    try:
        header = orjson.loads(_b64decode(header_b64))
        claims = orjson.loads(_b64decode(claims_b64))
    except orjson.JSONDecodeError:
        raise TokenError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or set(header) - {"alg", "typ"}:
        raise TokenError("unsupported token algorithm: only HS256 is accepted")
    if not hmac.compare_digest(_b64decode(sig_b64), _sign(header_b64 + b"." + claims_b64, key)):
        raise TokenError("bad token signature")
    if not isinstance(claims, dict):
        raise TokenError("malformed token")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _number(exp) or not _number(iat):
        raise TokenError("the token has no valid iat/exp")
    if claims["exp"] <= now:
        raise TokenError("the token has expired")
    if claims.get("type") != typ:
        raise TokenError(f"not an {typ} token" if typ[0] in "aeiou" else f"not a {typ} token")
    return claims


def signing_key(env: Mapping[str, str], master_key: str | None) -> bytes | None:
    """``GATEWAY_JWT_SECRET`` if set (32 bytes or more), else HKDF of the master
    key; ``None`` when neither is there (then no user can log in)."""
    secret = env.get(JWT_SECRET_ENV)
    if secret:
        if len(secret.encode()) < 32:
            raise ValueError(f"{JWT_SECRET_ENV} must be at least 32 bytes")
        return secret.encode()
    if not master_key:
        return None
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"llm-gateway", info=b"gateway admin jwt v1")
    return hkdf.derive(master_key.encode())
