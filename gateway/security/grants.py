"""Temporary role grants: a user's role raised for a while, lapsing by itself.

A user record may hold ``grants``: a list of ``{"id", "role", "expires_at", "granted_by",
"granted_at", "reason"}`` (``role`` ``operator`` or ``admin``, times in epoch seconds).
The role a user acts with is :func:`effective_role`: the highest of their own ``role``
and the roles of their grants not yet expired, computed at each request from the record
(gateway/admin/gate.py), so a grant works from the request after it is made and stops at
its ``expires_at`` without anyone acting, on every replica, access tokens included.

An expired grant stays on the record (the security review lists it, and it is history)
until :data:`KEEP_EXPIRED_S` after its expiry, when the next change of the user's grants
drops it. A revoked grant is removed at once.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from typing import Any

from gateway.errors import InvalidRequest
from gateway.security.masking import iso_time
from gateway.security.roles import Role
from gateway.state.base import Record

GRANTABLE = ("operator", "admin")
MAX_GRANT_S = 90 * 86400
"""The longest a grant may last (90 days): a longer need is a role change."""
MAX_ACTIVE = 20
"""Grants not yet expired one user may hold."""
MAX_REASON = 500
KEEP_EXPIRED_S = 30 * 86400


def grants_of(user: Record) -> list[Record]:
    raw = user.get("grants")
    return [g for g in raw if isinstance(g, dict)] if isinstance(raw, list) else []


def is_active(grant: Record, now: float) -> bool:
    expires = grant.get("expires_at")
    return isinstance(expires, (int, float)) and not isinstance(expires, bool) and float(expires) > now


def effective_role(user: Record, now: float) -> Role:
    """The highest of the user's role and their unexpired grants' roles."""
    role = Role.parse(str(user["role"]))
    for grant in grants_of(user):
        if is_active(grant, now) and grant.get("role") in GRANTABLE:
            role = max(role, Role.parse(str(grant["role"])))
    return role


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_field")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _expiry(body: dict[str, Any], now: float) -> float:
    """``expires_at`` (epoch seconds, or an ISO 8601 time with its offset) or ``now + expires_in_s``."""
    if ("expires_in_s" in body) == ("expires_at" in body):
        raise _bad("send exactly one of expires_in_s and expires_at", "expires_in_s")
    if "expires_in_s" in body:
        seconds = body["expires_in_s"]
        if not _number(seconds) or not 0 < seconds <= MAX_GRANT_S:
            raise _bad(f"expires_in_s must be a number of seconds above 0, at most {MAX_GRANT_S}", "expires_in_s")
        return now + float(seconds)
    value = body["expires_at"]
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _bad("expires_at must be epoch seconds or an ISO 8601 time", "expires_at") from None
        if when.tzinfo is None:
            raise _bad("expires_at must give its UTC offset (2026-01-31T18:00:00Z)", "expires_at")
        value = when.astimezone(UTC).timestamp()
    if not _number(value) or not now < value <= now + MAX_GRANT_S:
        raise _bad(f"expires_at must be in the future, at most {MAX_GRANT_S} seconds from now", "expires_at")
    return float(value)


def new_grant(user: Record, body: dict[str, Any], *, actor: str, now: float) -> Record:
    """The grant ``body`` asks for ``user`` (``{role, expires_in_s | expires_at, reason}``),
    checked; 400 naming the field otherwise."""
    role = body.get("role")
    if role not in GRANTABLE:
        raise _bad(f"role must be one of {', '.join(GRANTABLE)}", "role")
    if Role.parse(role) <= Role.parse(str(user["role"])):
        raise _bad(f"{user['username']} is {user['role']} already: a grant must raise the role", "role")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise _bad(f"reason must be a non-empty string of at most {MAX_REASON} characters", "reason")
    expires_at = _expiry(body, now)
    if sum(is_active(g, now) for g in grants_of(user)) >= MAX_ACTIVE:
        raise _bad(f"{user['username']} holds {MAX_ACTIVE} grants already: revoke one first", "role")
    return {
        "id": f"grant_{secrets.token_hex(6)}",
        "role": role,
        "expires_at": round(expires_at, 3),
        "granted_by": actor,
        "granted_at": round(now, 3),
        "reason": reason.strip(),
    }


def with_grant(user: Record, grant: Record, now: float) -> Record:
    """``user`` holding ``grant`` too (grants expired long ago dropped)."""
    kept = [g for g in grants_of(user) if float(g.get("expires_at") or 0) > now - KEEP_EXPIRED_S]
    return {**user, "grants": [*kept, grant]}


def without_grant(user: Record, grant_id: str) -> tuple[Record, Record | None]:
    """``user`` without grant ``grant_id``, and that grant (None if it has none of that id)."""
    found = next((g for g in grants_of(user) if g.get("id") == grant_id), None)
    if found is None:
        return user, None
    return {**user, "grants": [g for g in grants_of(user) if g is not found]}, found


def shown(grant: Record, now: float) -> Record:
    """A grant as the admin API shows it (times in ISO 8601 UTC, and whether it is active)."""

    def iso(value: Any) -> str | None:
        return iso_time(float(value)) if _number(value) else None

    return {
        "id": grant.get("id"),
        "role": grant.get("role"),
        "expires_at": iso(grant.get("expires_at")),
        "granted_by": grant.get("granted_by"),
        "granted_at": iso(grant.get("granted_at")),
        "reason": grant.get("reason"),
        "active": is_active(grant, now),
    }
