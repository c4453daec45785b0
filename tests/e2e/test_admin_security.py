"""Admin security over a real gateway process: users, login, refresh-token
rotation and reuse, revocation, lock-out (also across a restart and across two
replicas sharing Redis), TOTP, the IP allow-list, CORS, and the audit log."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.security import totp
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, clear_of_a_step_boundary, e2e_config
from tests.ports import free_port
from tests.redis_server import RedisServer

PASSWORD = "Correct horse battery staple 9"
ADMIN_SETTINGS = "admin: {scrypt_n: 16384, lockout: {max_failures: 3, window_s: 600, duration_s: 600}}\n"
SECRETS_ENV = {"GATEWAY_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def login(gw: GatewayProcess, username: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/admin/login", json={"username": username, "password": password, **extra}, timeout=30)


def make_user(gw: GatewayProcess, username: str, role: str) -> None:
    resp = gw.http.post("/admin/users", json={"username": username, "password": PASSWORD, "role": role})
    assert resp.status_code == 201, resp.text


def tokens(gw: GatewayProcess, username: str) -> dict[str, Any]:
    resp = login(gw, username)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def code_of(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["code"])


def stored_user(gw: GatewayProcess, username: str) -> str:
    """The user's record as the embedded state backend stored it (raw JSON text)."""
    db = sqlite3.connect(f"file:{gw.config_path.parent / 'state.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT json FROM records WHERE tbl = 'users' AND id = ?", (username,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"no stored user {username!r}"
    return str(row[0])


def audit_records(gw: GatewayProcess, **params: Any) -> list[dict[str, Any]]:
    resp = gw.http.get("/admin/audit", params=params)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["data"]
    return rows


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(
        e2e_config(mock.url) + ADMIN_SETTINGS, Path(tmp_path_factory.mktemp("admin-sec")), extra_env=SECRETS_ENV
    )
    yield g
    g.stop()


def test_users_login_and_roles(gw: GatewayProcess) -> None:
    make_user(gw, "op1", "operator")
    pair = tokens(gw, "op1")
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["expires_in"] == 3600 and pair["token_type"] == "Bearer"
    me = httpx.get(f"{gw.url}/admin/me", headers=bearer(pair["access_token"]))
    assert me.json() == {"name": "op1", "role": "operator", "via": "token", "client": "127.0.0.1"}
    assert httpx.get(f"{gw.url}/admin/keys", headers=bearer(pair["access_token"])).status_code == 200
    denied = httpx.get(f"{gw.url}/admin/users", headers=bearer(pair["access_token"]))
    assert denied.status_code == 403 and code_of(denied) == "insufficient_role"
    again = gw.http.post("/admin/users", json={"username": "op1", "password": PASSWORD, "role": "viewer"})
    assert again.status_code == 409 and code_of(again) == "user_exists"
    listed = gw.http.get("/admin/users").json()["data"]
    assert "op1" in [u["username"] for u in listed]
    assert all("password_hash" not in u and "totp" not in u for u in listed)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"username": "bad name", "password": PASSWORD, "role": "viewer"}, "username"),
        ({"username": "ok1", "password": "short", "role": "viewer"}, "password"),
        ({"username": "ok1", "password": PASSWORD, "role": "root"}, "role"),
        ({"username": "ok1", "password": PASSWORD, "role": "viewer", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
def test_create_user_refusals(gw: GatewayProcess, body: Any, param: str) -> None:
    resp = gw.http.post("/admin/users", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param, resp.text


def test_an_admin_token_creates_users(gw: GatewayProcess) -> None:
    make_user(gw, "boss", "admin")
    pair = tokens(gw, "boss")
    resp = httpx.post(
        f"{gw.url}/admin/users",
        json={"username": "made-by-boss", "password": PASSWORD, "role": "viewer"},
        headers=bearer(pair["access_token"]),
    )
    assert resp.status_code == 201, resp.text
    created = audit_records(gw, limit=1)[0]
    assert (created["action"], created["actor"], created["via"]) == ("users.create", "boss", "token")


def test_login_refusals(gw: GatewayProcess) -> None:
    make_user(gw, "refusals", "viewer")
    assert code_of(login(gw, "nobody-here")) == "invalid_credentials"
    bad = httpx.post(f"{gw.url}/admin/login", content=b"{nope")
    assert bad.status_code == 400 and code_of(bad) == "invalid_json"
    missing = httpx.post(f"{gw.url}/admin/login", json={"username": "refusals"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "password"
    assert login(gw, "refusals").status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_session(gw: GatewayProcess) -> None:
    make_user(gw, "rot", "viewer")
    first = tokens(gw, "rot")
    refreshed = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert httpx.get(f"{gw.url}/admin/me", headers=bearer(second["access_token"])).status_code == 200
    reused = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and code_of(reused) == "refresh_token_reused"
    after = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401 and code_of(after) == "session_revoked"
    assert audit_records(gw, limit=1)[0]["action"] == "auth.refresh_reused"
    as_access = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": second["access_token"]})
    assert as_access.status_code == 401 and code_of(as_access) == "invalid_refresh_token"
    refresh_as_bearer = httpx.get(f"{gw.url}/admin/me", headers=bearer(second["refresh_token"]))
    assert refresh_as_bearer.status_code == 401 and code_of(refresh_as_bearer) == "invalid_token"


def test_logout_and_revocation(gw: GatewayProcess) -> None:
    make_user(gw, "leaver", "operator")
    one, two = tokens(gw, "leaver"), tokens(gw, "leaver")
    out = httpx.post(f"{gw.url}/admin/logout", json={"refresh_token": one["refresh_token"]})
    assert out.status_code == 200 and out.json() == {"logged_out": True}
    gone = httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": one["refresh_token"]})
    assert gone.status_code == 401
    assert httpx.get(f"{gw.url}/admin/me", headers=bearer(two["access_token"])).status_code == 200
    time.sleep(0.01)  # the revocation instant must come after the token's iat (millisecond resolution)
    assert gw.http.post("/admin/users/leaver/revoke").status_code == 200
    revoked = httpx.get(f"{gw.url}/admin/me", headers=bearer(two["access_token"]))
    assert revoked.status_code == 401 and code_of(revoked) == "token_revoked"
    assert httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": two["refresh_token"]}).status_code == 401
    assert login(gw, "leaver").status_code == 200, "the user can log in again"


def test_demotion_and_disabling_apply_at_once(gw: GatewayProcess) -> None:
    make_user(gw, "demoted", "admin")
    pair = tokens(gw, "demoted")
    assert httpx.get(f"{gw.url}/admin/users", headers=bearer(pair["access_token"])).status_code == 200
    assert gw.http.patch("/admin/users/demoted", json={"role": "viewer"}).json()["role"] == "viewer"
    stale = httpx.get(f"{gw.url}/admin/users", headers=bearer(pair["access_token"]))
    assert stale.status_code == 401, "a changed user's tokens are revoked"
    fresh = tokens(gw, "demoted")
    assert httpx.get(f"{gw.url}/admin/users", headers=bearer(fresh["access_token"])).status_code == 403
    assert gw.http.patch("/admin/users/demoted", json={"disabled": True}).status_code == 200
    disabled = login(gw, "demoted")
    assert disabled.status_code == 403 and code_of(disabled) == "account_disabled"
    bad = gw.http.patch("/admin/users/demoted", json={"disabled": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "disabled"
    assert gw.http.delete("/admin/users/demoted").status_code == 200
    assert gw.http.get("/admin/users/demoted").status_code == 404


def test_lockout_stays_locked(gw: GatewayProcess) -> None:
    make_user(gw, "locky", "operator")
    for _ in range(2):
        wrong = login(gw, "locky", "wrong password here")
        assert wrong.status_code == 401 and code_of(wrong) == "invalid_credentials"
    locking = login(gw, "locky", "wrong password here")
    assert locking.status_code == 403 and code_of(locking) == "account_locked"
    assert int(locking.headers["retry-after"]) > 500
    for _ in range(3):
        right = login(gw, "locky")
        assert right.status_code == 403 and code_of(right) == "account_locked", "the right password is refused too"
    assert gw.http.get("/admin/users/locky").json()["locked_until"] is not None
    actions = [r["action"] for r in audit_records(gw, limit=5)]
    assert actions[:3] == ["auth.login_refused"] * 3 and "auth.login_failed" in actions
    assert gw.http.post("/admin/users/locky/unlock").status_code == 200
    assert login(gw, "locky").status_code == 200


def test_totp_required_when_enrolled(gw: GatewayProcess) -> None:
    make_user(gw, "twofa", "viewer")
    access = tokens(gw, "twofa")["access_token"]
    enrol = httpx.post(f"{gw.url}/admin/me/totp", headers=bearer(access))
    assert enrol.status_code == 200, enrol.text
    secret = enrol.json()["secret"]
    assert enrol.json()["otpauth_uri"].startswith("otpauth://totp/")
    assert login(gw, "twofa").status_code == 200, "not enforced before it is confirmed"
    wrong = httpx.post(f"{gw.url}/admin/me/totp/confirm", json={"code": "12345x"}, headers=bearer(access))
    assert wrong.status_code == 400 and code_of(wrong) == "invalid_totp"
    # The codes below are one step either side of `now`: the rest of this test (a dozen requests)
    # must run before the gateway's clock leaves now's step.
    now = clear_of_a_step_boundary(margin_s=12.0)
    confirm = httpx.post(
        f"{gw.url}/admin/me/totp/confirm", json={"code": totp.code_at(secret, now - 30)}, headers=bearer(access)
    )
    assert confirm.status_code == 200, confirm.text
    stored = stored_user(gw, "twofa")
    assert secret not in stored and secret.lower() not in stored, "the TOTP secret is not stored in plaintext"
    sealed = orjson.loads(stored)["totp"]
    assert set(sealed) == {"v", "kid", "nonce", "ct"}, "it is sealed with the secrets key"
    needed = login(gw, "twofa")
    assert needed.status_code == 401 and code_of(needed) == "totp_required"
    with_code = login(gw, "twofa", totp=totp.code_at(secret, now))
    assert with_code.status_code == 200, with_code.text
    replay = login(gw, "twofa", totp=totp.code_at(secret, now))
    assert replay.status_code == 401 and code_of(replay) == "invalid_credentials", "a code works once"
    # The next step's code sent by two logins at the same moment: one is accepted (two, not more:
    # each refusal is a failure, and this gateway locks at three).
    with ThreadPoolExecutor(2) as pool:
        at_once = list(pool.map(lambda _: login(gw, "twofa", totp=totp.code_at(secret, now + 30)), range(2)))
    assert sorted(r.status_code for r in at_once) == [200, 401], [r.text for r in at_once]
    assert gw.http.delete("/admin/users/twofa/totp").json()["totp_enabled"] is False
    assert login(gw, "twofa").status_code == 200
    master_me = gw.http.post("/admin/me/totp")
    assert master_me.status_code == 400 and code_of(master_me) == "not_a_user"


def test_client_keys_and_garbage_cannot_use_the_admin_api(gw: GatewayProcess) -> None:
    from tests.e2e.harness import LIMITED_KEY

    as_client = httpx.get(f"{gw.url}/admin/keys", headers=bearer(LIMITED_KEY))
    assert as_client.status_code == 403 and code_of(as_client) == "admin_only"
    for token in ("nonsense", "a.b.c", MASTER_KEY + "x"):
        resp = httpx.get(f"{gw.url}/admin/keys", headers=bearer(token))
        assert resp.status_code == 401, (token, resp.text)
    assert httpx.get(f"{gw.url}/admin/keys").status_code == 401


def test_cors_is_off_by_default(gw: GatewayProcess) -> None:
    origin = {"origin": "https://evil.example"}
    preflight = httpx.options(f"{gw.url}/admin/keys", headers={**origin, "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(f"{gw.url}/admin/keys", headers={**origin, **bearer(MASTER_KEY)})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_audit_log_newest_first_masked_and_paged(gw: GatewayProcess) -> None:
    created = gw.http.post("/admin/keys", json={"name": "audited"}).json()
    gw.http.delete(f"/admin/keys/{created['id']}")
    rows = audit_records(gw, limit=2)
    assert [r["action"] for r in rows] == ["keys.revoke", "keys.create"]
    assert [r["target"] for r in rows] == [f"keys/{created['id']}"] * 2
    revoke, create = rows
    assert revoke["before"]["revoked_at"] is None and revoke["after"]["revoked_at"] is not None
    assert create["after"]["key"] == created["key"][:4] + "…", "the new key is masked"
    assert created["key"] not in str(audit_records(gw, limit=1000))
    for r in rows:
        assert (r["actor"], r["role"], r["via"], r["client"]) == ("master", "admin", "master_key", "127.0.0.1")
        assert r["at"].endswith("Z") and r["seq"] > 0
    assert rows[0]["seq"] > rows[1]["seq"]
    older = audit_records(gw, limit=2, before=rows[1]["seq"])
    assert all(r["seq"] < rows[1]["seq"] for r in older)
    page = gw.http.get("/admin/audit", params={"limit": 2}).json()
    assert page["next_before"] == page["data"][-1]["seq"]
    for bad in ({"limit": "0"}, {"limit": "x"}, {"before": "-1"}, {"limit": "1001"}):
        resp = gw.http.get("/admin/audit", params=bad)
        assert resp.status_code == 400 and code_of(resp) == "invalid_field", bad


def test_team_writes_are_audited_with_before_and_after(gw: GatewayProcess) -> None:
    assert gw.http.post("/admin/teams", json={"id": "aud-team", "rpm": 10}).status_code == 201
    again = gw.http.post("/admin/teams", json={"id": "aud-team", "rpm": 99})  # refused: not a replace
    assert again.status_code == 409 and again.json()["error"]["code"] == "team_exists", again.text
    assert again.json()["error"]["param"] == "id" and "aud-team" in again.json()["error"]["message"]
    assert gw.http.patch("/admin/teams/aud-team", json={"rpm": 20}).status_code == 200
    assert gw.http.delete("/admin/teams/aud-team").status_code == 200
    delete, patch, put = audit_records(gw, limit=3)  # the refused creation wrote no record
    assert (put["action"], put["before"], put["after"]["rpm"]) == ("teams.create", None, 10)
    assert (patch["action"], patch["before"]["rpm"], patch["after"]["rpm"]) == ("teams.update", 10, 20)
    assert (delete["action"], delete["before"]["rpm"], delete["after"]) == ("teams.delete", 20, None)


# --- the allow-list and CORS on their own gateways ---------------------------------------------------


def test_ip_allow_list(mock: Mock, tmp_path: Path) -> None:
    config = e2e_config(mock.url) + "admin: {allow_ips: ['10.9.0.0/16'], trusted_proxies: ['127.0.0.1/32']}\n"
    gw = GatewayProcess(config, tmp_path)
    try:
        refused = gw.http.get("/admin/keys")
        assert refused.status_code == 403 and code_of(refused) == "ip_not_allowed"
        login_refused = login(gw, "anyone")
        assert login_refused.status_code == 403 and code_of(login_refused) == "ip_not_allowed"
        via_proxy = gw.http.get("/admin/me", headers={"x-forwarded-for": "203.0.113.7, 10.9.1.2"})
        assert via_proxy.status_code == 200 and via_proxy.json()["client"] == "10.9.1.2"
        spoofed = gw.http.get("/admin/me", headers={"x-forwarded-for": "10.9.1.2, 203.0.113.7"})
        assert spoofed.status_code == 403, "only the hop the trusted proxy saw counts"
        assert gw.http.get("/health").status_code == 200, "the allow-list is for /admin only"
    finally:
        gw.stop()


def test_cors_for_listed_origins(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url) + "admin: {cors_origins: ['https://console.example']}\n", tmp_path)
    try:
        ok = httpx.options(
            f"{gw.url}/admin/keys",
            headers={"origin": "https://console.example", "access-control-request-method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://console.example"
        other = httpx.get(f"{gw.url}/admin/keys", headers={"origin": "https://evil.example", **bearer(MASTER_KEY)})
        assert "access-control-allow-origin" not in other.headers
    finally:
        gw.stop()


def test_lockout_survives_a_restart(mock: Mock, tmp_path: Path) -> None:
    config = e2e_config(mock.url) + ADMIN_SETTINGS
    gw = GatewayProcess(config, tmp_path)
    try:
        make_user(gw, "restart", "viewer")
        for _ in range(3):
            login(gw, "restart", "wrong password here")
    finally:
        gw.stop()
    again = GatewayProcess(config, tmp_path)
    try:
        resp = login(again, "restart")
        assert resp.status_code == 403 and code_of(resp) == "account_locked"
    finally:
        again.stop()


def test_lockout_and_sessions_are_shared_by_replicas(mock: Mock, tmp_path: Path) -> None:
    with RedisServer() as redis:
        state = f"state: {{backend: redis, url: '{redis.url}'}}\n"
        config = state + e2e_config(mock.url) + ADMIN_SETTINGS
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = GatewayProcess(config, tmp_path / "a")
        b = GatewayProcess(config, tmp_path / "b")
        try:
            make_user(a, "shared", "operator")
            pair = tokens(b, "shared")
            assert httpx.get(f"{a.url}/admin/me", headers=bearer(pair["access_token"])).status_code == 200
            rotated = httpx.post(f"{a.url}/admin/refresh", json={"refresh_token": pair["refresh_token"]})
            assert rotated.status_code == 200
            reused = httpx.post(f"{b.url}/admin/refresh", json={"refresh_token": pair["refresh_token"]})
            assert code_of(reused) == "refresh_token_reused", "rotation is seen by the other replica"
            for _ in range(3):
                login(a, "shared", "wrong password here")
            locked = login(b, "shared")
            assert locked.status_code == 403 and code_of(locked) == "account_locked"
            actions = [r["action"] for r in b.http.get("/admin/audit", params={"limit": 3}).json()["data"]]
            assert actions[0] == "auth.login_refused", "one audit log for both replicas"
        finally:
            a.stop()
            b.stop()


PROVIDER_KEY = "sk-proj-E2E-provider-secret-5f3a9c0d17b24e68"


def test_no_response_log_or_audit_record_holds_a_provider_key(gw: GatewayProcess, tmp_path: Path) -> None:
    answers: list[httpx.Response] = []
    put = gw.http.put("/admin/secrets/openai-prod", json={"value": PROVIDER_KEY})
    assert put.status_code == 201, put.text
    assert put.json()["ref"] == "secret:openai-prod" and put.json()["hint"] == "sk-p…"
    replaced = gw.http.put("/admin/secrets/openai-prod", json={"value": PROVIDER_KEY})
    assert replaced.status_code == 200
    answers += [put, replaced, gw.http.get("/admin/secrets"), gw.http.get("/admin/secrets/openai-prod")]
    # the key given where it does not belong: every refusal must leave it out
    answers += [
        gw.http.put("/admin/secrets/openai-prod", json={"value": PROVIDER_KEY, "extra": PROVIDER_KEY}),
        gw.http.put("/admin/secrets/bad name", json={"value": PROVIDER_KEY}),
        gw.http.post(
            "/admin/models",
            json={"name": "leak", "deployments": [{"provider": "openai", "model": "m", "api_key": PROVIDER_KEY}]},
        ),
        gw.http.post("/admin/keys", json={"name": "x", "owner": 5, "team": PROVIDER_KEY}),
        gw.http.post("/admin/teams", json={"id": PROVIDER_KEY + "/", "rpm": 1}),
        gw.http.post("/admin/users", json={"username": "leaky", "password": PROVIDER_KEY, "role": "nope"}),
        httpx.post(f"{gw.url}/admin/login", json={"username": "leaky", "password": PROVIDER_KEY}),
        httpx.get(f"{gw.url}/admin/keys", headers=bearer(PROVIDER_KEY)),
        httpx.post(f"{gw.url}/admin/refresh", json={"refresh_token": PROVIDER_KEY}),
        httpx.post(
            f"{gw.url}/v1/chat/completions",
            headers=bearer(PROVIDER_KEY),
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        ),
    ]
    assert all(a.status_code < 500 for a in answers), [(a.status_code, a.text) for a in answers]
    records = audit_records(gw, limit=1000)
    assert any(r["action"] == "secrets.put" for r in records)
    leaks = [a.request.url.path for a in answers if PROVIDER_KEY in a.text]
    assert not leaks, f"answers holding the provider key: {leaks}"
    assert PROVIDER_KEY not in str(records), "an audit record holds the provider key"
    assert PROVIDER_KEY not in gw.log(), "the gateway log holds the provider key"
    # the SQLite file, its WAL and the spend journal's segments
    files = [p for p in gw.config_path.parent.rglob("*") if p.is_file() and "state.db" in str(p)]
    state = b"".join(p.read_bytes() for p in files)
    assert state and PROVIDER_KEY.encode() not in state, "the state file holds the provider key in clear"
    deleted = gw.http.delete("/admin/secrets/openai-prod")
    assert deleted.status_code == 200 and gw.http.get("/admin/secrets/openai-prod").status_code == 404
    assert gw.http.delete("/admin/secrets/openai-prod").status_code == 404


def test_secrets_need_the_secrets_key(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url) + ADMIN_SETTINGS, tmp_path)
    try:
        resp = gw.http.put("/admin/secrets/x", json={"value": PROVIDER_KEY})
        assert resp.status_code == 503 and code_of(resp) == "secrets_not_configured"
        assert PROVIDER_KEY not in resp.text
        make_user(gw, "nokey", "viewer")
        access = tokens(gw, "nokey")["access_token"]
        enrol = httpx.post(f"{gw.url}/admin/me/totp", headers=bearer(access))
        assert enrol.status_code == 503 and code_of(enrol) == "secrets_not_configured", enrol.text
        assert "GATEWAY_SECRETS_KEY" in enrol.json()["error"]["message"]
        assert "totp" not in orjson.loads(stored_user(gw, "nokey")), "no TOTP secret was stored, not even in plaintext"
        assert login(gw, "nokey").status_code == 200, "and login goes on without a second factor"
    finally:
        gw.stop()


def test_a_malformed_secrets_key_stops_the_start(mock: Mock, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"state: {{path: '{tmp_path / 'state.db'}'}}\n" + e2e_config(mock.url))
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_SECRETS_KEY": "c2hvcnQ="}
    args = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(free_port())]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "GATEWAY_SECRETS_KEY must be 32 bytes" in done.stdout + done.stderr


def test_without_a_master_key_or_jwt_secret_logins_are_off(mock: Mock, tmp_path: Path) -> None:
    config = e2e_config(mock.url).replace('  master_key: "${GATEWAY_MASTER_KEY}"\n', "")
    gw = GatewayProcess(config, tmp_path)
    try:
        resp = login(gw, "anyone")
        assert resp.status_code == 503 and code_of(resp) == "logins_not_configured"
        jwt_like = httpx.get(f"{gw.url}/admin/keys", headers=bearer("a.b.c"))
        assert jwt_like.status_code == 401
    finally:
        gw.stop()


def test_password_changes(gw: GatewayProcess) -> None:
    make_user(gw, "changer", "viewer")
    access = tokens(gw, "changer")["access_token"]
    url = f"{gw.url}/admin/me/password"
    wrong = httpx.post(url, json={"current_password": "nope", "new_password": "x" * 20}, headers=bearer(access))
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "current_password"
    weak = httpx.post(url, json={"current_password": PASSWORD, "new_password": "short"}, headers=bearer(access))
    assert weak.status_code == 400 and weak.json()["error"]["param"] == "new_password"
    unknown = httpx.post(url, json={"current_password": PASSWORD, "other": 1}, headers=bearer(access))
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "other"
    time.sleep(0.01)
    done = httpx.post(
        url, json={"current_password": PASSWORD, "new_password": "a new password 42"}, headers=bearer(access)
    )
    assert done.status_code == 200
    assert httpx.get(f"{gw.url}/admin/me", headers=bearer(access)).status_code == 401, "old tokens end"
    assert login(gw, "changer").status_code == 401
    assert login(gw, "changer", "a new password 42").status_code == 200
    assert gw.http.patch("/admin/users/changer", json={"password": PASSWORD}).json()["username"] == "changer"
    assert login(gw, "changer").status_code == 200, "an admin can set a password"
    changes = [r for r in audit_records(gw, limit=5) if r["target"] == "users/changer"]
    assert changes[0]["action"] == "auth.login" and changes[1]["after"]["password_changed"] is True
    assert "password_hash" not in str(changes)
