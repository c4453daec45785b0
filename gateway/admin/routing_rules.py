"""Admin API for the routing rules (``routing_rules``, docs/configuration.md "Routing rules").

``GET /admin/routing-rules`` (viewer): the rules in force as written (the stored set, or
the config file's), where they come from (``source``: ``api`` or ``config``), when and by
whom they were stored, the names of the rules the gateway applies (``in_force``: a rule
naming an alias that is switched off is left out) and the time windows holding now.

``PUT /admin/routing-rules`` (admin), body ``{"rules": [...]}``: the stored set, which
replaces the config file's ``routing_rules`` whole. It is validated by the config loader
over the whole effective configuration (file, stored models, these rules) before it is
stored: a bad rule is a 400 ``invalid_routing_rules`` whose ``param`` is its path in the
body (``rules[2].to``). ``${VAR}`` references are refused: a rule needs no environment.
``DELETE /admin/routing-rules`` (admin) reverts to the file's rules (404 when nothing is
stored; 409 when the file's rules no longer fit the stored models).

A change is stored with the models' version bump, applied on this replica before the
answer (a new service: its rule book and time windows), and on the others within
``state.refresh_interval_s`` (gateway/admin/model_store.py); every change is audited
(``routing_rules.update``, ``routing_rules.delete``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response, read_json
from gateway.admin.model_bodies import Conflict
from gateway.admin.model_store import ModelStore, StoredRules, now_iso
from gateway.config.loader import ConfigError, LoadedConfig
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.security.roles import Role
from gateway.server.service import Service

PATH = "/admin/routing-rules"
TARGET = "routing-rules"
FIELD = "routing_rules"


class RulesHost(AdminHost, Protocol):
    """What these routes need from the app."""

    @property
    def file_config(self) -> LoadedConfig: ...

    @property
    def model_store(self) -> ModelStore: ...

    @property
    def service(self) -> Service | None: ...

    async def check_rules(self, rules: StoredRules | None) -> LoadedConfig:
        """The configuration in force with ``rules`` (None: the file's); raises ConfigError."""
        ...

    async def refresh_models(self) -> None:
        """Read the stored models and rules and apply them now."""
        ...


def _env_references(value: Any, path: str) -> str | None:
    """The path of the first string holding ``${`` in ``value``, if any."""
    if isinstance(value, str):
        return path if "${" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _env_references(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
        if found is not None:
            return found
    return None


def _rules_of(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(
            'the request body must be a JSON object: {"rules": [...]}', param="body", code="invalid_json"
        )
    extra = sorted(set(body) - {"rules"})
    if extra:
        raise InvalidRequest(
            f'unknown field {extra[0]!r}: the body is {{"rules": [...]}}', param=extra[0], code="invalid_field"
        )
    rules = body.get("rules")
    if not isinstance(rules, list):
        raise InvalidRequest("rules must be a list of routing rules", param="rules", code="invalid_field")
    where = _env_references(rules, "rules")
    if where is not None:
        raise InvalidRequest(
            f"{where}: ${{...}} environment references are not allowed in stored routing rules",
            param=where,
            code="invalid_field",
        )
    return rules


def rules_error(problems: list[str], *, conflict: bool = False) -> GatewayError:
    """The loader's problems as one error; ``param`` the first bad path in the body
    (``routing_rules[2].to`` -> ``rules[2].to``)."""
    first = problems[0] if problems else ""
    path = first.split(": ", 1)[0] if ": " in first else ""
    param = "rules" + path[len(FIELD) :] if path.startswith(FIELD) else path or None
    message = "invalid routing rules: " + "; ".join(problems)
    if conflict:
        return Conflict(message, param=param, code="config_conflict")
    return InvalidRequest(message, param=param, code="invalid_routing_rules")


class RoutingRulesAPI:
    def __init__(self, host: RulesHost) -> None:
        self._host = host

    def routes(self) -> list[Route]:
        h = self._host
        return [
            Route(PATH, guarded(h, self.get, role=Role.viewer), methods=["GET"]),
            Route(PATH, guarded(h, self.replace, role=Role.admin), methods=["PUT"]),
            Route(PATH, guarded(h, self.delete, role=Role.admin), methods=["DELETE"]),
        ]

    def _body(self, stored: StoredRules | None) -> dict[str, Any]:
        service = self._host.service
        in_force = [r.name for r in service.rules.rules] if service is not None else []
        windows = service.rules.active_windows(datetime.now(UTC)) if service is not None else []
        if stored is not None:
            rules, source = stored.rules, "api"
        else:
            found = self._host.file_config.raw.get(FIELD)
            rules, source = (found if isinstance(found, list) else []), "config"
        return {
            "rules": _jsonable(rules),
            "source": source,
            "updated_at": stored.updated_at if stored else None,
            "updated_by": stored.updated_by if stored else None,
            "in_force": in_force,
            "active_windows": windows,
        }

    async def _validate(self, rules: StoredRules | None, *, conflict: bool = False) -> None:
        try:
            await self._host.check_rules(rules)
        except ConfigError as exc:
            mine = [p for p in exc.problems if p.startswith(FIELD)]
            raise rules_error(mine or exc.problems, conflict=conflict or not mine) from None

    async def get(self, request: Request) -> Response:
        return json_response(self._body(await self._host.model_store.rules()))

    async def replace(self, request: Request) -> Response:
        rules = StoredRules(_rules_of(await read_json(request)), now_iso(), request.state.actor.name)
        store = self._host.model_store
        before = self._body(await store.rules())
        await self._validate(rules)
        await store.put_rules(rules)
        await self._host.refresh_models()
        after = self._body(rules)
        await self._host.audit(request, "routing_rules.update", TARGET, before=before["rules"], after=rules.rules)
        return json_response(after)

    async def delete(self, request: Request) -> Response:
        store = self._host.model_store
        stored = await store.rules()
        if stored is None:
            raise NotFound(
                "no routing rules are stored: the config file's are in force", code="routing_rules_not_stored"
            )
        await self._validate(None, conflict=True)
        await store.delete_rules()
        await self._host.refresh_models()
        await self._host.audit(request, "routing_rules.delete", TARGET, before=stored.rules, after=None)
        return json_response({**self._body(None), "deleted": True, "reverted_to_config": True})


def _jsonable(value: Any) -> Any:
    """``value`` with every mapping key a string, as JSON has them (YAML lets a file write
    a time window's deployment index as a number: ``deployments: {1: {priority: -1}}``)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
