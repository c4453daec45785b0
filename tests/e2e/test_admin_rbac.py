"""Every admin route, walked with every role: the master key, admin, operator
and viewer users' access tokens, a garbage token and no credential.

The routes are read from the app itself (every Starlette route under
``/admin``), so a route someone adds is walked too, and it must be listed in
the one role matrix, ``gateway.admin.access.ROUTE_ROLES``: a route missing
there, or a matrix entry with no route, fails the test. For each route and
credential: below the route's role -> 403 ``insufficient_role``; no or a
garbage credential -> 401; at or above it -> neither 401 nor 403 (nor a 500).
Path parameters name things that do not exist, so no write changes anything.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from gateway.admin.access import ROUTE_ROLES
from gateway.app.gateway_app import create_app
from gateway.config.loader import parse_config
from gateway.security.roles import Role
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess

PASSWORD = "rbac walk password 123"
_PARAM = re.compile(r"\{[^}]+\}")


def config(mock_url: str) -> str:
    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
admin: {{scrypt_n: 16384}}
models:
  chat: {{deployments: [{{provider: openai, model: mock-gpt, base_url: '{mock_url}/v1', api_key: k}}]}}
"""


def app_routes(text: str) -> set[str]:
    """``METHOD /path`` of every /admin route of an app built from ``text``."""
    app = create_app(parse_config(text, env={"GATEWAY_MASTER_KEY": MASTER_KEY}))
    found: set[str] = set()
    for route in app._other.routes:
        if isinstance(route, Route) and route.path.startswith("/admin"):
            found.update(f"{m} {route.path}" for m in route.methods or () if m != "HEAD")
        elif isinstance(route, Mount) and route.path.startswith("/admin"):
            found.add(f"GET {route.path}")
    return found


def error_code(resp: httpx.Response) -> str | None:
    if not resp.headers.get("content-type", "").startswith("application/json"):
        return None
    body = resp.json()
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else None


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    env = {"GATEWAY_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()}
    g = GatewayProcess(config(mock.url), Path(tmp_path_factory.mktemp("rbac")), extra_env=env)
    yield g
    g.stop()


def test_every_admin_route_is_in_the_matrix(mock: Mock) -> None:
    routes = app_routes(config(mock.url))
    assert len(routes) >= 30
    missing = sorted(routes - set(ROUTE_ROLES))
    assert not missing, f"admin routes with no entry in gateway/admin/access.py ROUTE_ROLES: {missing}"
    stale = sorted(set(ROUTE_ROLES) - routes)
    assert not stale, f"ROUTE_ROLES entries with no route in the app: {stale}"


def test_every_route_with_every_role(gw: GatewayProcess, mock: Mock) -> None:
    credentials: dict[str, tuple[str | None, Role | None]] = {
        "none": (None, None),
        "garbage": ("not-a-real-credential", None),
        "master": (MASTER_KEY, Role.admin),
    }
    for level in (Role.viewer, Role.operator, Role.admin):
        name = f"rbac-{level.name}"
        created = gw.http.post("/admin/users", json={"username": name, "password": PASSWORD, "role": level.name})
        assert created.status_code == 201, created.text
        logged = httpx.post(f"{gw.url}/admin/login", json={"username": name, "password": PASSWORD})
        credentials[level.name] = (logged.json()["access_token"], level)
    problems: list[str] = []
    walked = 0
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for key in sorted(app_routes(config(mock.url))):
            method, path = key.split(" ", 1)
            if key not in ROUTE_ROLES:
                problems.append(f"{key}: not in ROUTE_ROLES")
                continue
            need = ROUTE_ROLES[key]
            url = _PARAM.sub("rbac-missing", path)
            for who, (token, role) in credentials.items():
                headers = {"authorization": f"Bearer {token}"} if token else {}
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                resp = client.request(
                    method, url, content=body, headers={**headers, "content-type": "application/json"}
                )
                walked += 1
                code = error_code(resp)
                if need is None:
                    ok = resp.status_code not in (401, 403, 500)
                    want = "open: not 401/403"
                elif role is None:
                    ok = resp.status_code == 401
                    want = "401"
                elif role < need:
                    ok = resp.status_code == 403 and code == "insufficient_role"
                    want = "403 insufficient_role"
                else:
                    ok = resp.status_code not in (401, 403, 500)
                    want = "allowed: not 401/403/500"
                if not ok:
                    problems.append(f"{key} as {who}: got {resp.status_code} {code}, want {want}")
    assert walked >= 30 * 6
    assert not problems, "role matrix not enforced:\n" + "\n".join(problems)
