"""Admin API for model aliases at runtime, and config reload.

``GET /admin/models[/{alias}]`` shows each alias in the config file's schema
plus ``name``, ``disabled`` and read-only ``source`` (``config``, ``api``,
``api_override``), ``active`` (serving now), ``updated_at``/``updated_by``;
secrets masked. That body posts back as is.

Writes: ``POST /admin/models`` creates (409 when the alias exists), ``PUT
/admin/models/{alias}`` creates or replaces, ``PATCH`` merges (RFC 7386
JSON merge patch; a list such as ``deployments`` is replaced whole),
``POST .../disable`` and ``.../enable`` flip ``disabled``. ``DELETE`` removes
what the API stored: an alias that exists only in the API is gone; one
that overrides the config file's alias reverts to the file's definition; a
config-file alias with nothing stored cannot be deleted (409
``defined_in_config``: disable it, or remove it from the file).

Every change is validated by the config loader over the whole effective
configuration (the file plus every stored alias) before it is stored: a bad
body is a 400 naming the field (``deployments[0].weight``), a change that
breaks another alias (deleting the target of its ``fallbacks``) a 409. Then
it is stored, and applied on this replica before the answer; the others
follow within ``state.refresh_interval_s`` (see :mod:`gateway.admin.model_store`).

Roles: reads ``viewer``, enable/disable ``operator``, every other write and
``POST /admin/reload`` ``admin``.

The code: :class:`ModelsAPI` holds the routes and their handlers,
:class:`ModelViews` shows an alias as the API serves it, and
:class:`ModelChanges` carries one change through validation, sealing of
literal secrets, the store, this replica and the audit log.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response, read_json
from gateway.admin.model_bodies import (
    Conflict,
    allowed_env,
    check_name,
    check_secrets,
    config_error,
    literal_secrets,
    masked,
    merge_patch,
    secret_name,
    secret_refs,
    split_body,
    unmask,
)
from gateway.admin.model_store import SECRET_REF, ModelStore, Stored, StoredModel, now_iso
from gateway.config.loader import ConfigError, LoadedConfig
from gateway.config.upstream import base_url_problems
from gateway.errors import InvalidRequest, NotFound
from gateway.security.roles import Role
from gateway.security.secrets import SECRETS_KEY_ENV, SecretsNotConfigured, SecretStore


class ModelsHost(AdminHost, Protocol):
    """What these routes need from the app."""

    @property
    def file_config(self) -> LoadedConfig:
        """The config file alone (no stored aliases)."""
        ...

    @property
    def model_store(self) -> ModelStore: ...

    @property
    def secrets(self) -> SecretStore: ...

    async def check_models(self, stored: Stored) -> LoadedConfig:
        """The effective config with ``stored`` instead of the current table; raises ConfigError."""
        ...

    async def refresh_models(self) -> None:
        """Read the stored aliases and apply them now."""
        ...

    async def reload_config(self) -> list[str]:
        """Re-read the config file; its problems (none: applied)."""
        ...


def _refuse_addresses(name: str, loaded: LoadedConfig) -> None:
    """Early feedback: a deployment whose upstream the ``upstream`` rules refuse is not
    stored (requests to it would be refused at connect time anyway)."""
    spec = loaded.settings.models.get(name)
    bases = [dep.base_url for dep in spec.deployments] if spec is not None else []
    problems = base_url_problems(name, bases, loaded.settings.upstream)
    if problems:
        param = problems[0].split(": ", 1)[0].removeprefix(f"models.{name}.")
        raise InvalidRequest("refused upstream: " + "; ".join(problems), param=param, code="upstream_address_refused")


def _not_found(alias: str) -> NotFound:
    return NotFound(f"no model alias {alias!r}", code="model_not_found", param="alias")


def _same_name(alias: str, name: str | None) -> None:
    if name is not None and name != alias:
        raise InvalidRequest(
            f"name {name!r} differs from the alias in the path {alias!r}; an alias cannot be renamed",
            param="name",
            code="invalid_field",
        )


class ModelViews:
    """An alias as the API shows it: the stored definition over the file's,
    secrets masked, with its source and state."""

    __slots__ = ("_host",)

    def __init__(self, host: ModelsHost) -> None:
        self._host = host

    def file_models(self) -> dict[str, Any]:
        models = self._host.file_config.raw.get("models")
        return models if isinstance(models, dict) else {}

    def spec(self, name: str, stored: Stored) -> dict[str, Any] | None:
        """The alias's current definition (stored over file), or None."""
        model = stored.get(name)
        if model is not None and model.spec is not None:
            return model.spec
        spec = self.file_models().get(name)
        return spec if isinstance(spec, dict) else None

    def body(self, name: str, stored: Stored) -> dict[str, Any] | None:
        spec = self.spec(name, stored)
        if spec is None:
            return None
        model = stored.get(name)
        in_file = name in self.file_models()
        source = "config" if model is None or model.spec is None else "api_override" if in_file else "api"
        return {
            "name": name,
            **masked(spec),
            "disabled": bool(model and model.disabled),
            "source": source,
            "active": name in self._host.aliases(),
            "updated_at": model.updated_at if model else None,
            "updated_by": model.updated_by if model else None,
        }


