"""The bodies of ``/admin/models``: one alias in the config file's schema plus
its ``name``, parsed, checked for secrets, masked and merged.

What a body may hold beyond the config schema: ``name``, ``disabled``, and
the read-only fields a GET adds (``source``, ``active``, ``updated_at``,
``updated_by``), which are ignored on input so a GET body posts back as is.

Secrets. A deployment's ``api_key``, and every header whose name looks like
a credential (it contains ``auth``, ``key``, ``token``, ``secret``,
``cookie`` or ``password``), is one of:

- ``${VAR}``: resolved from the environment when the config is built, like
  the file's. ``${VAR}`` (in any field) may name only the environment
  variables the config file's ``models`` section already references (in any
  string or ``requires_env``), so an admin cannot make the gateway read, or
  send upstream, any other variable of its environment;
- ``secret:<name>``: a secret stored encrypted (``PUT /admin/secrets/{name}``,
  :mod:`gateway.security.secrets`), opened when the config is built;
- a literal key: sealed into the secrets store (``model.<alias>.<n>.<field>``)
  and replaced by its ``secret:`` reference before anything is stored, so the
  models table never holds a key in clear (400 when ``GATEWAY_SECRETS_KEY`` is
  not set). A literal mixing text with ``${...}`` is refused.

GET shows both kinds of reference as written and masks anything else
(``****`` plus the last 4 characters of a long value); a masked value sent
back means "unchanged" and is replaced by the current value of the same
deployment (same ``id``, else same position).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.admin.model_store import secret_fields
from gateway.config.loader import env_references
from gateway.errors import GatewayError, InvalidRequest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
READ_ONLY = ("source", "active", "updated_at", "updated_by")
MASK = "****"
_REFERENCE_RE = re.compile(r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|secret:[A-Za-z0-9][A-Za-z0-9._-]{0,99})$")
_SECRET_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]")


class Conflict(GatewayError):
    """409: the change contradicts the current state (exists, defined in the file...)."""

    status = 409
    type = "invalid_request_error"
    default_code = "conflict"


@dataclass(frozen=True, slots=True)
class ModelBody:
    name: str | None
    spec: dict[str, Any]
    """Only the config-schema fields (validated later, by the config loader)."""
    disabled: bool | None


def split_body(body: Any) -> ModelBody:
    """Separate ``name`` and ``disabled`` from the config fields; 400 for a body
    that is not an object or a bad ``name``/``disabled``."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
    spec = {k: v for k, v in body.items() if k not in ("name", "disabled", *READ_ONLY)}
    name = body.get("name")
    if name is not None:
        check_name(name)
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise InvalidRequest("disabled must be true or false", param="disabled", code="invalid_field")
    return ModelBody(name, spec, disabled)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(
            "name must be 1-128 characters: letters, digits, '.', '_', '-', '/' (starting with a letter or digit)",
            param="name",
            code="invalid_field",
        )
    return name


# --- secrets --------------------------------------------------------------------


def mask(value: str) -> str:
    return MASK + value[-4:] if len(value) >= 16 else MASK


def _shown(value: Any) -> Any:
    """A secret field's value as GET shows it."""
    if value is None or (isinstance(value, str) and _REFERENCE_RE.match(value)):
        return value
    return mask(str(value))


