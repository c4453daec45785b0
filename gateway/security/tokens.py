"""The admin API's JSON Web Tokens: HS256 only, signed and checked with PyJWT.

:func:`encode` signs a claims object with HMAC-SHA256. :func:`decode` accepts
a token only if:

- it is at most :data:`MAX_TOKEN_BYTES` long;
- its algorithm is HS256: the server fixes ``algorithms=["HS256"]``, so a
  token cannot choose how it is checked (``none`` and every other algorithm are
  refused), and its header holds nothing but ``alg`` and ``typ``;
- its signature matches (PyJWT compares in constant time);
- it has numeric ``iat`` and ``exp`` and a ``type`` claim (PyJWT's required
  claims), ``exp`` is after ``now`` and ``type`` is the one expected (an access
  token is not a refresh token).

Time is the caller's ``now``, not the wall clock: PyJWT's own ``exp``/``iat``
checks are turned off and :func:`decode` checks ``exp`` against ``now`` once
PyJWT has verified the signature and the required claims (tests and replicas
drive the clock).

The signing key comes from the environment (see :func:`signing_key`): the
``GATEWAY_JWT_SECRET`` variable (at least 32 bytes), else a key derived from
the master key with HKDF-SHA256 (RFC 5869, info ``gateway admin jwt v1``), so
changing the master key also ends every session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.types import Options

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096
JWT_SECRET_ENV = "GATEWAY_JWT_SECRET"
REQUIRED_CLAIMS = ("exp", "iat", "type")
HEADER_FIELDS = frozenset({"alg", "typ"})


class TokenError(Exception):
    """The token is malformed, forged, expired or of the wrong type (the message says which)."""


def encode(claims: Mapping[str, Any], key: bytes) -> str:
    return jwt.encode(dict(claims), key, algorithm=ALGORITHM)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_of_type(typ: str) -> str:
    return f"not an {typ} token" if typ[0] in "aeiou" else f"not a {typ} token"


def _options() -> Options:
    """Required claims; ``exp``/``iat`` are checked against the caller's clock, not PyJWT's."""
    return {"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False}


def _verified(raw: bytes, key: bytes, typ: str) -> dict[str, Any]:
    """PyJWT's decoding: signature, algorithm, JSON object, required claims."""
    try:
        return jwt.decode_complete(raw, key, algorithms=[ALGORITHM], options=_options())
    except jwt.InvalidAlgorithmError:
        raise TokenError("unsupported token algorithm: only HS256 is accepted") from None
    except jwt.InvalidSignatureError:
        raise TokenError("bad token signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(_not_of_type(typ) if exc.claim == "type" else "the token has no valid iat/exp") from None
    except jwt.DecodeError:
        raise TokenError("malformed token") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None


def decode(token: str | bytes, key: bytes, *, typ: str, now: float) -> dict[str, Any]:
    """The claims of a valid token of type ``typ`` at time ``now``; :class:`TokenError` otherwise."""
    raw = token.encode("utf-8", "replace") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_BYTES:
        raise TokenError("malformed token")
    decoded = _verified(raw, key, typ)
    if set(decoded["header"]) - HEADER_FIELDS:
        raise TokenError("unsupported token header: only HS256 is accepted, with no fields but alg and typ")
    claims: dict[str, Any] = decoded["payload"]
    if not _number(claims["exp"]) or not _number(claims["iat"]):
        raise TokenError("the token has no valid iat/exp")
    if claims["exp"] <= now:
        raise TokenError("the token has expired")
    if claims["type"] != typ:
        raise TokenError(_not_of_type(typ))
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
