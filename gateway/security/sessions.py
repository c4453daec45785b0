"""Admin sessions: a short-lived access token and a rotating refresh token.

Login gives an access token (a JWT of type ``access``, ``admin.access_token_ttl_s``,
1 hour by default) and a refresh token (type ``refresh``, 7 days). Both carry
``sub`` (username), ``role``, ``jti``, ``iat``, ``exp``; the refresh token
also its session ``fam``ily.

Each login starts a session: one record in table ``refresh_tokens`` (by family
id) holding the SHA-256 of the one refresh token currently valid for it, never
the token. ``POST /admin/refresh`` with that token issues a new pair and
replaces the stored hash (rotation). Presenting an older refresh token of the
family again (a stolen copy, or a replay) revokes the whole session: the
rightful holder has to log in again, and so has the thief. Logout revokes the
session; revoking a user ends all their sessions and, through the user's
``tokens_after``, every access token already issued.

Rotation is a read then a write on the backend, not one atomic step: the same
refresh token used at the same instant on two replicas may give two new pairs,
but only the last one written stays current, so the other is taken for reuse
at its next refresh and the session ends.

Idle time-out (``admin.session_idle_timeout_s``, 30 minutes): a session records when it
was last used: at login and each refresh in its record (``last_used_at``), and at each
admin request with one of its access tokens (they carry the family, ``fam``) in table
``session_use`` (by family id; written at most every :func:`touch_every` seconds, and
apart from the session record so that it can never undo a concurrent rotation). A
refresh, or a request with an access token, more than the time-out after the last use
ends the session: 401 ``session_idle``, and the user logs in again. An access token of
a session that has ended (logout, reuse, revocation) is refused too (401
``session_revoked``). A session recorded before this existed counts as used at its next use.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthenticationFailed
from gateway.security import tokens
from gateway.state.base import StateBackend

TABLE = "refresh_tokens"
USE = "session_use"


def touch_every(idle_timeout_s: float) -> float:
    """How stale the recorded last use of a session may be: a tenth of the time-out, at most a minute."""
    return min(60.0, idle_timeout_s / 10)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(
        self,
        backend: StateBackend,
        key: bytes,
        *,
        access_ttl_s: int,
        refresh_ttl_s: int,
        idle_timeout_s: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._key = key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock

    def _token(self, username: str, role: str, typ: str, ttl_s: int, **extra: str) -> str:
        now = round(self._clock(), 3)
        claims = {"sub": username, "role": role, "type": typ, "jti": os.urandom(12).hex(), "iat": now}
        return tokens.encode({**claims, "exp": now + ttl_s, **extra}, self._key)

    async def _issue(self, username: str, role: str, family: str) -> TokenPair:
        refresh = self._token(username, role, "refresh", self.refresh_ttl_s, fam=family)
        now = self._clock()
        record = {
            "family": family,
            "user": username,
            "current": _digest(refresh),
            "expires_at": now + self.refresh_ttl_s,
        }
        await self._backend.put(TABLE, family, {**record, "last_used_at": now})
        access = self._token(username, role, "access", self.access_ttl_s, fam=family)
        return TokenPair(access, refresh, self.access_ttl_s)

    async def start(self, username: str, role: str) -> TokenPair:
        return await self._issue(username, role, os.urandom(16).hex())

    def access_claims(self, token: str | bytes) -> dict[str, Any]:
        """The claims of a valid access token; 401 ``invalid_token`` otherwise."""
        try:
            return tokens.decode(token, self._key, typ="access", now=self._clock())
        except tokens.TokenError as exc:
            raise AuthenticationFailed(f"the access token is not valid: {exc}", code="invalid_token") from None

    async def use(self, claims: dict[str, Any]) -> None:
        """An access token of ``claims`` is used now: 401 if its session has ended or was
        idle too long; else the use is recorded (see the module docstring)."""
        family_id = claims.get("fam")
        if not isinstance(family_id, str):
            return  # a token issued before access tokens named their session
        family = await self._backend.get(TABLE, family_id)
        if family is None or family.get("revoked_at"):
            raise AuthenticationFailed("this session has ended; log in again", code="session_revoked")
        last = await self._check_idle(family_id, family)
        now = self._clock()
        if now - last >= touch_every(self.idle_timeout_s):
            await self._backend.put(USE, family_id, {"family": family_id, "last_used_at": now})

    async def _check_idle(self, family_id: str, family: dict[str, Any]) -> float:
        """When the session was last used; 401 ``session_idle`` (and the session ended) if too long ago."""
        now = self._clock()
        used = await self._backend.get(USE, family_id) or {}
        last = max(float(family.get("last_used_at") or now), float(used.get("last_used_at") or 0))
        if now - last > self.idle_timeout_s:
            await self._end(family_id)
            raise AuthenticationFailed(
                f"the session was not used for more than {self.idle_timeout_s:g} s; log in again", code="session_idle"
            )
        return last

    async def _end(self, family_id: str) -> bool:
        await self._backend.delete(USE, family_id)
        return await self._backend.delete(TABLE, family_id)

    def _refresh_claims(self, token: str) -> dict[str, Any]:
        try:
            claims = tokens.decode(token, self._key, typ="refresh", now=self._clock())
        except tokens.TokenError as exc:
            raise AuthenticationFailed(f"the refresh token is not valid: {exc}", code="invalid_refresh_token") from None
        if not isinstance(claims.get("fam"), str) or not isinstance(claims.get("sub"), str):
            raise AuthenticationFailed("the refresh token is not valid", code="invalid_refresh_token")
        return claims

    async def refresh(self, token: str, current_role: Callable[[str], Any]) -> tuple[str, TokenPair]:
        """Rotate: (username, new pair). ``current_role(username)`` gives the
        user's role now (awaitable; None when the user is gone or disabled)."""
        claims = self._refresh_claims(token)
        family = await self._backend.get(TABLE, claims["fam"])
        if family is None or family.get("revoked_at"):
            raise AuthenticationFailed("this session has ended; log in again", code="session_revoked")
        if family.get("current") != _digest(token):
            await self._backend.put(TABLE, claims["fam"], {**family, "revoked_at": self._clock()})
            raise AuthenticationFailed(
                "this refresh token was already used: the session is revoked; log in again",
                code="refresh_token_reused",
            )
        await self._check_idle(claims["fam"], family)
        role = await current_role(claims["sub"])
        if role is None:
            await self._end(claims["fam"])
            raise AuthenticationFailed("the user no longer exists or is disabled", code="session_revoked")
        return claims["sub"], await self._issue(claims["sub"], role, claims["fam"])

    async def logout(self, token: str) -> str:
        """End the session of a refresh token (valid, or already rotated); its user."""
        claims = self._refresh_claims(token)
        await self._end(claims["fam"])
        return str(claims["sub"])

    async def end_all(self, username: str) -> int:
        """End every session of ``username``; how many there were."""
        ended = 0
        for family in await self._backend.scan(TABLE):
            if family.get("user") == username:
                ended += await self._end(family["family"])
            elif float(family.get("expires_at") or 0) < self._clock():
                await self._end(family["family"])  # tidy up expired sessions
        return ended

    def subject(self, refresh_token: str) -> str:
        """The username of a genuine refresh token (for the audit log); '' otherwise."""
        try:
            return str(self._refresh_claims(refresh_token)["sub"])
        except AuthenticationFailed:
            return ""
