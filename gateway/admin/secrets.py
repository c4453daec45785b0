"""Provider API keys and other secrets through the admin API, stored encrypted
(:mod:`gateway.security.secrets`: AES-256-GCM under ``GATEWAY_SECRETS_KEY``).

- ``PUT /admin/secrets/{name}`` ``{value}`` (admin) stores or replaces a secret
  and answers its reference ``secret:<name>`` and a masked ``hint``; never the value.
- ``GET /admin/secrets`` and ``GET /admin/secrets/{name}`` (operator): names,
  references, hints and timestamps.
- ``DELETE /admin/secrets/{name}`` (admin).

No answer, log line or audit record holds a value: the audit record has the
same public view as the answer.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response, read_json
from gateway.errors import InvalidRequest, NotFound
from gateway.security.roles import Role
from gateway.security.secrets import SecretStore


class SecretsAPI:
    def __init__(self, host: AdminHost, store: Callable[[], SecretStore]) -> None:
        self._host = host
        self._store = store

    def routes(self) -> list[Route]:
        h = self._host
        return [
            Route("/admin/secrets", guarded(h, self.list_secrets, Role.operator), methods=["GET"]),
            Route("/admin/secrets/{name}", guarded(h, self.get_secret, Role.operator), methods=["GET"]),
            Route("/admin/secrets/{name}", guarded(h, self.put_secret, Role.admin), methods=["PUT"]),
            Route("/admin/secrets/{name}", guarded(h, self.delete_secret, Role.admin), methods=["DELETE"]),
        ]

    async def list_secrets(self, request: Request) -> Response:
        return json_response({"object": "list", "data": await self._store().all()})

    async def get_secret(self, request: Request) -> Response:
        return json_response(await self._store().describe(request.path_params["name"]))

    async def put_secret(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"value"} or not isinstance(body["value"], str):
            raise InvalidRequest('the body must be {"value": "<the secret>"}', param="value", code="invalid_field")
        store, name = self._store(), request.path_params["name"]
        existed = await store.exists(name)
        await store.put_secret(name, body["value"])
        shown = await store.describe(name)
        await self._host.audit(request, "secrets.put", f"secrets/{name}", after=shown)
        return json_response(shown, 200 if existed else 201)

    async def delete_secret(self, request: Request) -> Response:
        store, name = self._store(), request.path_params["name"]
        before = await store.describe(name)
        if not await store.delete(name):
            raise NotFound(f"no secret named {name!r}", code="secret_not_found")
        await self._host.audit(request, "secrets.delete", f"secrets/{name}", before=before)
        return json_response({"name": name, "deleted": True})
