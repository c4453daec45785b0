"""Open admin routes (no bearer credential; the allow-list still applies):
``POST /admin/login``, ``POST /admin/refresh``, ``POST /admin/logout``.

Login: ``{username, password, totp?}`` -> ``{access_token, refresh_token,
token_type, expires_in}``. A wrong username or password is 401
``invalid_credentials`` (the same answer and, through a dummy hash, the same
time for an unknown name); ``admin.lockout.max_failures`` of them within
``window_s`` lock the account: 403 ``account_locked`` with ``Retry-After``, even
with the right password, until ``duration_s`` passes or an admin unlocks it.
Each guess reserves its place in the lock-out window before its password is
hashed, so at most ``max_failures`` wrong guesses are checked per window however
many arrive at once; the rest are refused unchecked (``account_locked``), and a
right password gives back only its own place (gateway/security/lockout.py).
With TOTP enrolled, a right password without ``totp`` is 401 ``totp_required``
and a wrong or reused code counts as a failure. A disabled user gets 403
``account_disabled``. Every outcome is in the audit log. A successful login sets the
user's ``last_login_at``. A refresh of a session idle for more than
``admin.session_idle_timeout_s`` is 401 ``session_idle`` (gateway/security/sessions.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.audit import request_id
from gateway.admin.gate import AdminGate
from gateway.admin.keys import error_response, json_response, read_json
from gateway.errors import AuthenticationFailed, BackendDegraded, GatewayError, InvalidRequest, PermissionDenied
from gateway.security.accounts import check_username
from gateway.security.grants import effective_role
from gateway.state.base import BackendUnavailable, Record

Handler = Callable[[Request], Awaitable[Response]]


def open_route(work: Handler) -> Handler:
    """A route without a bearer credential, with errors in the OpenAI shape."""

    async def endpoint(request: Request) -> Response:
        try:
            return await work(request)
        except GatewayError as err:
            return error_response(err)
        except BackendUnavailable:
            return error_response(BackendDegraded("the state backend is unreachable; try again shortly"))

    return endpoint


def _text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string", param=name, code="invalid_field")
    return value


async def _object(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
    return body


def account_locked(until: float) -> PermissionDenied:
    when = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return PermissionDenied(
        f"the account is locked after repeated failed logins, until {when}",
        code="account_locked",
        headers={"retry-after": str(max(1, round(until - time.time())))},
    )


class LoginAPI:
    def __init__(self, gate: Callable[[], AdminGate]) -> None:
        self._gate = gate

    def routes(self) -> list[Route]:
        return [
            Route("/admin/login", open_route(self.login), methods=["POST"]),
            Route("/admin/refresh", open_route(self.refresh), methods=["POST"]),
            Route("/admin/logout", open_route(self.logout), methods=["POST"]),
        ]

    async def _audit(self, request: Request, who: str, address: str, action: str, **after: Any) -> None:
        log = self._gate().audit_log
        await log.write_login(who, address, action, after=after or None, request_id=request_id(request))

    async def login(self, request: Request) -> Response:
        gate = self._gate()
        address = gate.check_address(request.scope)
        body = await _object(request)
        username = check_username(body.get("username"))
        password = _text_field(body, "password")
        code = _text_field(body, "totp", required=False)
        assert password is not None
        sessions = gate.require_sessions()
        user, step = await self._check(request, gate, username, password, code, address)
        if user.get("disabled"):
            gate.count_login("disabled")
            await self._audit(request, username, address, "auth.login_refused", reason="account_disabled")
            raise PermissionDenied("this account is disabled", code="account_disabled")
        await gate.users.record_login(username, step)  # last_login_at (and the TOTP step used)
        pair = await sessions.start(username, effective_role(user, time.time()).name)
        gate.count_login("success")
        await self._audit(request, username, address, "auth.login")
        return json_response(pair.body())

    async def _check(
        self, request: Request, gate: AdminGate, username: str, password: str, code: str | None, address: str
    ) -> tuple[Record, int | None]:
        """The user whose password (and TOTP code) is right, and the code's step. The guess
        takes its place in the lock-out window first: none left is 403 ``account_locked``
        with nothing hashed (gateway/security/lockout.py)."""
        policy = gate.settings.lockout
        guess = await gate.users.reserve_guess(username, policy)
        if guess.refused_until is not None:
            gate.count_login("locked")
            await self._audit(request, username, address, "auth.login_refused", reason="account_locked")
            raise account_locked(guess.refused_until)
        user = await gate.users.get(username)
        ok = await gate.hasher.verify(password, user["password_hash"] if user else None)
        step = None
        if ok and user is not None and user.get("totp_enabled"):
            if code is None:
                await gate.users.guess_right(guess)
                gate.count_login("totp_required")
                raise AuthenticationFailed("this account needs a TOTP code: send totp", code="totp_required")
            step = gate.users.totp_step(user, code)
            if step is not None and not await gate.users.claim_totp_step(user, step):
                step = None  # the same code in another login at the same moment: used once
            ok = step is not None
        if not ok or user is None:
            until = await gate.users.guess_failed(guess, policy)
            gate.count_login("invalid")
            await self._audit(request, username, address, "auth.login_failed", locked=until is not None)
            if until is not None:
                raise account_locked(until)
            raise AuthenticationFailed("invalid username, password or TOTP code", code="invalid_credentials")
        await gate.users.guess_right(guess)  # its own place back; no failure is erased
        return user, step

    async def refresh(self, request: Request) -> Response:
        gate = self._gate()
        address = gate.check_address(request.scope)
        token = _text_field(await _object(request), "refresh_token")
        assert token is not None

        async def current_role(username: str) -> str | None:
            user = await gate.users.get(username)
            return None if user is None or user.get("disabled") else effective_role(user, time.time()).name

        try:
            _, pair = await gate.require_sessions().refresh(token, current_role)
        except AuthenticationFailed as err:
            if err.code == "refresh_token_reused":
                who = gate.require_sessions().subject(token) or "unknown"
                await self._audit(request, who, address, "auth.refresh_reused")
            raise
        return json_response(pair.body())

    async def logout(self, request: Request) -> Response:
        gate = self._gate()
        address = gate.check_address(request.scope)
        token = _text_field(await _object(request), "refresh_token")
        assert token is not None
        username = await gate.require_sessions().logout(token)
        await self._audit(request, username, address, "auth.logout")
        return json_response({"logged_out": True})