class ModelChanges:
    """One change to the stored aliases: validated by the config loader over the
    whole effective configuration, literal secrets sealed, stored, applied on
    this replica, audited."""

    __slots__ = ("_host", "_views")

    def __init__(self, host: ModelsHost, views: ModelViews) -> None:
        self._host = host
        self._views = views

    async def save(
        self,
        request: Request,
        name: str,
        spec: dict[str, Any] | None,
        disabled: bool,
        stored: Stored,
        *,
        status: int = 200,
        edited: bool = True,
    ) -> Response:
        """Validate, seal literal secrets, store, apply here; ``edited``: ``spec``
        is new (its secrets are checked and sealed)."""
        if edited and spec is not None:
            spec = copy.deepcopy(spec)
            check_secrets(spec, allowed_env(self._views.file_models()))
        actor = request.state.actor
        model = StoredModel(name, spec, disabled, now_iso(), actor.name)
        store = self._host.model_store
        before = self._views.body(name, stored)
        if spec is None and not disabled:  # nothing left to store: back to the file's definition
            await self._validate(name, {k: v for k, v in stored.items() if k != name})
            if name in stored:
                await store.delete(name)
        else:
            loaded = await self._validate(name, {**stored, name: model})  # literal secrets checked in clear
            if edited and spec is not None:
                _refuse_addresses(name, loaded)
            if edited and spec is not None:
                await self._seal(name, spec)
            await store.put(model)
        await self._host.refresh_models()
        body = self._views.body(name, await store.all())
        action = "models.create" if before is None else "models.update"
        await self._host.audit(request, action, f"models/{name}", before=before, after=body)
        return json_response(body, status)

    async def delete(self, request: Request, name: str, stored: Stored) -> None:
        """Remove what the API stored for ``name`` (in ``stored``), and the secrets sealed for it."""
        store = self._host.model_store
        before = self._views.body(name, stored)
        await self._validate(name, {k: v for k, v in stored.items() if k != name}, conflict=True)
        await store.delete(name)
        await self._drop_sealed(name, stored[name].spec)
        await self._host.refresh_models()
        await self._host.audit(request, "models.delete", f"models/{name}", before=before, after=None)

    async def _validate(self, name: str, stored: Stored, *, conflict: bool = False) -> LoadedConfig:
        try:
            return await self._host.check_models(stored)
        except ConfigError as exc:
            mine = [p for p in exc.problems if p.startswith((f"models.{name}.", f"models.{name}[", f"models.{name}:"))]
            raise config_error(name, mine or exc.problems, conflict=conflict or not mine) from None

    async def _drop_sealed(self, name: str, spec: dict[str, Any] | None) -> None:
        """Delete the secrets :meth:`_seal` stored for ``name`` (not other references)."""
        for path, _, _, ref in secret_refs(spec or {}):
            if ref == SECRET_REF + secret_name(name, path):
                await self._host.secrets.delete(ref[len(SECRET_REF) :])

    async def _seal(self, name: str, spec: dict[str, Any]) -> None:
        """Put each literal secret of ``spec`` into the secrets store and its
        reference in its place (``spec`` is changed)."""
        for path, container, field, value in literal_secrets(spec):
            try:
                container[field] = await self._host.secrets.put_secret(secret_name(name, path), value)
            except SecretsNotConfigured:
                raise InvalidRequest(
                    f"{path}: a literal key is stored encrypted, which needs {SECRETS_KEY_ENV} on every replica; "
                    "set it, or send a ${VAR} reference or secret:<name>",
                    param=path,
                    code="secrets_not_configured",
                ) from None


