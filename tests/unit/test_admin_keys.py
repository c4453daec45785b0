"""gateway.admin.keys: the keys and teams admin API, mounted in a Starlette
app over a real KeyStore on the embedded backend, driven in process."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.admin.access import MASTER_ACTOR, Actor
from gateway.admin.keys import KeysAPI, admin_only
from gateway.policies.keys import KeyStore
from gateway.security.roles import Role
from gateway.server.asgi import Scope, header
from gateway.state.base import BackendUnavailable, Record
from gateway.state.embedded import EmbeddedBackend

ADMIN = {"x-admin": "yes"}


class Host:
    """The AdminHost the routes need: a key store, the aliases, an admin check."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self.audited: list[tuple[str, str, Any, Any]] = []

    @property
    def keys(self) -> KeyStore:
        return self._store

    def aliases(self) -> set[str]:
        return {"chat"}

    def priority_classes(self) -> list[str]:
        return ["high", "normal", "low"]

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor:
        if header(scope, b"x-admin") != b"yes":
            raise admin_only()
        return MASTER_ACTOR

    async def audit(self, request: Request, action: str, target: str, *, before: Any = None, after: Any = None) -> None:
        self.audited.append((action, target, before, after))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "admin" / "gateway.db"


@pytest.fixture
def client(db_path: Path) -> Iterator[TestClient]:
    backend = EmbeddedBackend(str(db_path))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = Starlette(routes=KeysAPI(Host(KeyStore(backend))).routes(), lifespan=lifespan)
    with TestClient(app, headers=ADMIN) as c:
        yield c


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def _create(client: TestClient, **fields: Any) -> dict[str, Any]:
    resp = client.post("/admin/keys", json={"name": "svc", **fields})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


# --- keys ------------------------------------------------------------------------------------------------


def test_create_returns_the_key_once(client: TestClient, db_path: Path) -> None:
    created = _create(client, rpm=10, models=["chat"])
    key = created["key"]
    assert key.startswith("sk-gw-") and len(key) == 46
    assert "hash" not in created
    assert created["name"] == "svc" and created["rpm"] == 10 and created["models"] == ["chat"]
    assert created["key_hint"] == key[:10] + "..." + key[-4:]
    assert created["revoked_at"] is None and created["enabled"] is True

    got = client.get(f"/admin/keys/{created['id']}")
    assert got.status_code == 200
    listed = client.get("/admin/keys")
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    for resp in (got, listed):
        assert key not in resp.text and key[6:] not in resp.text
        assert hashlib.sha256(key.encode()).hexdigest() not in resp.text
    record = got.json()
    assert "key" not in record and "hash" not in record
    assert {k: v for k, v in created.items() if k != "key"} == record
    assert [r["id"] for r in listed.json()["data"]] == [created["id"]]
    assert all("hash" not in r and "key" not in r for r in listed.json()["data"])


def test_create_validates(client: TestClient) -> None:
    err = _error(client.post("/admin/keys", json={"name": "a", "rpm": 0}), 400)
    assert err["param"] == "rpm" and err["code"] == "invalid_field" and err["type"] == "invalid_request_error"
    err = _error(client.post("/admin/keys", json={"name": "a", "hash": "x"}), 400)
    assert err["param"] == "hash" and "unknown field" in err["message"]
    err = _error(client.post("/admin/keys", json={"name": "a", "models": ["chat", "gpt-9"]}), 400)
    assert err["param"] == "models" and err["code"] == "unknown_model" and "gpt-9" in err["message"]
    err = _error(client.post("/admin/keys", json={"name": "a", "team": "nope"}), 404)
    assert err["code"] == "team_not_found"
    err = _error(client.post("/admin/keys", json={"name": "a", "expires_at": "2030-01-01T00:00:00"}), 400)
    assert err["param"] == "expires_at"
    assert client.get("/admin/keys").json()["data"] == []  # nothing was created


