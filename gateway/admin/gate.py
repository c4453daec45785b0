"""The admin API's front door: who is calling, from where, with what role.

:meth:`AdminGate.require` (behind ``GatewayApp.require_admin`` and so behind
every ``guarded`` route) checks, in order:

1. the caller's address against ``admin.allow_ips`` (403 ``ip_not_allowed``);
   the address is the socket peer, or the last address in ``X-Forwarded-For``
   that is not one of ``admin.trusted_proxies`` when the peer is one of them.
   This is the only place ``X-Forwarded-For`` is read: the server runs with its
   own proxy-header handling off (``gateway serve``), so ``scope["client"]`` is
   always the socket's peer;
2. the bearer credential: the master key (an ``admin`` named ``master``), or a
   user's access token (401 ``invalid_token`` if forged, expired or revoked;
   the role is the user's role *now*, raised by their unexpired temporary grants
   (gateway/security/grants.py), so a demotion, a grant and its expiry apply at once;
   the token's session must not have ended or been idle too long). A
   client key is refused with 403 ``admin_only``; anything else is a 401;
3. the role: below the route's role is 403 ``insufficient_role``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from starlette.middleware.cors import CORSMiddleware

from gateway.admin.access import MASTER_ACTOR, Actor
from gateway.admin.audit import AuditLog
from gateway.config.operations import AdminSettings
from gateway.config.settings import Settings
from gateway.errors import AuthenticationFailed, GatewayError, PermissionDenied
from gateway.security import tokens
from gateway.security.accounts import UserStore
from gateway.security.grants import effective_role
from gateway.security.passwords import PasswordHasher
from gateway.security.roles import Role
from gateway.security.secrets import SecretBox, SecretStore
from gateway.security.sessions import Sessions
from gateway.server.asgi import ASGIApp, Scope, bearer_token, header
from gateway.state.base import StateBackend

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _within(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class LoginsNotConfigured(GatewayError):
    status: ClassVar[int] = 503
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "logins_not_configured"


class AdminGate:
    """Everything admin security keeps, built once per app (see ``GatewayApp.startup``)."""

    def __init__(
        self,
        settings: AdminSettings,
        *,
        users: UserStore,
        sessions: Sessions | None,
        audit: AuditLog,
        secrets: SecretStore,
        is_master: Callable[[Scope], bool],
        check_client_key: Callable[[Scope], Awaitable[Any]],
        count_login: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.users = users
        self.count_login = count_login
        """Counts each login attempt by outcome (``gateway_admin_login_attempts_total``)."""
        self.sessions = sessions
        self.audit_log = audit
        self.secrets = secrets
        self.hasher = PasswordHasher(settings.scrypt_n)
        self._is_master = is_master
        self._check_client_key = check_client_key
        self.configure(settings)

    def configure(self, settings: AdminSettings) -> None:
        """Apply (re)loaded settings: allow-list, proxies, lock-out, hash cost."""
        self.settings = settings
        self._allow = _networks(settings.allow_ips)
        self._proxies = _networks(settings.trusted_proxies)
        self.hasher.n = settings.scrypt_n
        if self.sessions is not None:
            self.sessions.access_ttl_s = settings.access_token_ttl_s
            self.sessions.refresh_ttl_s = settings.refresh_token_ttl_s
            self.sessions.idle_timeout_s = settings.session_idle_timeout_s

    def client_address(self, scope: Scope) -> str:
        peer = scope.get("client")
        address = str(peer[0]) if peer else ""
        if not self._proxies or not _within(address, self._proxies):
            return address
        forwarded = header(scope, b"x-forwarded-for")
        hops = [h.strip() for h in forwarded.decode("latin-1").split(",")] if forwarded else []
        for hop in reversed(hops):
            if hop and not _within(hop, self._proxies):
                return hop
        return address

    def check_address(self, scope: Scope) -> str:
        """The caller's address, if the allow-list lets it in."""
        address = self.client_address(scope)
        if self._allow and not _within(address, self._allow):
            raise PermissionDenied(f"the admin API is not open to {address or 'this address'}", code="ip_not_allowed")
        return address

    def require_sessions(self) -> Sessions:
        if self.sessions is None:
            raise LoginsNotConfigured("user logins are off: set GATEWAY_MASTER_KEY or GATEWAY_JWT_SECRET")
        return self.sessions

    async def require(self, scope: Scope, role: Role) -> Actor:
        address = self.check_address(scope)
        token = bearer_token(scope)
        if not token:
            raise AuthenticationFailed("no credential: send 'Authorization: Bearer <token>'", code="missing_api_key")
        if self._is_master(scope):
            actor = replace(MASTER_ACTOR, client=address)
        elif token.count(b".") == 2 and self.sessions is not None:
            actor = await self._user(token, address)
        else:
            await self._check_client_key(scope)  # 401 for a bad key, then:
            raise PermissionDenied("client keys cannot use the admin API", code="admin_only")
        if actor.role < role:
            raise PermissionDenied(
                f"this needs the {role.name} role; {actor.name} is {actor.role.name}", code="insufficient_role"
            )
        return actor

    async def _user(self, token: bytes, address: str) -> Actor:
        assert self.sessions is not None
        claims = self.sessions.access_claims(token)
        user = await self.users.get(str(claims.get("sub")))
        if user is None or user.get("disabled"):
            raise AuthenticationFailed("the access token's user no longer exists or is disabled", code="invalid_token")
        if float(claims["iat"]) < float(user.get("tokens_after") or 0):
            raise AuthenticationFailed("the access token was revoked; log in again", code="token_revoked")
        await self.sessions.use(claims)  # an ended or idle session: 401
        return Actor(user["username"], effective_role(user, time.time()), "token", address)


def build_gate(
    settings: Settings,
    backend: StateBackend,
    *,
    is_master: Callable[[Scope], bool],
    check_client_key: Callable[[Scope], Awaitable[Any]],
    env: Mapping[str, str],
    count_login: Callable[[str], None] = lambda outcome: None,
) -> AdminGate:
    """The gate for ``settings``: the secrets key from ``GATEWAY_SECRETS_KEY``
    (ValueError if malformed) and the token key from ``GATEWAY_JWT_SECRET`` or
    the master key (no key: logins are off, the master key still works)."""
    box = SecretBox.from_env(env)
    key = tokens.signing_key(env, settings.auth.master_key)
    admin = settings.admin
    sessions = (
        Sessions(backend, key, access_ttl_s=admin.access_token_ttl_s, refresh_ttl_s=admin.refresh_token_ttl_s)
        if key
        else None
    )
    return AdminGate(
        admin,
        users=UserStore(backend, box),
        sessions=sessions,
        audit=AuditLog(backend),
        secrets=SecretStore(backend, box),
        is_master=is_master,
        check_client_key=check_client_key,
        count_login=count_login,
    )


def admin_cors(app: ASGIApp, origins: list[str]) -> ASGIApp | None:
    """``app`` behind CORS for ``origins`` (None when there are none: CORS off,
    so a browser refuses cross-origin answers)."""
    if not origins:
        return None
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["authorization", "content-type", "x-request-id"],
        max_age=600,
    )