class ModelsAPI:
    def __init__(self, host: ModelsHost) -> None:
        self._host = host
        self._views = ModelViews(host)
        self._changes = ModelChanges(host, self._views)

    def routes(self) -> list[Route]:
        h = self._host
        reads, ops, writes = Role.viewer, Role.operator, Role.admin
        return [
            Route("/admin/models", guarded(h, self.list_models, role=reads), methods=["GET"]),
            Route("/admin/models", guarded(h, self.create, role=writes), methods=["POST"]),
            Route("/admin/models/{alias:path}/disable", guarded(h, self.disable, role=ops), methods=["POST"]),
            Route("/admin/models/{alias:path}/enable", guarded(h, self.enable, role=ops), methods=["POST"]),
            Route("/admin/models/{alias:path}", guarded(h, self.get, role=reads), methods=["GET"]),
            Route("/admin/models/{alias:path}", guarded(h, self.replace, role=writes), methods=["PUT"]),
            Route("/admin/models/{alias:path}", guarded(h, self.patch, role=writes), methods=["PATCH"]),
            Route("/admin/models/{alias:path}", guarded(h, self.delete, role=writes), methods=["DELETE"]),
            Route("/admin/reload", guarded(h, self.reload, role=writes), methods=["POST"]),
        ]

    # --- reads ----------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        stored = await self._host.model_store.all()
        names = sorted({*self._views.file_models(), *stored})
        bodies = [b for b in (self._views.body(n, stored) for n in names) if b is not None]
        return json_response({"object": "list", "data": bodies})

    async def get(self, request: Request) -> Response:
        alias = request.path_params["alias"]
        body = self._views.body(alias, await self._host.model_store.all())
        if body is None:
            raise _not_found(alias)
        return json_response(body)

    # --- writes ---------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = split_body(await read_json(request))
        if body.name is None:
            raise InvalidRequest("name is required", param="name", code="missing_field")
        stored = await self._host.model_store.all()
        if self._views.spec(body.name, stored) is not None:
            raise Conflict(
                f"model alias {body.name!r} exists; PUT or PATCH /admin/models/{body.name} changes it",
                param="name",
                code="model_exists",
            )
        return await self._changes.save(request, body.name, body.spec, bool(body.disabled), stored, status=201)

    async def replace(self, request: Request) -> Response:
        alias = check_name(request.path_params["alias"])
        body = split_body(await read_json(request))
        _same_name(alias, body.name)
        stored = await self._host.model_store.all()
        current = self._views.spec(alias, stored)
        disabled = body.disabled if body.disabled is not None else bool(stored.get(alias) and stored[alias].disabled)
        status = 200 if current is not None else 201
        return await self._changes.save(request, alias, unmask(body.spec, current), disabled, stored, status=status)

    async def patch(self, request: Request) -> Response:
        alias = request.path_params["alias"]
        body = split_body(await read_json(request))
        _same_name(alias, body.name)
        stored = await self._host.model_store.all()
        current = self._views.spec(alias, stored)
        if current is None:
            raise _not_found(alias)
        model = stored.get(alias)
        disabled = body.disabled if body.disabled is not None else bool(model and model.disabled)
        if not body.spec:  # only `disabled`: leave the definition where it is
            return await self._changes.save(
                request, alias, model.spec if model else None, disabled, stored, edited=False
            )
        return await self._changes.save(
            request, alias, merge_patch(current, unmask(body.spec, current)), disabled, stored
        )

    async def disable(self, request: Request) -> Response:
        return await self._set_disabled(request, True)

    async def enable(self, request: Request) -> Response:
        return await self._set_disabled(request, False)

    async def _set_disabled(self, request: Request, disabled: bool) -> Response:
        if (await request.body()).strip() not in (b"", b"{}"):
            action = "disable" if disabled else "enable"
            raise InvalidRequest(
                f"{action} takes no request body: the alias is in the path; PATCH /admin/models/{{alias}} "
                "changes fields",
                param="body",
                code="unexpected_body",
            )
        alias = request.path_params["alias"]
        stored = await self._host.model_store.all()
        if self._views.spec(alias, stored) is None:
            raise _not_found(alias)
        model = stored.get(alias)
        return await self._changes.save(request, alias, model.spec if model else None, disabled, stored, edited=False)

    async def delete(self, request: Request) -> Response:
        alias = request.path_params["alias"]
        stored = await self._host.model_store.all()
        in_file = alias in self._views.file_models()
        if alias not in stored:
            if in_file:
                raise Conflict(
                    f"model alias {alias!r} is defined in the config file: disable it "
                    f"(POST /admin/models/{alias}/disable) or remove it from the file",
                    param="alias",
                    code="defined_in_config",
                )
            raise _not_found(alias)
        await self._changes.delete(request, alias, stored)
        return json_response({"name": alias, "deleted": True, "reverted_to_config": in_file})

    async def reload(self, request: Request) -> Response:
        problems = await self._host.reload_config()
        if problems:
            raise Conflict("config reload rejected: " + "; ".join(problems), code="config_invalid")
        loaded = self._host.file_config
        return json_response({"reloaded": True, "source": loaded.source, "models": sorted(self._host.aliases())})
