"""GET /admin/audit's filters (actor, action, since, until) with its paging: over a
real gateway process (the answers, the 400s naming the parameter, a viewer refused),
and the same pages from the embedded, Redis and PostgreSQL backends' logs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.admin.access import Actor
from gateway.admin.audit import AuditLog
from gateway.admin.audit_query import parse_query, read_page
from gateway.security.roles import Role
from gateway.state.base import Record, StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.postgres import PostgresBackend
from gateway.state.postgres_client import Pool
from gateway.state.redis import RedisBackend
from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

PASSWORD = "Correct horse battery staple 9"
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url) + "admin: {scrypt_n: 16384}\n", Path(tmp_path_factory.mktemp("audit-f")))
    yield g
    g.stop()


def audit(gw: GatewayProcess, *, auth: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    return gw.http.get("/admin/audit", params=params, headers=auth)


def page(gw: GatewayProcess, **params: Any) -> dict[str, Any]:
    resp = gw.http.get("/admin/audit", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_filters_over_a_real_gateway(gw: GatewayProcess) -> None:
    started = time.time()
    for name in ("t-a", "t-b", "t-c"):
        assert gw.http.post("/admin/teams", json={"id": name}).status_code == 201
    assert gw.http.patch("/admin/teams/t-b", json={"rpm": 7}).status_code == 200
    assert gw.http.post("/admin/keys", json={"name": "k-audit"}).status_code == 201
    resp = gw.http.post("/admin/users", json={"username": "ann", "password": PASSWORD, "role": "admin"})
    assert resp.status_code == 201, resp.text
    login = httpx.post(f"{gw.url}/admin/login", json={"username": "ann", "password": PASSWORD}, timeout=30)
    ann = {"authorization": f"Bearer {login.json()['access_token']}"}
    assert httpx.post(f"{gw.url}/admin/teams", json={"id": "t-ann"}, headers=ann, timeout=10).status_code == 201

    teams = page(gw, action="teams")
    assert [r["target"] for r in teams["data"]] == ["teams/t-ann", "teams/t-b", "teams/t-c", "teams/t-b", "teams/t-a"]
    assert teams["next_before"] is None
    created = page(gw, action="teams.create", limit=2)
    assert [r["target"] for r in created["data"]] == ["teams/t-ann", "teams/t-c"]
    older = page(gw, action="teams.create", limit=2, before=created["next_before"])
    assert [r["target"] for r in older["data"]] == ["teams/t-b", "teams/t-a"]
    assert page(gw, action="teams.create", limit=2, before=older["next_before"]) == {
        "object": "list", "data": [], "next_before": None
    }  # fmt: skip
    by_ann = page(gw, actor="ann")["data"]
    assert [(r["action"], r["target"]) for r in by_ann] == [
        ("teams.create", "teams/t-ann"),
        ("auth.login", "users/ann"),
    ]
    assert page(gw, actor="ann", action="teams")["data"] == by_ann[:1]
    assert page(gw, actor="an")["data"] == []  # exact, not a substring
    assert page(gw, action="tea")["data"] == []  # a dotted prefix, not any prefix

    everything = page(gw, limit=1000)["data"]
    assert len(everything) >= 8
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 1))
    assert page(gw, since=iso, limit=1000)["data"] == [r for r in everything if r["ts"] >= started - 1]
    middle = everything[3]["ts"]
    window = page(gw, since=str(middle), until=str(middle), limit=1000)["data"]
    assert everything[3] in window and all(r["ts"] == middle for r in window)
    assert page(gw, until="2001-01-01T00:00:00Z")["data"] == []
    assert page(gw, since=str(int(time.time()) + 3600))["data"] == []

    viewer = gw.http.post("/admin/users", json={"username": "vic", "password": PASSWORD, "role": "viewer"})
    assert viewer.status_code == 201
    token = httpx.post(f"{gw.url}/admin/login", json={"username": "vic", "password": PASSWORD}, timeout=30)
    refused = audit(gw, auth={"authorization": f"Bearer {token.json()['access_token']}"}, actor="ann")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"actor": ""}, "actor"),
        ({"action": "keys create"}, "action"),
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "2027-01-02", "until": "2027-01-01"}, "until"),
        ({"limit": "0", "actor": "x"}, "limit"),
        ({"before": "x", "action": "keys"}, "before"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(gw: GatewayProcess, params: dict[str, str], param: str) -> None:
    resp = gw.http.get("/admin/audit", params=params)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "invalid_field")
    assert param in error["message"]


# --- the same pages from every state backend ------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RedisServer, PostgresServer]]:
    with RedisServer() as redis_server, PostgresServer() as pg:
        yield redis_server, pg


@pytest.fixture(params=["embedded", "redis", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, servers: tuple[RedisServer, PostgresServer]
) -> AsyncIterator[StateBackend]:
    redis_server, pg = servers
    b: StateBackend
    if request.param == "embedded":
        b = EmbeddedBackend(str(tmp_path / "gw.db"))
    elif request.param == "redis":
        b = RedisBackend(redis_server.url, socket_timeout_s=3.0)
    else:
        b = PostgresBackend(Pool(pg.url), RedisBackend(redis_server.url, socket_timeout_s=3.0))
    yield b
    await b.aclose()


async def test_every_backend_pages_the_same_matches(backend: StateBackend) -> None:
    """The same records and queries on each backend give the same pages (only the records
    written after this test's first one are compared, should a store hold older ones)."""
    now = [T0]
    log = AuditLog(backend, clock=lambda: now[0])
    first = await log.write(Actor("setup", Role.admin, "token"), "setup", "x/setup")
    for i in range(12):
        now[0] = T0 + 60 * i
        await log.write(
            Actor(("ann", "bob")[i % 2], Role.admin, "token"), ("keys.create", "teams.update")[i % 3 % 2], f"x/{i}"
        )
    ours = [r for r in await log.read(1000) if r["seq"] > first]
    assert [r["target"] for r in ours] == [f"x/{i}" for i in range(11, -1, -1)]
    for params in ({"actor": "ann"}, {"action": "keys"}, {"since": str(T0 + 120), "until": str(T0 + 480)}):
        rows: list[Record] = []
        before: int | None = None
        while True:
            query = parse_query({**params, "limit": "2", **({"before": str(before)} if before else {})})
            got, before = await read_page(log.read, query)
            rows += [r for r in got if r["seq"] > first]
            if before is None or before <= first:
                break
        assert rows == [r for r in ours if query.matches(r)], params
        assert rows, params