@pytest.mark.parametrize("body", [b"{not json", b'{"name": "a",}', b"\xff\xfe"])
def test_malformed_json(client: TestClient, body: bytes) -> None:
    err = _error(client.post("/admin/keys", content=body, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json" and err["param"] == "body"


@pytest.mark.parametrize("body", [b"", b"[]", b'"name"', b"null"])
def test_body_not_an_object(client: TestClient, body: bytes) -> None:
    err = _error(client.post("/admin/keys", content=body), 400)
    assert err["code"] == "invalid_json"


def test_patch_validates_the_merged_record(client: TestClient) -> None:
    created = _create(client, rpm=10, tpm=500)
    kid = created["id"]
    resp = client.patch(f"/admin/keys/{kid}", json={"rpm": 20, "owner": "alice"})
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["rpm"] == 20 and patched["tpm"] == 500 and patched["owner"] == "alice"  # merged
    assert patched["name"] == "svc" and patched["id"] == kid and "hash" not in patched and "key" not in patched
    assert patched["created_at"] == created["created_at"] and patched["key_hint"] == created["key_hint"]

    err = _error(client.patch(f"/admin/keys/{kid}", json={"rpm": -1}), 400)
    assert err["param"] == "rpm" and err["code"] == "invalid_field"
    err = _error(client.patch(f"/admin/keys/{kid}", json={"name": None}), 400)
    assert err["param"] == "name"
    err = _error(client.patch(f"/admin/keys/{kid}", json={"models": ["gpt-9"]}), 400)
    assert err["code"] == "unknown_model" and err["param"] == "models"
    err = _error(client.patch(f"/admin/keys/{kid}", json={"id": "key_other"}), 400)
    assert err["param"] == "id" and "unknown field" in err["message"]
    err = _error(client.patch(f"/admin/keys/{kid}", json={"team": "nope"}), 404)
    assert err["code"] == "team_not_found"
    err = _error(client.patch(f"/admin/keys/{kid}", content=b"[1]"), 400)
    assert err["code"] == "invalid_json"
    err = _error(client.patch(f"/admin/keys/{kid}", content=b"{oops"), 400)
    assert err["code"] == "invalid_json"
    # none of the refused patches changed anything
    assert client.get(f"/admin/keys/{kid}").json() == patched


def test_patch_keeps_a_stored_expiry_valid(client: TestClient) -> None:
    created = _create(client, expires_at="2030-01-01T09:00:00+09:00")
    resp = client.patch(f"/admin/keys/{created['id']}", json={"rpm": 3})
    assert resp.status_code == 200, resp.text
    assert resp.json()["expires_at"] == created["expires_at"]


def test_unknown_key_404(client: TestClient) -> None:
    for resp in (
        client.get("/admin/keys/key_nope"),
        client.patch("/admin/keys/key_nope", json={"rpm": 1}),
        client.delete("/admin/keys/key_nope"),
        client.post("/admin/keys/key_nope/rotate"),
    ):
        err = _error(resp, 404)
        assert err["code"] == "key_not_found"


def test_delete_revokes_and_keeps_the_record(client: TestClient) -> None:
    created = _create(client)
    resp = client.delete(f"/admin/keys/{created['id']}")
    assert resp.status_code == 200
    revoked = resp.json()
    assert revoked["enabled"] is False and revoked["revoked_at"] and "hash" not in revoked
    assert client.get(f"/admin/keys/{created['id']}").json()["revoked_at"] == revoked["revoked_at"]


def test_rotate_returns_a_new_key_for_the_same_id(client: TestClient) -> None:
    created = _create(client)
    resp = client.post(f"/admin/keys/{created['id']}/rotate")
    assert resp.status_code == 200
    rotated = resp.json()
    new = rotated["key"]
    assert new != created["key"] and new.startswith("sk-gw-")
    assert rotated["id"] == created["id"] and "hash" not in rotated
    assert rotated["key_hint"] == new[:10] + "..." + new[-4:]
    record = client.get(f"/admin/keys/{created['id']}").json()
    assert record["key_hint"] == rotated["key_hint"] and "key" not in record
    assert len(client.get("/admin/keys").json()["data"]) == 1


# --- teams -------------------------------------------------------------------------------------------


def test_team_lifecycle(client: TestClient) -> None:
    resp = client.post("/admin/teams", json={"id": "t1", "name": "Team", "models": ["chat"], "rpm": 5})
    assert resp.status_code == 201, resp.text
    team = resp.json()
    assert team["id"] == "t1" and team["rpm"] == 5 and "updated_at" in team
    assert client.get("/admin/teams/t1").json()["name"] == "Team"
    assert [t["id"] for t in client.get("/admin/teams").json()["data"]] == ["t1"]

    key = _create(client, team="t1")
    assert key["team"] == "t1"

    patched = client.patch("/admin/teams/t1", json={"tpm": 100})
    assert patched.status_code == 200, patched.text
    assert patched.json()["tpm"] == 100 and patched.json()["rpm"] == 5 and patched.json()["name"] == "Team"
    assert client.patch("/admin/teams/t1", json={"id": "t1", "rpm": 6}).json()["rpm"] == 6  # same id is fine

    resp = client.delete("/admin/teams/t1")
    assert resp.status_code == 200 and resp.json() == {"id": "t1", "deleted": True}
    assert _error(client.get("/admin/teams/t1"), 404)["code"] == "team_not_found"


def test_creating_an_existing_team_is_409_and_replaces_nothing(client: TestClient) -> None:
    assert client.post("/admin/teams", json={"id": "t1", "name": "First", "rpm": 5}).status_code == 201
    err = _error(client.post("/admin/teams", json={"id": "t1", "name": "Second"}), 409)
    assert (err["code"], err["param"], err["type"]) == ("team_exists", "id", "invalid_request_error")
    assert "'t1'" in err["message"] and "PATCH /admin/teams/t1" in err["message"]
    kept = client.get("/admin/teams/t1").json()
    assert (kept["name"], kept["rpm"]) == ("First", 5)
    # the update path: PATCH changes it, and only the fields given
    patched = client.patch("/admin/teams/t1", json={"name": "Second"}).json()
    assert (patched["name"], patched["rpm"]) == ("Second", 5)
    # a deleted team's id can be created again
    assert client.delete("/admin/teams/t1").status_code == 200
    again = client.post("/admin/teams", json={"id": "t1"})
    assert again.status_code == 201 and again.json()["rpm"] is None


def test_concurrent_creations_of_one_team_make_one(db_path: Path) -> None:
    backend = EmbeddedBackend(str(db_path))
    host = Host(KeyStore(backend))
    app = Starlette(routes=KeysAPI(host).routes())

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=ADMIN) as http:
            answers = await asyncio.gather(
                *(http.post("/admin/teams", json={"id": "t-race", "rpm": i + 1}) for i in range(8))
            )
        await backend.aclose()
        return sorted(a.status_code for a in answers)

    assert asyncio.run(race()) == [201] + [409] * 7
    assert [a[0] for a in host.audited] == ["teams.create"]


def test_team_id_cannot_change(client: TestClient) -> None:
    assert client.post("/admin/teams", json={"id": "t1"}).status_code == 201
    err = _error(client.patch("/admin/teams/t1", json={"id": "t2"}), 400)
    assert err["param"] == "id" and err["code"] == "invalid_field"
    assert _error(client.get("/admin/teams/t2"), 404)["code"] == "team_not_found"
    assert client.get("/admin/teams/t1").status_code == 200


def test_team_validation(client: TestClient) -> None:
    err = _error(client.post("/admin/teams", json={"id": "bad id"}), 400)
    assert err["param"] == "id"
    err = _error(client.post("/admin/teams", json={"id": "t1", "models": ["gpt-9"]}), 400)
    assert err["code"] == "unknown_model"
    assert client.post("/admin/teams", json={"id": "t1"}).status_code == 201
    err = _error(client.patch("/admin/teams/t1", json={"max_concurrent": 0}), 400)
    assert err["param"] == "max_concurrent"
    err = _error(client.patch("/admin/teams/t1", json={"models": ["gpt-9"]}), 400)
    assert err["code"] == "unknown_model"
    err = _error(client.patch("/admin/teams/t1", content=b"{"), 400)
    assert err["code"] == "invalid_json"


def test_missing_team_404(client: TestClient) -> None:
    for resp in (client.delete("/admin/teams/ghost"), client.patch("/admin/teams/ghost", json={"rpm": 1})):
        err = _error(resp, 404)
        assert err["code"] == "team_not_found"


# --- access --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/key_x"),
        ("PATCH", "/admin/keys/key_x"),
        ("DELETE", "/admin/keys/key_x"),
        ("POST", "/admin/keys/key_x/rotate"),
        ("POST", "/admin/teams"),
        ("GET", "/admin/teams"),
        ("GET", "/admin/teams/t1"),
        ("PATCH", "/admin/teams/t1"),
        ("DELETE", "/admin/teams/t1"),
    ],
)
def test_non_admin_is_403(client: TestClient, method: str, path: str) -> None:
    resp = client.request(method, path, headers={"x-admin": "no"}, json={"name": "a", "id": "t1"})
    err = _error(resp, 403)
    assert err["code"] == "admin_only" and err["type"] == "permission_error"


def test_non_admin_creates_nothing(client: TestClient) -> None:
    assert client.post("/admin/keys", json={"name": "a"}, headers={"x-admin": "nope"}).status_code == 403
    assert client.get("/admin/keys").json()["data"] == []


def test_backend_outage_is_a_503_not_a_bare_500(tmp_path: Path) -> None:
    class Down(EmbeddedBackend):
        async def scan(self, table: str) -> list[Record]:
            raise BackendUnavailable("down")

    backend = Down(str(tmp_path / "down.db"))
    app = Starlette(routes=KeysAPI(Host(KeyStore(backend))).routes())
    with TestClient(app, headers=ADMIN) as c:
        resp = c.get("/admin/keys")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "state_backend_unavailable"
