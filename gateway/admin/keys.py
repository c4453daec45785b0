"""Admin API for client keys and teams (Starlette routes; reads need the viewer
role, key writes operator, team writes admin; every write is audited).

``POST /admin/keys`` answers 201 with the record and, this once, ``key``.
``DELETE /admin/keys/{id}`` revokes (the record stays, for audit); ``POST
/admin/keys/{id}/rotate`` issues a new secret for the same id. Teams: ``POST``
creates (409 ``team_exists`` naming the id when it exists: nothing is replaced),
``PATCH`` edits, ``DELETE`` removes. Every invalid field
gets a 400 that names it; unknown aliases in ``models`` are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.access import Actor
from gateway.admin.model_bodies import Conflict
from gateway.dialects import bounded_json
from gateway.errors import BackendDegraded, GatewayError, InvalidRequest, NotFound, PermissionDenied
from gateway.observability.logs import audit, client_address
from gateway.policies.keys import KeyFields, KeyStore, TeamFields, editable, parse_body, public
from gateway.security.roles import Role
from gateway.server.asgi import TOO_LARGE, Scope, declared_too_large, request_limits
from gateway.state.base import BackendUnavailable, Record

Handler = Callable[[Request], Awaitable[Response]]


class AdminHost(Protocol):
    """What the admin routes need from the app."""

    @property
    def keys(self) -> KeyStore: ...

    def aliases(self) -> set[str]: ...

    def priority_classes(self) -> list[str]: ...

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor: ...

    async def audit(
        self, request: Request, action: str, target: str, *, before: Any = None, after: Any = None
    ) -> None: ...


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(err: GatewayError) -> Response:
    return Response(
        orjson.dumps(err.to_body()), status_code=err.http_status, media_type="application/json", headers=err.headers
    )


def guarded(host: AdminHost, work: Callable[[Request], Awaitable[Response]], role: Role = Role.admin) -> Handler:
    """For ``role`` and above (the actor is left in ``request.state.actor``), with every
    GatewayError answered in the OpenAI error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            request.state.actor = await host.require_admin(request.scope, role)
            return await work(request)
        except GatewayError as err:
            if err.http_status in (401, 403):
                admin_event(request, "admin.denied", logging.WARNING, reason=err.code, method=request.method)
            return error_response(err)
        except BackendUnavailable:
            return error_response(BackendDegraded("the state backend is unreachable; try again shortly"))

    return endpoint