def masked(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy fit to show: secrets that are not a plain ``${VAR}`` masked."""
    out = copy.deepcopy(spec)
    for _, container, field in secret_fields(out):
        container[field] = _shown(container[field])
    return out


def _counterpart(current: dict[str, Any] | None, index: int, dep: dict[str, Any]) -> dict[str, Any] | None:
    deployments = (current or {}).get("deployments")
    if not isinstance(deployments, list):
        return None
    if dep.get("id") is not None:
        return next((d for d in deployments if isinstance(d, dict) and d.get("id") == dep["id"]), None)
    found = deployments[index] if index < len(deployments) else None
    return found if isinstance(found, dict) else None


def unmask(spec: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """``spec`` with each masked value put back to the current one it masks;
    400 when it masks nothing current."""
    out = copy.deepcopy(spec)
    deployments = out.get("deployments")
    for i, dep in enumerate(deployments if isinstance(deployments, list) else ()):
        if not isinstance(dep, dict):
            continue
        old = _counterpart(current, i, dep) or {}
        old_headers = old.get("headers") if isinstance(old.get("headers"), dict) else {}
        headers = dep.get("headers")
        pairs: list[tuple[str, dict[str, Any], str, Any]] = [(f"deployments[{i}].api_key", dep, "api_key", old)]
        if isinstance(headers, dict):
            pairs += [(f"deployments[{i}].headers.{h}", headers, h, old_headers) for h in headers]
        for path, container, field, before in pairs:
            value = container.get(field)
            if not (isinstance(value, str) and value.startswith(MASK)):
                continue
            prior = before.get(field) if isinstance(before, dict) else None
            if prior is None or _shown(prior) != value:
                raise InvalidRequest(
                    f"{path}: a masked value that matches no current secret of this deployment; "
                    "send the full value, ${VAR} or secret:<name>",
                    param=path,
                    code="invalid_field",
                )
            container[field] = prior
    return out


def check_secrets(spec: dict[str, Any], allowed_env: set[str]) -> None:
    """Refuse a literal secret and any ``${VAR}`` outside ``allowed_env``,
    naming the field (see the module docstring)."""
    for path, value in _strings(spec, ""):
        for name in sorted(env_references(value) - allowed_env):
            allowed = ", ".join(sorted(allowed_env)) or "none"
            raise InvalidRequest(
                f"{path}: ${{{name}}} is not allowed: the admin API may reference only the environment "
                f"variables the config file's models use ({allowed})",
                param=path,
                code="env_not_allowed",
            )
    for name in _requires_env(spec):
        if name not in allowed_env:
            raise InvalidRequest(
                f"requires_env: {name!r} is not an environment variable the config file's models use",
                param="requires_env",
                code="env_not_allowed",
            )
    for path, _, _, value in literal_secrets(spec):
        if "${" in value:
            raise InvalidRequest(
                f"{path}: mixes text with ${{...}}: send exactly ${{VAR}}, secret:<name> or the literal key",
                param=path,
                code="invalid_field",
            )


def literal_secrets(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str]]:
    """(body path, container, field, value) of each secret given in clear."""
    out = []
    for path, container, field in secret_fields(spec):
        value = container[field]
        if value is not None and not (isinstance(value, str) and _REFERENCE_RE.match(value)):
            out.append((path, container, field, str(value)))
    return out


def secret_name(alias: str, path: str) -> str:
    """The secrets-store name a literal of ``alias`` at ``path`` is sealed under."""
    name = _SECRET_NAME_BAD.sub("_", f"model.{alias}.{path}")
    if len(name) > 100:
        name = name[:91] + "." + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def secret_refs(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, str]]:
    """(body path, container, field, reference) of each ``secret:`` reference."""
    return [
        (path, container, field, container[field])
        for path, container, field in secret_fields(spec)
        if isinstance(container[field], str) and container[field].startswith("secret:")
    ]


def allowed_env(file_models: Any) -> set[str]:
    """The variables the config file's ``models`` section references."""
    names = env_references(file_models)
    if isinstance(file_models, dict):
        for spec in file_models.values():
            names |= set(_requires_env(spec))
    return names


def _requires_env(spec: Any) -> list[str]:
    needs = spec.get("requires_env") if isinstance(spec, dict) else None
    return [n for n in needs if isinstance(n, str)] if isinstance(needs, list) else []


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path or "(root)", value


# --- edits --------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def config_error(name: str, problems: list[str], *, conflict: bool = False) -> GatewayError:
    """The config loader's problems with alias ``name`` as one error: 400
    ``invalid_model`` (409 ``config_conflict`` when the body is fine but the
    change breaks another alias), ``param`` the first bad path within the body."""
    first = problems[0] if problems else ""
    path = first.split(": ", 1)[0] if ": " in first else ""
    prefix = f"models.{name}"
    if path == prefix:
        param: str | None = "body"
    elif path.startswith((prefix + ".", prefix + "[")):
        param = path[len(prefix) :].lstrip(".")
    else:
        param = path or None
    message = "invalid model: " + "; ".join(problems)
    if conflict:
        return Conflict(message, param=param, code="config_conflict")
    return InvalidRequest(message, param=param, code="invalid_model")
