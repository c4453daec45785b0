"""Admin users (``/admin/users``, role admin: :class:`UsersAPI`) and the caller's
own account (``/admin/me``, role viewer: :class:`AccountAPI`, which also enrols TOTP).

- ``POST /admin/users`` ``{username, password, role}`` -> 201 (409 ``user_exists``);
  also with the master key, which is how the first admin is made. The password policy
  (gateway/security/password_policy.py) applies here and to every password change:
  400 ``weak_password`` naming the rule. After a create, ``on_user_created(username,
  role, actor)`` runs in the background (the notification of a new user; its failure
  is logged, never the request's).
- ``GET /admin/users``, ``GET /admin/users/{username}``: never a hash or secret.
- ``PATCH /admin/users/{username}`` ``{role?, password?, disabled?}``: a change
  ends the user's sessions and revokes their access tokens.
- ``DELETE /admin/users/{username}``; ``POST .../unlock`` (clears a lock-out);
  ``POST .../revoke`` (ends every session now); ``DELETE .../totp`` (turns the
  second factor off, e.g. for a lost phone); ``.../grants``: temporary roles
  (gateway/admin/grants.py).
- ``GET /admin/me``; ``POST /admin/me/totp`` (enrol: the secret and an
  ``otpauth://`` URI, shown once; 503 ``secrets_not_configured`` without
  ``GATEWAY_SECRETS_KEY``, as the secret is stored only encrypted);
  ``POST /admin/me/totp/confirm`` ``{code}``
  (from then on login needs a code); ``POST /admin/me/password``
  ``{current_password, new_password}``. The master key is not a user: 400.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.access import Actor
from gateway.admin.audit import AuditAPI
from gateway.admin.gate import AdminGate
from gateway.admin.grants import GrantsAPI
from gateway.admin.keys import AdminHost, guarded, json_response, read_json
from gateway.admin.login import LoginAPI
from gateway.admin.secrets import SecretsAPI
from gateway.errors import GatewayError, InvalidRequest
from gateway.security import totp
from gateway.security.accounts import check_role, check_username, public
from gateway.security.password_policy import check_password
from gateway.security.roles import Role
from gateway.state.base import Record

log = logging.getLogger("gateway.admin")
UserCreated = Callable[[str, str, str], Awaitable[None]]
"""``(username, role, actor)`` of a user just created: the lead wires the notifier here."""


class Conflict(GatewayError):
    status: ClassVar[int] = 409
    type: ClassVar[str] = "conflict_error"
    default_code: ClassVar[str] = "conflict"


async def _object(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0], code="invalid_field")
    return body


async def _end_sessions(gate: AdminGate, user: Record) -> Record:
    """Revoke every token of ``user`` (a role, password or state change)."""
    if gate.sessions is not None:
        await gate.sessions.end_all(user["username"])
    return {**user, "tokens_after": round(time.time(), 3)}


def _strong(gate: AdminGate, password: Any, username: str, param: str = "password") -> str:
    admin = gate.settings
    return check_password(password, admin.password_min_length, admin.password_policy, username=username, param=param)


def _user_actor(request: Request) -> Actor:
    actor: Actor = request.state.actor
    if actor.via != "token":
        raise InvalidRequest("the master key is not a user: log in as a user for this", code="not_a_user")
    return actor


class UsersAPI:
    """Managing users (role admin): create, list, change, delete, unlock, revoke, reset TOTP."""

    def __init__(
        self, host: AdminHost, gate: Callable[[], AdminGate], on_user_created: UserCreated | None = None
    ) -> None:
        self._host = host
        self._gate = gate
        self._on_user_created = on_user_created
        self._notices: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        h, admin = self._host, Role.admin
        return [
            Route("/admin/users", guarded(h, self.create, admin), methods=["POST"]),
            Route("/admin/users", guarded(h, self.list_users, admin), methods=["GET"]),
            Route("/admin/users/{username}", guarded(h, self.get_user, admin), methods=["GET"]),
            Route("/admin/users/{username}", guarded(h, self.patch, admin), methods=["PATCH"]),
            Route("/admin/users/{username}", guarded(h, self.delete_user, admin), methods=["DELETE"]),
            Route("/admin/users/{username}/unlock", guarded(h, self.unlock, admin), methods=["POST"]),
            Route("/admin/users/{username}/revoke", guarded(h, self.revoke, admin), methods=["POST"]),
            Route("/admin/users/{username}/totp", guarded(h, self.reset_totp, admin), methods=["DELETE"]),
        ]

    async def _public(self, user: Record) -> Record:
        return public(user, await self._gate().users.locked_until(user["username"]))

    async def create(self, request: Request) -> Response:
        gate = self._gate()
        body = await _object(request, {"username", "password", "role"})
        username = check_username(body.get("username"))
        password = _strong(gate, body.get("password"), username)
        role = check_role(body.get("role"))
        if await gate.users.get(username) is not None:
            raise Conflict(f"a user named {username!r} exists", param="username", code="user_exists")
        user = await gate.users.put(
            {
                "username": username,
                "role": role.name,
                "password_hash": await gate.hasher.hash(password),
                "disabled": False,
                "totp_enabled": False,
                "created_by": request.state.actor.name,
            }
        )
        shown = await self._public(user)
        await self._host.audit(request, "users.create", f"users/{username}", after=shown)
        self._notify(username, role.name, str(request.state.actor.name))
        return json_response(shown, 201)

    def _notify(self, username: str, role: str, actor: str) -> None:
        """``on_user_created`` in the background: the answer never waits for it or fails by it."""
        if self._on_user_created is None:
            return
        task = asyncio.create_task(_notice(self._on_user_created, username, role, actor))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def list_users(self, request: Request) -> Response:
        return json_response(
            {"object": "list", "data": [await self._public(u) for u in await self._gate().users.all()]}
        )

    async def get_user(self, request: Request) -> Response:
        return json_response(await self._public(await self._gate().users.require(request.path_params["username"])))

    async def patch(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(request.path_params["username"])
        body = await _object(request, {"role", "password", "disabled"})
        before = await self._public(user)
        changed = dict(user)
        if "role" in body:
            changed["role"] = check_role(body["role"]).name
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise InvalidRequest("disabled must be true or false", param="disabled", code="invalid_field")
            changed["disabled"] = body["disabled"]
        if "password" in body:
            password = _strong(gate, body["password"], str(user["username"]))
            changed["password_hash"] = await gate.hasher.hash(password)
        if changed != user:
            changed = await gate.users.put(await _end_sessions(gate, changed))
        after = await self._public(changed)
        await self._host.audit(
            request, "users.update", f"users/{user['username']}", before=before, after={**after, **_password_note(body)}
        )
        return json_response(after)

    async def delete_user(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(request.path_params["username"])
        await _end_sessions(gate, user)
        await gate.users.delete(user["username"])
        await self._host.audit(request, "users.delete", f"users/{user['username']}", before=public(user))
        return json_response({"username": user["username"], "deleted": True})

    async def unlock(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(request.path_params["username"])
        before = await self._public(user)
        await gate.users.clear_failures(user["username"])
        after = await self._public(user)
        await self._host.audit(request, "users.unlock", f"users/{user['username']}", before=before, after=after)
        return json_response(after)

    async def revoke(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(request.path_params["username"])
        await gate.users.put(await _end_sessions(gate, user))
        await self._host.audit(request, "users.revoke_sessions", f"users/{user['username']}")
        return json_response({"username": user["username"], "revoked": True})

    async def reset_totp(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(request.path_params["username"])
        before = await self._public(user)
        changed = await gate.users.put({**user, "totp": None, "totp_enabled": False, "totp_last_step": 0})
        after = await self._public(changed)
        await self._host.audit(request, "users.totp_reset", f"users/{user['username']}", before=before, after=after)
        return json_response(after)


class AccountAPI:
    """The caller's own account (role viewer; a user, not the master key, except
    for ``GET /admin/me``): who am I, TOTP enrolment, password change."""

    def __init__(self, host: AdminHost, gate: Callable[[], AdminGate]) -> None:
        self._host = host
        self._gate = gate

    def routes(self) -> list[Route]:
        h, viewer = self._host, Role.viewer
        return [
            Route("/admin/me", guarded(h, self.me, viewer), methods=["GET"]),
            Route("/admin/me/totp", guarded(h, self.enrol_totp, viewer), methods=["POST"]),
            Route("/admin/me/totp/confirm", guarded(h, self.confirm_totp, viewer), methods=["POST"]),
            Route("/admin/me/password", guarded(h, self.change_password, viewer), methods=["POST"]),
        ]

    async def me(self, request: Request) -> Response:
        actor: Actor = request.state.actor
        return json_response({"name": actor.name, "role": actor.role.name, "via": actor.via, "client": actor.client})

    async def enrol_totp(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(_user_actor(request).name)
        if user.get("totp_enabled"):
            raise Conflict("TOTP is already on for this account; an admin can reset it", code="totp_enabled")
        secret = totp.new_secret()
        await gate.users.put({**user, "totp": gate.users.seal_totp(user["username"], secret), "totp_last_step": 0})
        await self._host.audit(request, "users.totp_enrol", f"users/{user['username']}")
        return json_response({"secret": secret, "otpauth_uri": totp.otpauth_uri(secret, user["username"])})

    async def confirm_totp(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(_user_actor(request).name)
        code = (await _object(request, {"code"})).get("code")
        if not user.get("totp"):
            raise InvalidRequest("no TOTP enrolment to confirm: POST /admin/me/totp first", code="totp_not_enrolled")
        step = gate.users.totp_step(user, code) if isinstance(code, str) else None
        if step is not None and not await gate.users.claim_totp_step(user, step):
            step = None  # the same code confirmed twice at once: used once
        if step is None:
            raise InvalidRequest("the code does not match", param="code", code="invalid_totp")
        await gate.users.put({**gate.users.totp_used(user, step), "totp_enabled": True})
        await self._host.audit(request, "users.totp_confirm", f"users/{user['username']}")
        return json_response({"username": user["username"], "totp_enabled": True})

    async def change_password(self, request: Request) -> Response:
        gate = self._gate()
        user = await gate.users.require(_user_actor(request).name)
        body = await _object(request, {"current_password", "new_password"})
        current = body.get("current_password")
        if not isinstance(current, str) or not await gate.hasher.verify(current, user["password_hash"]):
            raise InvalidRequest("current_password is wrong", param="current_password", code="invalid_credentials")
        new = _strong(gate, body.get("new_password"), str(user["username"]), "new_password")
        await gate.users.put(await _end_sessions(gate, {**user, "password_hash": await gate.hasher.hash(new)}))
        await self._host.audit(request, "users.password_change", f"users/{user['username']}")
        return json_response({"username": user["username"], "password_changed": True})


def _password_note(body: dict[str, Any]) -> dict[str, Any]:
    return {"password_changed": True} if "password" in body else {}


async def _notice(on_user_created: UserCreated, username: str, role: str, actor: str) -> None:
    try:
        await on_user_created(username, role, actor)
    except Exception:
        log.exception("the notification of the new user %s failed", username)


def security_routes(
    host: AdminHost, gate: Callable[[], AdminGate], on_user_created: UserCreated | None = None
) -> list[Route]:
    """Every route of admin security: sessions, users and their grants, the caller's
    account, secrets and the audit log (``gate`` gives the app's gate once started;
    ``on_user_created`` is told of each new user)."""
    return [
        *LoginAPI(gate).routes(),
        *UsersAPI(host, gate, on_user_created).routes(),
        *GrantsAPI(host, gate).routes(),
        *AccountAPI(host, gate).routes(),
        *SecretsAPI(host, lambda: gate().secrets).routes(),
        *AuditAPI(host, lambda: gate().audit_log).routes(),
    ]
