"""Who may do what on the admin API: roles, the acting identity, and the
audit hook every admin route calls.

Roles are ordered: ``viewer`` < ``operator`` < ``admin``. A route names the
least role it needs; :meth:`AdminHost.require_admin` answers 401 for no or a bad
credential and 403 (``insufficient_role``) for a role below the one required.
The master key acts as an ``admin`` named ``master``.

:data:`ROUTE_ROLES` is the role matrix: every admin route, ``"METHOD /path"``
-> the least role it needs (``None``: open, no credential). A route declares
its role twice on purpose, in ``guarded(..., role=...)`` and here, and
``tests/e2e/test_admin_rbac.py`` walks every ``/admin`` route of the app with
every role and checks the two agree: a route missing here fails that test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.security.roles import Role


@dataclass(frozen=True, slots=True)
class Actor:
    """The identity behind an admin request."""

    name: str
    role: Role
    via: str  # "master_key" or "token"
    client: str = ""  # the caller's address, for the audit log


MASTER_ACTOR = Actor("master", Role.admin, "master_key")


_V, _O, _A = Role.viewer, Role.operator, Role.admin

ROUTE_ROLES: Mapping[str, Role | None] = MappingProxyType(
    {
        # sessions (open: the credential is in the body)
        "POST /admin/login": None,
        "POST /admin/refresh": None,
        "POST /admin/logout": None,
        # the caller's own account
        "GET /admin/me": _V,
        "POST /admin/me/totp": _V,
        "POST /admin/me/totp/confirm": _V,
        "POST /admin/me/password": _V,
        # users
        "POST /admin/users": _A,
        "GET /admin/users": _A,
        "GET /admin/users/{username}": _A,
        "PATCH /admin/users/{username}": _A,
        "DELETE /admin/users/{username}": _A,
        "POST /admin/users/{username}/unlock": _A,
        "POST /admin/users/{username}/revoke": _A,
        "DELETE /admin/users/{username}/totp": _A,
        "POST /admin/users/{username}/grants": _A,
        "GET /admin/users/{username}/grants": _A,
        "DELETE /admin/users/{username}/grants/{grant_id}": _A,
        # audit log
        "GET /admin/audit": _A,
        # secrets (provider API keys)
        "GET /admin/secrets": _O,
        "GET /admin/secrets/{name}": _O,
        "PUT /admin/secrets/{name}": _A,
        "DELETE /admin/secrets/{name}": _A,
        # client keys
        "POST /admin/keys": _O,
        "GET /admin/keys": _V,
        "GET /admin/keys/{id}": _V,
        "PATCH /admin/keys/{id}": _O,
        "DELETE /admin/keys/{id}": _O,
        "POST /admin/keys/{id}/rotate": _O,
        # teams
        "POST /admin/teams": _A,
        "GET /admin/teams": _V,
        "GET /admin/teams/{id}": _V,
        "PATCH /admin/teams/{id}": _A,
        "DELETE /admin/teams/{id}": _A,
        # routing state
        "GET /admin/deployments": _V,
        "GET /admin/status": _V,
        "POST /admin/jobs/{name}/run": _A,
        # models at runtime (gateway/admin/models.py)
        "GET /admin/models": _V,
        "POST /admin/models": _A,
        "GET /admin/models/{alias:path}": _V,
        "PUT /admin/models/{alias:path}": _A,
        "PATCH /admin/models/{alias:path}": _A,
        "DELETE /admin/models/{alias:path}": _A,
        "POST /admin/models/{alias:path}/disable": _O,
        "POST /admin/models/{alias:path}/enable": _O,
        "POST /admin/reload": _A,
        # routing rules at runtime (gateway/admin/routing_rules.py)
        "GET /admin/routing-rules": _V,
        "PUT /admin/routing-rules": _A,
        "DELETE /admin/routing-rules": _A,
        # connection tests and health (gateway/admin/health.py)
        "POST /admin/models/test-all": _O,
        "POST /admin/models/{alias:path}/test": _O,
        "GET /admin/health": _V,
        # usage, reports, the API description
        "GET /admin/usage": _V,
        "GET /admin/live": _V,
        "GET /admin/reports/{period}": _V,
        "GET /admin/openapi.json": _V,
    }
)
