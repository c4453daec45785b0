"""Never show a secret in full: masking of single values and of whole records.

A field counts as secret when its name (case-insensitive) is or ends in
``key``, ``secret``, ``password``, ``passwd``, ``token``, ``api_key``,
``authorization``, ``totp`` or ``hash`` (``api_key``, ``refresh_token``, ``new_password``,
``client_secret``), or contains ``secret`` or ``password``. ``max_tokens``,
``key_hint`` and ``keys`` are not secret names. A masked value keeps a short
prefix (at most 4 characters, none for a value under 12 characters) and ``…``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

ELLIPSIS = "…"
_SECRET_NAME = re.compile(
    r"(^|[_\-.])(key|secret|password|passwd|token|api_?key|authorization|totp|hash)$|secret|password", re.IGNORECASE
)


def is_secret_field(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def mask(value: str) -> str:
    """``sk-live-abcdef...`` -> ``sk-l…``; a short value -> ``…``."""
    return (value[:4] if len(value) >= 12 else "") + ELLIPSIS


def mask_fields(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with every secret-named field masked,
    at any depth. A secret field holding a non-string is replaced by ``…``."""
    if isinstance(value, dict):
        return {k: _masked(v) if is_secret_field(str(k)) else mask_fields(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_fields(v) for v in value]
    return value


def _masked(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    return mask(value) if isinstance(value, str) else ELLIPSIS


def iso_time(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2026-11-26T12:55:07Z``), for answers."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
