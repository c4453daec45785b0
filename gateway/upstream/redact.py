"""Keep a deployment's credentials out of everything an upstream says.

An upstream's error message is relayed to the client and written to the logs,
and an upstream is free to quote what it received (``Incorrect API key: sk-...``,
a proxy echoing the request's headers). Before an upstream's words go anywhere,
every credential of the deployment that sent the request is replaced by
:data:`MASK`: its API key, the whole value of its auth header, the values of its
extra headers whose names say they are credentials, and the password and
credential-named query parameters of its ``base_url``.

Values shorter than :data:`MIN_SECRET_CHARS` are not searched for: replacing a
two-letter value everywhere would garble messages and protect nothing.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from gateway.errors import GatewayError, UpstreamErrorPage
from gateway.providers.base import Target

MASK = "[redacted]"
MIN_SECRET_CHARS = 6
_CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|passw|signature|cookie|credential|session", re.IGNORECASE)


def secrets_of(target: Target) -> tuple[str, ...]:
    """The credentials of ``target`` to search for, longest first (so a value that
    contains another, ``Bearer sk-..`` and ``sk-..``, is masked whole)."""
    found: set[str] = set()
    if target.api_key and len(target.api_key) >= MIN_SECRET_CHARS:
        found.add(target.api_key)
        if target.auth_scheme:
            found.add(f"{target.auth_scheme} {target.api_key}")
    for name, value in target.headers.items():
        if name == target.auth_header or _CREDENTIAL_NAME.search(name):
            found.add(value)
            found.add(value.partition(" ")[2])  # "Bearer xyz" -> "xyz" too
    found.update(_url_secrets(target.base_url))
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True))


def _url_secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    found = {value for name, value in parse_qsl(parts.query) if _CREDENTIAL_NAME.search(name)}
    if password:
        found.add(password)
    return found


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret replaced by :data:`MASK`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    """:func:`redact` for a raw body, before anything is cut from it (a cut could
    leave half a key where the whole one would have been found)."""
    for secret in secrets:
        raw = secret.encode()
        if raw in body:
            body = body.replace(raw, MASK.encode())
    return body


def redact_error(err: GatewayError, secrets: tuple[str, ...]) -> None:
    """Mask the secrets in ``err``'s message (and its other upstream-given text) in place."""
    if not secrets:
        return
    message = redact(err.message, secrets)
    if message != err.message:
        err.message = message
        err.args = (message,)
    err.code = redact(err.code, secrets)
    if err.param is not None:
        err.param = redact(err.param, secrets)
    if isinstance(err, UpstreamErrorPage):
        err.summary = redact(err.summary, secrets)
