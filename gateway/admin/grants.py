"""Temporary role grants (role admin): a user's role raised until a given time.

- ``POST /admin/users/{username}/grants`` ``{role, expires_in_s | expires_at, reason}``
  -> 201 the grant (``role`` ``operator`` or ``admin``, above the user's own; ``expires_at``
  epoch seconds or ISO 8601 with its offset; at most 90 days ahead);
- ``GET /admin/users/{username}/grants`` -> the user's grants, expired ones included
  (``active`` says which hold now), and the ``effective_role``;
- ``DELETE /admin/users/{username}/grants/{grant_id}`` revokes one (404 ``grant_not_found``).

The role is evaluated at each request (gateway/admin/gate.py), so a grant applies from the
next request and lapses by itself at its expiry; a revocation applies at once. Each grant
and revocation is in the audit log (``users.grant``, ``users.grant_revoke``).
The record format: gateway/security/grants.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.gate import AdminGate
from gateway.admin.keys import AdminHost, guarded, json_response, read_json
from gateway.errors import InvalidRequest, NotFound
from gateway.security import grants
from gateway.security.roles import Role

FIELDS = {"role", "expires_in_s", "expires_at", "reason"}


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0], code="invalid_field")
    return body


class GrantsAPI:
    def __init__(self, host: AdminHost, gate: Callable[[], AdminGate], *, clock: Callable[[], float] = time.time):
        self._host = host
        self._gate = gate
        self._clock = clock

    def routes(self) -> list[Route]:
        h, admin = self._host, Role.admin
        path = "/admin/users/{username}/grants"
        return [
            Route(path, guarded(h, self.create, admin), methods=["POST"]),
            Route(path, guarded(h, self.list_grants, admin), methods=["GET"]),
            Route(path + "/{grant_id}", guarded(h, self.revoke, admin), methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        gate, now = self._gate(), self._clock()
        user = await gate.users.require(request.path_params["username"])
        grant = grants.new_grant(user, await _body(request), actor=request.state.actor.name, now=now)
        await gate.users.put(grants.with_grant(user, grant, now))
        shown = grants.shown(grant, now)
        await self._host.audit(request, "users.grant", f"users/{user['username']}", after=shown)
        return json_response(shown, 201)

    async def list_grants(self, request: Request) -> Response:
        now = self._clock()
        user = await self._gate().users.require(request.path_params["username"])
        data = [grants.shown(g, now) for g in grants.grants_of(user)]
        return json_response(
            {
                "object": "list",
                "username": user["username"],
                "role": user["role"],
                "effective_role": grants.effective_role(user, now).name,
                "data": data,
            }
        )

    async def revoke(self, request: Request) -> Response:
        gate, now = self._gate(), self._clock()
        user = await gate.users.require(request.path_params["username"])
        changed, grant = grants.without_grant(user, request.path_params["grant_id"])
        if grant is None:
            raise NotFound(
                f"{user['username']} has no grant {request.path_params['grant_id']!r}", code="grant_not_found"
            )
        await gate.users.put(changed)
        shown = grants.shown(grant, now)
        await self._host.audit(request, "users.grant_revoke", f"users/{user['username']}", before=shown)
        return json_response({**shown, "revoked": True})
