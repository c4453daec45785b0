"""Admin users and their lock-out state, in the state backend (so every
replica sees the same users, the same failed-login counts and the same locks).

Tables: ``users`` (by username) and ``login_failures`` (by username, also for
names that do not exist, so probing unknown names locks them the same way).

A user record: ``username``, ``role``, ``password_hash`` (scrypt, see
:mod:`gateway.security.passwords`), ``disabled``, ``totp`` (the TOTP secret,
always sealed with the secrets key, ``GATEWAY_SECRETS_KEY``: without that key
TOTP cannot be enrolled), ``totp_enabled``, ``totp_last_step`` (a code is never accepted twice),
``tokens_after`` (access tokens issued before this instant are refused:
logout-everywhere, password change, role change), ``grants`` (temporary roles:
:mod:`gateway.security.grants`), ``last_login_at`` (each successful login) and
timestamps. Nothing of it but :func:`public` ever leaves the gateway.

A record written before TOTP secrets were always sealed may hold the secret
as ``{"plain": ...}``: it is still read (its user can log in), sealed on its
next use when the secrets key is set (:meth:`UserStore.totp_used`), and sealed
by ``gateway secrets rotate`` (:func:`rotate_totp`).

Lock-out (:mod:`gateway.security.lockout`): a login guess reserves its place
atomically before its password is hashed, so at most ``max_failures`` wrong
guesses are checked per ``window_s``, however many arrive at once on however
many replicas; ``max_failures`` failures lock the account for ``duration_s``,
and while it is locked even the right password is refused unchecked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from gateway.config.operations import LockoutSettings
from gateway.errors import InvalidRequest, NotFound
from gateway.security import totp
from gateway.security.grants import effective_role, grants_of, is_active
from gateway.security.lockout import Guess, Lockout
from gateway.security.masking import iso_time
from gateway.security.roles import Role
from gateway.security.secrets import SECRETS_KEY_ENV, SecretBox, SecretError, SecretsNotConfigured
from gateway.state.base import Record, StateBackend

USERS = "users"
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_PASSWORD = 1024


def check_username(name: Any) -> str:
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise InvalidRequest(
            "username must be 1-64 characters: letters, digits, '.', '_', '@', '-' (not first)",
            param="username",
            code="invalid_field",
        )
    return name


def check_password(password: Any, min_length: int, param: str = "password") -> str:
    if not isinstance(password, str) or not min_length <= len(password) <= MAX_PASSWORD:
        raise InvalidRequest(
            f"{param} must be a string of {min_length} to {MAX_PASSWORD} characters", param=param, code="weak_password"
        )
    return password


def check_role(role: Any) -> Role:
    try:
        return Role.parse(role) if isinstance(role, str) else Role.parse(repr(role))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="role", code="invalid_field") from None


def public(user: Record, locked_until: float | None = None, *, now: float | None = None) -> Record:
    """What the admin API shows of a user (times in ISO 8601 UTC): never a hash or secret;
    ``effective_role`` is the role with the grants active at ``now`` (default: the time now)."""
    out = {k: user.get(k) for k in ("username", "role", "disabled", "totp_enabled")}
    when = time.time() if now is None else now
    out["effective_role"] = effective_role(user, when).name
    out["active_grants"] = sum(is_active(g, when) for g in grants_of(user))
    for field in ("created_at", "updated_at", "last_login_at"):
        out[field] = iso_time(user.get(field))
    out["locked_until"] = iso_time(locked_until)
    return out


class UserStore:
    def __init__(self, backend: StateBackend, box: SecretBox | None, *, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._box = box
        self._clock = clock
        self.lockout = Lockout(backend, clock=clock)

    async def get(self, username: str) -> Record | None:
        return await self._backend.get(USERS, username)

    async def require(self, username: str) -> Record:
        user = await self.get(username)
        if user is None:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        return user

    async def all(self) -> list[Record]:
        return sorted(await self._backend.scan(USERS), key=lambda u: str(u["username"]))

    async def put(self, user: Record) -> Record:
        user = {**user, "updated_at": self._clock()}
        user.setdefault("created_at", user["updated_at"])
        await self._backend.put(USERS, user["username"], user)
        return user

    async def record_login(self, username: str, step: int | None = None) -> None:
        """A successful login of ``username`` now: ``last_login_at`` set (and TOTP ``step``
        used), on the record as it is now (read again: a change made meanwhile is kept),
        ``updated_at`` unchanged."""
        user = await self.get(username)
        if user is not None:
            changed = self.totp_used(user, step) if step is not None else user
            await self._backend.put(USERS, username, {**changed, "last_login_at": round(self._clock(), 3)})

    async def delete(self, username: str) -> bool:
        await self.lockout.clear(username)  # a user made again under this name starts unlocked
        return await self._backend.delete(USERS, username)

    # --- TOTP ---------------------------------------------------------------
    def seal_totp(self, username: str, secret: str) -> Record:
        """``secret`` sealed for ``username``; 503 ``secrets_not_configured`` without
        the secrets key (a TOTP secret is never stored in plaintext)."""
        if self._box is None:
            raise SecretsNotConfigured(
                f"TOTP cannot be enrolled: set {SECRETS_KEY_ENV} (32 random bytes, base64) and restart;"
                " TOTP secrets are stored only encrypted"
            )
        return self._box.seal(f"totp:{username}", secret)

    def totp_secret(self, user: Record) -> str:
        sealed = user.get("totp") or {}
        if "plain" in sealed:
            return str(sealed["plain"])
        if self._box is None:
            raise SecretsNotConfigured(f"the TOTP secret is encrypted but {SECRETS_KEY_ENV} is not set")
        try:
            return self._box.open(f"totp:{user['username']}", sealed)
        except SecretError as exc:
            raise SecretsNotConfigured(f"cannot check the TOTP code: {exc}") from None

    def totp_step(self, user: Record, code: str) -> int | None:
        """The step of a valid, not yet used code for ``user``."""
        step = totp.match(self.totp_secret(user), code, self._clock())
        if step is None or step <= int(user.get("totp_last_step") or 0):
            return None
        return step

    async def claim_totp_step(self, user: Record, step: int) -> bool:
        """Whether this caller is the one that uses ``step``'s code (a code sent twice at
        once, to one replica or two, is accepted once): see :meth:`Lockout.claim_step`."""
        window_s = totp.STEP_S * (2 * totp.DRIFT_STEPS + 1)
        return await self.lockout.claim_step(str(user["username"]), step, window_s)

    def totp_used(self, user: Record, step: int) -> Record:
        """``user`` after a code of ``step`` was accepted (it is not accepted again);
        a legacy plaintext secret is sealed now if the secrets key is set."""
        changed = {**user, "totp_last_step": step}
        legacy = user.get("totp") or {}
        if "plain" in legacy and self._box is not None:
            changed["totp"] = self.seal_totp(user["username"], str(legacy["plain"]))
        return changed

    # --- lock-out (gateway/security/lockout.py) ----------------------------
    async def locked_until(self, username: str) -> float | None:
        return await self.lockout.locked_until(username)

    async def reserve_guess(self, username: str, policy: LockoutSettings) -> Guess:
        """A place for one login guess, taken before the password is checked."""
        return await self.lockout.reserve(username, policy)

    async def guess_failed(self, guess: Guess, policy: LockoutSettings) -> float | None:
        """Count a wrong guess; when the account locks, the time it unlocks."""
        return await self.lockout.failed(guess, policy)

    async def guess_right(self, guess: Guess) -> None:
        """The password was right: the guess gives back its own place (no failure is erased)."""
        await self.lockout.release(guess)

    async def clear_failures(self, username: str) -> None:
        """Unlock (an admin's action): fresh windows, no failures."""
        await self.lockout.clear(username)


def _stale(user: Record, new: SecretBox) -> bool:
    sealed = user.get("totp")
    return isinstance(sealed, dict) and ("plain" in sealed or ("kid" in sealed and sealed["kid"] != new.kid))


def _open_totp(user: Record, old: SecretBox) -> str:
    sealed = user["totp"]
    return str(sealed["plain"]) if "plain" in sealed else old.open(f"totp:{user['username']}", sealed)


async def rotate_totp(backend: StateBackend, old: SecretBox, new: SecretBox) -> int:
    """Re-seal every user's TOTP secret under ``new`` (part of ``gateway secrets
    rotate``), legacy plaintext ones included; the number rewritten. All are
    opened before any is written."""
    opened = [(u, _open_totp(u, old)) for u in await backend.scan(USERS) if _stale(u, new)]
    for user, secret in opened:
        await backend.put(USERS, user["username"], {**user, "totp": new.seal(f"totp:{user['username']}", secret)})
    return len(opened)
