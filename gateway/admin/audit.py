"""The audit log: one append-only record per admin action, newest first.

Every admin write (and every login, failed login, lock-out and logout) is
appended to the state backend's ``audit`` log (``StateBackend.append_log``:
SQLite AUTOINCREMENT rows or a Redis stream; nothing can edit or delete a
record through the gateway). A record says who (``actor``, ``role``, ``via``),
what (``action``, ``target``, ``before``, ``after``), when (``at``, ISO 8601
UTC, and ``ts``), from where (``client``: the caller's address) and the
``request_id``. Every field named like a secret (``key``, ``api_key``,
``password``, ``token``, ``secret``... see :mod:`gateway.security.masking`) is
masked to a short prefix and ``…`` at any depth before it is written.

Routes call the hook on the app::

    await host.audit(request, "keys.create", f"keys/{record['id']}", before=None, after=record)

``request.state.actor`` (set by ``guarded``) is the actor. The record is
written after the action succeeded; when the backend cannot take it the
request answers 503 (the action itself is done) and the failure is logged. ``GET /admin/audit``
(admin) lists records: ``?limit=`` (1-1000, default 100) and ``?before=<seq>``
to page back; the answer's ``next_before`` is the cursor of the next page. The
filters ``?actor=``, ``?action=``, ``?since=`` and ``?until=`` are applied by the
gateway (:mod:`gateway.admin.audit_query`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.access import Actor
from gateway.admin.audit_query import parse_query, read_page
from gateway.admin.keys import AdminHost, guarded, json_response
from gateway.security.masking import mask_fields
from gateway.security.roles import Role
from gateway.state.base import BackendUnavailable, Record, StateBackend

STREAM = "audit"
log = logging.getLogger("gateway")


class AuditLog:
    def __init__(self, backend: StateBackend, *, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._clock = clock

    async def write(
        self,
        actor: Actor,
        action: str,
        target: str,
        *,
        before: Any = None,
        after: Any = None,
        request_id: str | None = None,
    ) -> int:
        """Append one record (secrets masked); its sequence number."""
        now = self._clock()
        record: Record = {
            "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ts": now,
            "actor": actor.name,
            "role": None if actor.via == "password" else actor.role.name,
            "via": actor.via,
            "client": actor.client,
            "action": action,
            "target": target,
            "before": mask_fields(before),
            "after": mask_fields(after),
            "request_id": request_id,
        }
        try:
            return await self._backend.append_log(STREAM, record)
        except BackendUnavailable:
            log.error("audit record not written (state backend unreachable): %s %s by %s", action, target, actor.name)
            raise

    async def write_login(
        self, username: str, client: str, action: str, *, after: Any = None, request_id: str | None = None
    ) -> int:
        """A sign-in event (login, failure, lock-out, logout): the actor is the
        username given, with no role."""
        actor = Actor(username, Role.viewer, "password", client)
        return await self.write(actor, action, f"users/{username}", after=after, request_id=request_id)

    async def read(self, limit: int = 100, before: int | None = None) -> list[Record]:
        return await self._backend.read_log(STREAM, limit, before)


async def list_audit(log: AuditLog, request: Request) -> dict[str, Any]:
    rows, next_before = await read_page(log.read, parse_query(request.query_params))
    return {"object": "list", "data": rows, "next_before": next_before}


def request_id(request: Request) -> str | None:
    return request.headers.get("x-request-id")


class AuditAPI:
    """``GET /admin/audit`` (admin): the audit log, newest first."""

    def __init__(self, host: AdminHost, log: Callable[[], AuditLog]) -> None:
        self._host = host
        self._log = log

    def routes(self) -> list[Route]:
        return [Route("/admin/audit", guarded(self._host, self.list_records, Role.admin), methods=["GET"])]

    async def list_records(self, request: Request) -> Response:
        return json_response(await list_audit(self._log(), request))