def admin_event(request: Request, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """A ``gateway.audit`` log line for an admin request (observability/logs.py)."""
    actor = getattr(request.state, "actor", None)
    who = actor.name if isinstance(actor, Actor) else None
    audit(event, level, actor=who, client=client_address(request.scope), path=request.url.path, **fields)


async def read_json(request: Request) -> Any:
    """The body as JSON (None when empty), within the request's limits (gateway/server/asgi.py
    ``BoundedRequests``): 413 past ``server.max_admin_body_bytes``, 400 ``json_too_deep``
    past ``server.max_json_depth``, 400 ``invalid_json`` for anything else that is not JSON."""
    limits = request_limits(request.scope)
    refusal = declared_too_large(request.scope, limits.body_bytes)
    if refusal is not None:  # also without BoundedRequests in front: never read an announced oversize
        limits.refused(TOO_LARGE)
        raise refusal
    raw = await request.body()
    if not raw:
        return None
    try:
        return bounded_json.loads(raw, limits.json_depth)
    except InvalidRequest as err:
        if err.code == bounded_json.TOO_DEEP:
            limits.refused(err.code)
        else:
            err = InvalidRequest("the request body is not valid JSON", param="body", code="invalid_json")
        raise err from None


class KeysAPI:
    def __init__(self, host: AdminHost) -> None:
        self._host = host
        # one team creation at a time in this process: the existence check and the
        # write cannot interleave with another creation's (replicas: see docs/configuration.md)
        self._team_writes = asyncio.Lock()

    def routes(self) -> list[Route]:
        g = self._guard
        viewer, operator, admin = Role.viewer, Role.operator, Role.admin  # the matrix: docs/security.md
        return [
            Route("/admin/keys", g(self.create_key, operator), methods=["POST"]),
            Route("/admin/keys", g(self.list_keys, viewer), methods=["GET"]),
            Route("/admin/keys/{id}", g(self.get_key, viewer), methods=["GET"]),
            Route("/admin/keys/{id}", g(self.patch_key, operator), methods=["PATCH"]),
            Route("/admin/keys/{id}", g(self.revoke_key, operator), methods=["DELETE"]),
            Route("/admin/keys/{id}/rotate", g(self.rotate_key, operator), methods=["POST"]),
            Route("/admin/teams", g(self.create_team, admin), methods=["POST"]),
            Route("/admin/teams", g(self.list_teams, viewer), methods=["GET"]),
            Route("/admin/teams/{id}", g(self.get_team, viewer), methods=["GET"]),
            Route("/admin/teams/{id}", g(self.patch_team, admin), methods=["PATCH"]),
            Route("/admin/teams/{id}", g(self.delete_team, admin), methods=["DELETE"]),
        ]

    def _guard(self, work: Handler, role: Role) -> Handler:
        return guarded(self._host, work, role)

    def _check_models(self, fields: dict[str, Any]) -> None:
        unknown = [m for m in fields.get("models") or () if m not in self._host.aliases()]
        if unknown:
            raise InvalidRequest(f"unknown model alias(es): {', '.join(unknown)}", param="models", code="unknown_model")

    def _check_priority(self, fields: dict[str, Any]) -> None:
        classes = self._host.priority_classes()
        if fields.get("priority") is not None and fields["priority"] not in classes:
            raise InvalidRequest(
                f"priority {fields['priority']!r} is not a configured class (queue.classes: {', '.join(classes)})",
                param="priority",
                code="invalid_field",
            )

    async def _check_team(self, fields: dict[str, Any]) -> None:
        self._check_priority(fields)
        if fields.get("team"):
            await self._host.keys.get_team(fields["team"])  # NotFound names the team

    # --- keys ---------------------------------------------------------------

    async def create_key(self, request: Request) -> Response:
        fields = parse_body(KeyFields, await read_json(request))
        self._check_models(fields)
        await self._check_team(fields)
        record, token = await self._host.keys.create(fields)
        await self._host.audit(request, "keys.create", f"keys/{record['id']}", after={**public(record), "key": token})
        return json_response({**public(record), "key": token}, 201)

    async def list_keys(self, request: Request) -> Response:
        return json_response({"object": "list", "data": [public(r) for r in await self._host.keys.all()]})

    async def get_key(self, request: Request) -> Response:
        return json_response(public(await self._host.keys.get(request.path_params["id"])))

    async def patch_key(self, request: Request) -> Response:
        store = self._host.keys
        current = await store.get(request.path_params["id"])
        changes = await read_json(request)
        if not isinstance(changes, dict):
            raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
        fields = parse_body(KeyFields, {**editable(KeyFields, current), **changes})
        self._check_models(fields)
        await self._check_team(fields)
        record = await store.update(current["id"], fields)
        await self._host.audit(
            request, "keys.update", f"keys/{current['id']}", before=public(current), after=public(record)
        )
        return json_response(public(record))

    async def revoke_key(self, request: Request) -> Response:
        before = public(await self._host.keys.get(request.path_params["id"]))
        record = await self._host.keys.revoke(request.path_params["id"])
        await self._host.audit(request, "keys.revoke", f"keys/{record['id']}", before=before, after=public(record))
        return json_response(public(record))

    async def rotate_key(self, request: Request) -> Response:
        before = public(await self._host.keys.get(request.path_params["id"]))
        record, token = await self._host.keys.rotate(request.path_params["id"])
        after = {**public(record), "key": token}
        await self._host.audit(request, "keys.rotate", f"keys/{record['id']}", before=before, after=after)
        return json_response({**public(record), "key": token})

    # --- teams --------------------------------------------------------------

    async def create_team(self, request: Request) -> Response:
        fields = parse_body(TeamFields, await read_json(request))
        self._check_priority(fields)
        self._check_models(fields)
        async with self._team_writes:
            if await self._team_stored(fields["id"]):
                raise Conflict(
                    f"team {fields['id']!r} exists; PATCH /admin/teams/{fields['id']} changes it",
                    param="id",
                    code="team_exists",
                )
            record = await self._host.keys.put_team(fields)
        await self._host.audit(request, "teams.create", f"teams/{record['id']}", after=record)
        return json_response(record, 201)

    async def _team_stored(self, team_id: str) -> bool:
        """Whether the backend holds the team now (not the request path's cached view)."""
        try:
            await self._host.keys.get_team(team_id)
        except NotFound:
            return False
        return True

    async def list_teams(self, request: Request) -> Response:
        return json_response({"object": "list", "data": await self._host.keys.list_teams()})

    async def get_team(self, request: Request) -> Response:
        return json_response(await self._host.keys.get_team(request.path_params["id"]))

    async def patch_team(self, request: Request) -> Response:
        store = self._host.keys
        current: Record = await store.get_team(request.path_params["id"])
        changes = await read_json(request)
        if not isinstance(changes, dict):
            raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
        if "id" in changes and changes["id"] != current["id"]:
            raise InvalidRequest("a team's id cannot change", param="id", code="invalid_field")
        fields = parse_body(TeamFields, {**editable(TeamFields, current), **changes})
        self._check_priority(fields)
        self._check_models(fields)
        record = await store.put_team(fields)
        await self._host.audit(request, "teams.update", f"teams/{current['id']}", before=current, after=record)
        return json_response(record)

    async def delete_team(self, request: Request) -> Response:
        before = await self._host.keys.get_team(request.path_params["id"])
        await self._host.keys.delete_team(request.path_params["id"])
        await self._host.audit(request, "teams.delete", f"teams/{request.path_params['id']}", before=before)
        return json_response({"id": request.path_params["id"], "deleted": True})


def admin_only() -> PermissionDenied:
    return PermissionDenied("the admin API needs the master key", code="admin_only")
