"""Governance through a real gateway process: the password policy at every place a password
is set, temporary role grants that lapse by themselves (no restart), the idle session
time-out at refresh and with access tokens, and last_login_at."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config

PASSWORD = "Governance-test-7"
IDLE_S = 4
ADMIN_SETTINGS = f"admin: {{scrypt_n: 16384, session_idle_timeout_s: {IDLE_S}}}\n"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    return body


def make_user(gw: GatewayProcess, username: str, role: str) -> None:
    resp = gw.http.post("/admin/users", json={"username": username, "password": PASSWORD, "role": role})
    assert resp.status_code == 201, resp.text


def login(gw: GatewayProcess, username: str) -> dict[str, Any]:
    resp = httpx.post(f"{gw.url}/admin/login", json={"username": username, "password": PASSWORD}, timeout=30)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url) + ADMIN_SETTINGS, Path(tmp_path_factory.mktemp("governance")))
    yield g
    g.stop()


WEAK = [
    ("Short-1a", "length"),
    ("only lower case words", "classes"),
    ("My-Policy-Victim-7", "username"),
    ("Password123!", "common"),
    ("Welcome2025!", "common"),
]


@pytest.mark.parametrize(("password", "rule"), WEAK)
def test_weak_passwords_are_refused_at_creation(gw: GatewayProcess, password: str, rule: str) -> None:
    resp = gw.http.post("/admin/users", json={"username": "policy-victim", "password": password, "role": "viewer"})
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert (err["code"], err["param"]) == ("weak_password", "password") and f"(rule {rule})" in err["message"]
    assert password not in resp.text, "the password is never echoed"
    assert gw.http.get("/admin/users/policy-victim").status_code == 404


def test_weak_passwords_are_refused_at_every_change(gw: GatewayProcess) -> None:
    make_user(gw, "changer2", "viewer")
    access = login(gw, "changer2")["access_token"]
    for password, rule in WEAK:
        patched = gw.http.patch(
            "/admin/users/changer2", json={"password": password.replace("Policy-Victim", "Changer2")}
        )
        assert patched.status_code == 400 and error_of(patched)["code"] == "weak_password", patched.text
        assert error_of(patched)["param"] == "password"
        own = httpx.post(
            f"{gw.url}/admin/me/password",
            json={"current_password": PASSWORD, "new_password": password.replace("Policy-Victim", "changer2")},
            headers=bearer(access),
        )
        assert own.status_code == 400, own.text
        assert (error_of(own)["code"], error_of(own)["param"]) == ("weak_password", "new_password")
        assert f"(rule {rule})" in error_of(own)["message"]
    strong = httpx.post(
        f"{gw.url}/admin/me/password",
        json={"current_password": PASSWORD, "new_password": "Another-strong-one-8"},
        headers=bearer(access),
    )
    assert strong.status_code == 200, strong.text


def test_last_login_at_is_set_at_each_login(gw: GatewayProcess) -> None:
    make_user(gw, "returning", "viewer")
    assert gw.http.get("/admin/users/returning").json()["last_login_at"] is None
    before = time.time()
    login(gw, "returning")
    shown = gw.http.get("/admin/users/returning").json()
    assert shown["last_login_at"] is not None and shown["last_login_at"] >= time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1)
    )


def test_a_grant_lapses_by_itself_without_a_restart(gw: GatewayProcess) -> None:
    make_user(gw, "temp-admin", "viewer")
    access = login(gw, "temp-admin")["access_token"]
    denied = httpx.get(f"{gw.url}/admin/users", headers=bearer(access))
    assert denied.status_code == 403 and error_of(denied)["code"] == "insufficient_role"
    granted = gw.http.post(
        "/admin/users/temp-admin/grants", json={"role": "admin", "expires_in_s": 5, "reason": "incident 7"}
    )
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    assert (grant["role"], grant["granted_by"], grant["reason"], grant["active"]) == (
        "admin",
        "master",
        "incident 7",
        True,
    )
    assert httpx.get(f"{gw.url}/admin/users", headers=bearer(access)).status_code == 200, "the same token, raised"
    assert httpx.get(f"{gw.url}/admin/me", headers=bearer(access)).json()["role"] == "admin"
    listed = gw.http.get("/admin/users/temp-admin/grants").json()
    assert listed["effective_role"] == "admin" and [g["id"] for g in listed["data"]] == [grant["id"]]
    lapsed = None
    for _ in range(100):  # the grant ends 5 s after it was made (time for the checks above); bounded at 10 s
        lapsed = httpx.get(f"{gw.url}/admin/users", headers=bearer(access))
        if lapsed.status_code == 403:
            break
        time.sleep(0.1)
    assert lapsed is not None and lapsed.status_code == 403 and error_of(lapsed)["code"] == "insufficient_role"
    after = gw.http.get("/admin/users/temp-admin/grants").json()
    assert after["effective_role"] == "viewer" and after["data"][0]["active"] is False
    assert gw.http.get("/admin/users/temp-admin").json()["effective_role"] == "viewer"


def test_a_revoked_grant_stops_at_once_and_both_are_audited(gw: GatewayProcess) -> None:
    make_user(gw, "temp-op", "viewer")
    access = login(gw, "temp-op")["access_token"]
    grant = gw.http.post(
        "/admin/users/temp-op/grants", json={"role": "operator", "expires_at": time.time() + 3600, "reason": "on call"}
    ).json()
    assert httpx.post(f"{gw.url}/admin/keys", json={"name": "by-temp-op"}, headers=bearer(access)).status_code == 201
    revoked = gw.http.delete(f"/admin/users/temp-op/grants/{grant['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    after = httpx.post(f"{gw.url}/admin/keys", json={"name": "by-temp-op-2"}, headers=bearer(access))
    assert after.status_code == 403 and error_of(after)["code"] == "insufficient_role"
    again = gw.http.delete(f"/admin/users/temp-op/grants/{grant['id']}")
    assert again.status_code == 404 and error_of(again)["code"] == "grant_not_found"
    audit = [
        r for r in gw.http.get("/admin/audit", params={"limit": 20}).json()["data"] if r["target"] == "users/temp-op"
    ]
    actions = [r["action"] for r in audit]
    assert actions.index("users.grant_revoke") < actions.index("users.grant"), actions
    assert next(r for r in audit if r["action"] == "users.grant")["after"]["reason"] == "on call"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/admin/users/nobody-here/grants", {"role": "admin", "expires_in_s": 60, "reason": "r"}, 404, None),
        ("/admin/users/grantee/grants", {"role": "viewer", "expires_in_s": 60, "reason": "r"}, 400, "role"),
        ("/admin/users/grantee/grants", {"role": "admin", "expires_in_s": 60}, 400, "reason"),
        ("/admin/users/grantee/grants", {"role": "admin", "reason": "r"}, 400, "expires_in_s"),
        ("/admin/users/grantee/grants", {"role": "admin", "expires_at": "soon", "reason": "r"}, 400, "expires_at"),
        ("/admin/users/grantee/grants", {"role": "admin", "expires_in_s": 60, "reason": "r", "x": 1}, 400, "x"),
        ("/admin/users/grantee/grants", [1], 400, "body"),
    ],
)
def test_bad_grants_are_refused(gw: GatewayProcess, path: str, body: Any, status: int, param: str | None) -> None:
    if gw.http.get("/admin/users/grantee").status_code == 404:
        make_user(gw, "grantee", "operator")
    resp = gw.http.post(path, json=body)
    assert resp.status_code == status, resp.text
    assert error_of(resp).get("param") == param
    if status == 400:
        assert gw.http.get("/admin/users/grantee/grants").json()["data"] == [], "nothing granted"


def test_only_admins_grant(gw: GatewayProcess) -> None:
    make_user(gw, "op-granter", "operator")
    access = login(gw, "op-granter")["access_token"]
    body = {"role": "admin", "expires_in_s": 60, "reason": "self-service"}
    resp = httpx.post(f"{gw.url}/admin/users/op-granter/grants", json=body, headers=bearer(access))
    assert resp.status_code == 403 and error_of(resp)["code"] == "insufficient_role"
    assert httpx.get(f"{gw.url}/admin/users/op-granter/grants", headers=bearer(access)).status_code == 403


def test_an_idle_session_ends(gw: GatewayProcess) -> None:
    make_user(gw, "idler", "viewer")
    pair = login(gw, "idler")
    time.sleep(IDLE_S * 0.55)  # each wait leaves 1.8 s for a loaded machine's delays
    assert httpx.get(f"{gw.url}/admin/me", headers=bearer(pair["access_token"])).status_code == 200  # a use
    time.sleep(IDLE_S * 0.55)  # 1.1 time-outs after login, 0.55 after the last use
    refreshed = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    time.sleep(IDLE_S + 0.5)
    idle = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert idle.status_code == 401 and error_of(idle)["code"] == "session_idle", idle.text
    gone = httpx.get(f"{gw.url}/admin/me", headers=bearer(fresh["access_token"]))
    assert gone.status_code == 401 and error_of(gone)["code"] == "session_revoked", "the access token ends with it"
    other = login(gw, "idler")
    time.sleep(IDLE_S + 0.5)
    stale = httpx.get(f"{gw.url}/admin/me", headers=bearer(other["access_token"]))
    assert stale.status_code == 401 and error_of(stale)["code"] == "session_idle"
