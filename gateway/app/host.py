"""What the client handlers and the admin routes use of the app (:class:`AdminHostAPI`, a
part of :class:`gateway.app.gateway_app.GatewayApp`): authentication, the admin gate and its
audit log, the key store, the aliases served and the reports' sources."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from gateway.admin.access import Actor
from gateway.admin.audit import request_id
from gateway.admin.gate import AdminGate
from gateway.config.loader import LoadedConfig
from gateway.config.settings import Settings
from gateway.errors import AuthenticationFailed, Starting
from gateway.observability.logs import audit as audit_line
from gateway.observability.logs import client_address
from gateway.policies.auth import Authenticator, Principal
from gateway.policies.keys import KeyStore
from gateway.reports.builder import ReportSources
from gateway.reports.satisfaction import feedback_reader
from gateway.reports.store import StatsStore
from gateway.security.roles import Role
from gateway.security.secrets import SecretStore
from gateway.server.asgi import Scope, bearer_token, client_key
from gateway.server.service import Service
from gateway.state.base import StateBackend
from gateway.state.ledger import SpendLedger, read_totals


class AdminHostAPI:
    """The attributes below are the app's own."""

    service: Service | None
    backend: StateBackend | None
    ledger: SpendLedger | None
    stats: StatsStore | None
    _loaded: LoadedConfig
    _keys: KeyStore | None
    _auth: Authenticator | None
    _gate: AdminGate | None

    async def authenticate(self, scope: Scope) -> Principal:
        if self._auth is None:
            raise Starting()
        try:
            return await self._auth.authenticate(client_key(scope))
        except AuthenticationFailed as err:
            client = client_address(scope)
            audit_line("auth.failed", logging.WARNING, reason=err.code, client=client, path=scope["path"])
            raise

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor:
        """The actor behind an admin request, if its role is at least ``role``."""
        if self._auth is None:
            raise Starting()
        return await self.gate.require(scope, role)

    def _is_master(self, scope: Scope) -> bool:
        return self._auth is not None and self._auth.is_master(bearer_token(scope))

    @property
    def gate(self) -> AdminGate:
        if self._gate is None:
            raise Starting()
        return self._gate

    @property
    def secrets(self) -> SecretStore:
        """Encrypted secrets: ``put_secret(name, plaintext) -> ref``, ``get_secret(ref)``."""
        return self.gate.secrets

    async def audit(self, request: Request, action: str, target: str, *, before: Any = None, after: Any = None) -> None:
        """Append an audit record for an admin action (``request.state.actor`` is
        the actor; secret-named fields of ``before``/``after`` are masked):
        ``await host.audit(request, "models.create", f"models/{alias}", after=record)``."""
        actor, rid, client = request.state.actor, request_id(request), client_address(request.scope)
        audit_line(action, actor=actor.name, role=actor.role.name, client=client, target=target, request_id=rid)
        await self.gate.audit_log.write(
            request.state.actor, action, target, before=before, after=after, request_id=request_id(request)
        )

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            raise Starting()
        return self._keys

    def aliases(self) -> set[str]:
        return set(self.service.routes) if self.service is not None else set()

    def priority_classes(self) -> list[str]:
        return list(self._loaded.settings.queue.classes)

    def report_context(self) -> tuple[Settings, ReportSources]:
        """What the reports read: this process's statistics merged with the
        other replicas', spend (with this process's unwritten part), teams."""
        if self.stats is None:
            raise Starting()
        feedback = feedback_reader(self.backend) if self.backend is not None else None
        sources = ReportSources(self.stats, self._read_spend, self.keys.list_teams, self.aliases, feedback)
        return self._loaded.settings, sources

    async def _read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        assert self.ledger is not None
        totals = await read_totals(self.ledger, keys)
        return {k: totals.get(k, 0.0) for k in keys}
