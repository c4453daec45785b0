"""Governance on real state backends (embedded SQLite, and a real Redis for retention):
the password policy, temporary role grants, the idle session time-out, last_login_at,
the new-user notice and the data retention job, with a driven clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.admin.access import MASTER_ACTOR, Actor
from gateway.admin.gate import build_gate
from gateway.admin.users import UsersAPI
from gateway.config.governance import PasswordPolicy
from gateway.config.settings import Settings
from gateway.errors import AuthenticationFailed, InvalidRequest
from gateway.security import grants
from gateway.security.accounts import UserStore, public
from gateway.security.data_retention import DAY_TABLES, MARKS, prune_day_tables, retention_job
from gateway.security.password_policy import check_password, classes_of, common_passwords
from gateway.security.roles import Role
from gateway.security.sessions import USE, Sessions
from gateway.server.asgi import Scope
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.redis import RedisBackend
from tests.redis_server import RedisServer

POLICY = PasswordPolicy()
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


# --- the password policy -------------------------------------------------------------------------


def refused(password: Any, rule: str, username: str = "alice", policy: PasswordPolicy = POLICY) -> str:
    with pytest.raises(InvalidRequest) as caught:
        check_password(password, 12, policy, username=username, param="new_password")
    err = caught.value
    assert (err.code, err.param) == ("weak_password", "new_password")
    assert f"(rule {rule})" in err.message
    if isinstance(password, str) and password:
        assert password not in err.message, "the password is never repeated"
    return err.message


def test_each_rule_of_the_policy() -> None:
    for short in ("Aa1!", "Short-1aA", None, 12, "x" * 1025):
        refused(short, "length")
    assert "at least 3 of" in refused("alllowercaseletters", "classes")
    refused("lower and spaces", "classes")  # lower + symbol: 2 classes
    refused("My-Alice-Pass-1", "username")
    refused("my-ALICE-pass-1", "username")
    refused("Password123!", "common")
    refused("P@ssw0rd2024", "common")
    refused("Correct Horse Battery Staple", "common", policy=PasswordPolicy(min_classes=2))
    assert check_password("Tr4in-Lantern-Odd", 12, POLICY, username="alice") == "Tr4in-Lantern-Odd"
    assert check_password("tr4in lantern odd", 12, POLICY, username="bob") == "tr4in lantern odd"
    assert check_password("UPPER-lower-words", 12, POLICY, username="zed") == "UPPER-lower-words"


def test_the_policy_can_be_relaxed() -> None:
    lax = PasswordPolicy(min_classes=1, reject_username=False, reject_common=False)
    assert check_password("alicealicealice", 12, lax, username="alice") == "alicealicealice"
    assert check_password("password1234", 12, lax, username="bob") == "password1234"


def test_classes_and_the_bundled_list() -> None:
    assert classes_of("aB3 ") == {"lower", "upper", "digit", "symbol"}
    assert classes_of("é") == {"lower"}
    common = common_passwords()
    assert len(common) > 3000
    assert {"123456", "password", "qwerty", "iloveyou", "p@ssw0rd", "welcome2025"} <= common
    assert all(p == p.lower() and p.strip() == p and p for p in common)


# --- grants ----------------------------------------------------------------------------------------

VIEWER = {"username": "vic", "role": "viewer"}


def test_a_grant_raises_the_role_until_it_expires() -> None:
    grant = grants.new_grant(
        VIEWER, {"role": "admin", "expires_in_s": 600, "reason": "incident 42"}, actor="boss", now=NOW
    )
    assert grant["id"].startswith("grant_") and grant["expires_at"] == NOW + 600
    assert (grant["granted_by"], grant["granted_at"], grant["reason"]) == ("boss", NOW, "incident 42")
    user = grants.with_grant(VIEWER, grant, NOW)
    assert grants.effective_role(user, NOW) is Role.admin
    assert grants.effective_role(user, NOW + 599.9) is Role.admin
    assert grants.effective_role(user, NOW + 600) is Role.viewer, "lapsed at its expiry"
    assert grants.shown(grant, NOW + 600)["active"] is False
    assert grants.shown(grant, NOW)["expires_at"] == "2027-01-15T08:10:00Z"
    shown_user = public(user, now=NOW)
    assert (shown_user["role"], shown_user["effective_role"], shown_user["active_grants"]) == ("viewer", "admin", 1)
    revoked, found = grants.without_grant(user, grant["id"])
    assert found == grant and grants.effective_role(revoked, NOW) is Role.viewer
    assert grants.without_grant(user, "grant_nope") == (user, None)


def test_grants_keep_the_highest_and_drop_old_expired_ones() -> None:
    op = grants.new_grant(VIEWER, {"role": "operator", "expires_in_s": 100, "reason": "r"}, actor="a", now=NOW)
    adm = grants.new_grant(VIEWER, {"role": "admin", "expires_in_s": 50, "reason": "r"}, actor="a", now=NOW)
    user = grants.with_grant(grants.with_grant(VIEWER, op, NOW), adm, NOW)
    assert [grants.effective_role(user, NOW + t) for t in (0, 60, 120)] == [Role.admin, Role.operator, Role.viewer]
    later = NOW + grants.KEEP_EXPIRED_S + 200
    newer = grants.new_grant(VIEWER, {"role": "operator", "expires_in_s": 10, "reason": "r"}, actor="a", now=later)
    assert [g["id"] for g in grants.with_grant(user, newer, later)["grants"]] == [newer["id"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"role": "root", "expires_in_s": 60, "reason": "r"}, "role"),
        ({"role": "viewer", "expires_in_s": 60, "reason": "r"}, "role"),
        ({"expires_in_s": 60, "reason": "r"}, "role"),
        ({"role": "admin", "expires_in_s": 60}, "reason"),
        ({"role": "admin", "expires_in_s": 60, "reason": "  "}, "reason"),
        ({"role": "admin", "expires_in_s": 60, "reason": "x" * 501}, "reason"),
        ({"role": "admin", "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_in_s": 60, "expires_at": NOW + 60, "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_in_s": 0, "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_in_s": "60", "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_in_s": True, "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_in_s": grants.MAX_GRANT_S + 1, "reason": "r"}, "expires_in_s"),
        ({"role": "admin", "expires_at": NOW - 1, "reason": "r"}, "expires_at"),
        ({"role": "admin", "expires_at": "tomorrow", "reason": "r"}, "expires_at"),
        ({"role": "admin", "expires_at": "2027-01-15T09:00:00", "reason": "r"}, "expires_at"),
        ({"role": "admin", "expires_at": "2030-01-01T00:00:00Z", "reason": "r"}, "expires_at"),
    ],
)
def test_bad_grants_name_their_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        grants.new_grant(VIEWER, body, actor="boss", now=NOW)
    assert caught.value.param == param


def test_grant_expiry_as_epoch_or_iso_time() -> None:
    body = {"role": "operator", "expires_at": "2027-01-15T10:00:00+01:00", "reason": "r"}
    assert grants.new_grant(VIEWER, body, actor="a", now=NOW)["expires_at"] == NOW + 3600
    assert (
        grants.new_grant(VIEWER, {**body, "expires_at": "2027-01-15T09:00:00Z"}, actor="a", now=NOW)["expires_at"]
        == NOW + 3600
    )
    assert grants.new_grant(VIEWER, {**body, "expires_at": NOW + 5}, actor="a", now=NOW)["expires_at"] == NOW + 5
    with pytest.raises(InvalidRequest, match="in the future"):  # 08:00Z is now: not after it
        grants.new_grant(VIEWER, {**body, "expires_at": "2027-01-15T09:00:00+01:00"}, actor="a", now=NOW)


def test_too_many_active_grants() -> None:
    user: dict[str, Any] = dict(VIEWER)
    for _ in range(grants.MAX_ACTIVE):
        g = grants.new_grant(user, {"role": "operator", "expires_in_s": 60, "reason": "r"}, actor="a", now=NOW)
        user = grants.with_grant(user, g, NOW)
    with pytest.raises(InvalidRequest, match="revoke one first"):
        grants.new_grant(user, {"role": "operator", "expires_in_s": 60, "reason": "r"}, actor="a", now=NOW)
    assert grants.new_grant(user, {"role": "admin", "expires_in_s": 60, "reason": "r"}, actor="a", now=NOW + 61)


# --- the idle session time-out -----------------------------------------------------------------


def sessions_on(backend: StateBackend, clock: Clock, idle_s: float = 1800) -> Sessions:
    return Sessions(backend, b"s" * 32, access_ttl_s=3600, refresh_ttl_s=7 * 86400, idle_timeout_s=idle_s, clock=clock)


async def viewer_role(username: str) -> str:
    return "viewer"


async def test_a_refresh_after_the_idle_time_out_is_refused(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = sessions_on(backend, clock)
    pair = await sessions.start("ann", "viewer")
    clock.now += 1799
    _, pair = await sessions.refresh(pair.refresh_token, viewer_role)  # in time: rotates, and counts as a use
    clock.now += 1799
    _, pair = await sessions.refresh(pair.refresh_token, viewer_role)
    clock.now += 1801
    with pytest.raises(AuthenticationFailed) as caught:
        await sessions.refresh(pair.refresh_token, viewer_role)
    assert caught.value.code == "session_idle" and "1800 s" in caught.value.message
    with pytest.raises(AuthenticationFailed) as again:
        await sessions.refresh(pair.refresh_token, viewer_role)
    assert again.value.code == "session_revoked", "the idle session is over"


async def test_using_an_access_token_keeps_the_session_alive(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = sessions_on(backend, clock, idle_s=600)
    pair = await sessions.start("ann", "viewer")
    for _ in range(5):  # 50 minutes of work with the access token, never a refresh
        clock.now += 599
        await sessions.use(sessions.access_claims(pair.access_token))
    stored = await backend.get(USE, sessions.access_claims(pair.access_token)["fam"])
    assert stored is not None and stored["last_used_at"] == clock.now
    clock.now += 599
    _, fresh = await sessions.refresh(pair.refresh_token, viewer_role)
    clock.now += 601
    with pytest.raises(AuthenticationFailed) as caught:
        await sessions.use(sessions.access_claims(fresh.access_token))
    assert caught.value.code == "session_idle"
    with pytest.raises(AuthenticationFailed) as ended:
        await sessions.refresh(fresh.refresh_token, viewer_role)
    assert ended.value.code == "session_revoked"


async def test_last_use_is_written_at_most_every_tenth_of_the_time_out(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = sessions_on(backend, clock, idle_s=600)
    claims = sessions.access_claims((await sessions.start("ann", "viewer")).access_token)
    clock.now += 59
    await sessions.use(claims)
    assert await backend.get(USE, claims["fam"]) is None, "59 s after the login: nothing written"
    clock.now += 1
    await sessions.use(claims)
    assert (await backend.get(USE, claims["fam"]) or {})["last_used_at"] == clock.now


async def test_an_access_token_of_an_ended_session_is_refused(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = sessions_on(backend, clock)
    pair = await sessions.start("ann", "viewer")
    claims = sessions.access_claims(pair.access_token)
    await sessions.use(claims)
    await sessions.logout(pair.refresh_token)
    with pytest.raises(AuthenticationFailed) as caught:
        await sessions.use(claims)
    assert caught.value.code == "session_revoked"
    await sessions.use({k: v for k, v in claims.items() if k != "fam"})  # a token from before: no session to check


# --- last_login_at and the new-user notice --------------------------------------------------------


async def test_record_login_sets_last_login_at_on_the_current_record(backend: EmbeddedBackend) -> None:
    clock = Clock()
    users = UserStore(backend, None, clock=clock)
    await users.put({"username": "ann", "role": "viewer", "password_hash": "h"})
    clock.now += 100
    await users.record_login("ann")
    stored = await users.require("ann")
    assert stored["last_login_at"] == NOW + 100 and stored["updated_at"] == NOW
    assert public(stored)["last_login_at"] == "2027-01-15T08:01:40Z"
    await users.record_login("nobody")
    assert await users.get("nobody") is None


class Host:
    """The admin host the users API needs: the master key's actor, audit records in a list."""

    def __init__(self) -> None:
        self.audited: list[str] = []

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor:
        return MASTER_ACTOR

    async def audit(self, request: Request, action: str, target: str, *, before: Any = None, after: Any = None) -> None:
        self.audited.append(action)


async def no_client_key(scope: Scope) -> None:
    raise AssertionError("only the master key is used here")


@pytest.fixture
def users_app(tmp_path: Path) -> Iterator[tuple[TestClient, list[tuple[str, str, str]], Host]]:
    settings = Settings.model_validate({"admin": {"scrypt_n": 16384}})
    backend = EmbeddedBackend(str(tmp_path / "gw.db"))
    gate = build_gate(settings, backend, is_master=lambda s: True, check_client_key=no_client_key, env={})
    told: list[tuple[str, str, str]] = []

    async def on_user_created(username: str, role: str, actor: str) -> None:
        if username.startswith("fail"):
            raise RuntimeError("the notifier is down")
        told.append((username, role, actor))

    host = Host()
    app = Starlette(routes=UsersAPI(host, lambda: gate, on_user_created).routes())  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client, told, host


def wait_for(check: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("not within the time allowed")


def test_a_new_user_is_announced_and_a_failing_notice_fails_nothing(
    users_app: tuple[TestClient, list[tuple[str, str, str]], Host],
) -> None:
    client, told, host = users_app
    created = client.post(
        "/admin/users", json={"username": "newbie", "password": "Tr4in-Lantern-Odd", "role": "operator"}
    )
    assert created.status_code == 201, created.text
    wait_for(lambda: told == [("newbie", "operator", "master")])
    failing = client.post(
        "/admin/users", json={"username": "failing", "password": "Tr4in-Lantern-Odd", "role": "viewer"}
    )
    assert failing.status_code == 201, "a notifier failure never fails the request"
    weak = client.post("/admin/users", json={"username": "weakling", "password": "weakling-pass-1", "role": "viewer"})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "weak_password"
    assert "weakling-pass-1" not in weak.text
    assert host.audited == ["users.create", "users.create"]
    assert told == [("newbie", "operator", "master")], "no notice for a failure, nor for a refused user"


# --- the retention job -------------------------------------------------------------------------------


async def seed(backend: StateBackend) -> None:
    """Feedback on 2026-12-15 (31 days before NOW's day), 2026-12-16 (30 days: kept) and today;
    an expired and a live session; a user with a grant expired 31 days ago and a live one."""
    for day in ("2026-12-14", "2026-12-15", "2026-12-16", "2027-01-15"):
        for n in range(2):
            await backend.put(
                f"feedback:{day}",
                f"key_a:req-{day}-{n}",
                {"key_id": "key_a", "request_id": f"req-{day}-{n}", "score": 5},
            )
    await backend.put("refresh_tokens", "old", {"family": "old", "user": "ann", "expires_at": NOW - 1})
    await backend.put("refresh_tokens", "live", {"family": "live", "user": "ann", "expires_at": NOW + 100})
    await backend.put(USE, "old", {"family": "old", "last_used_at": NOW - 10 * DAY})
    await backend.put(USE, "live", {"family": "live", "last_used_at": NOW - 10})
    old = {"id": "grant_old", "role": "admin", "expires_at": NOW - 31 * DAY}
    live = {"id": "grant_live", "role": "operator", "expires_at": NOW - 29 * DAY}
    await backend.put("users", "ann", {"username": "ann", "role": "viewer", "grants": [old, live]})
    await backend.append_log("audit", {"action": "users.create", "ts": NOW - 400 * DAY})


async def check_retention(backend: StateBackend) -> None:
    await seed(backend)
    settings = Settings()
    summary = await retention_job(settings, backend, clock=lambda: NOW)
    assert summary == (
        "kept 30 d (from 2026-12-16): deleted 4 feedback record(s), 1 ended session(s), 1 expired grant(s)"
    ), summary
    for day, left in (("2026-12-14", 0), ("2026-12-15", 0), ("2026-12-16", 2), ("2027-01-15", 2)):
        assert len(await backend.scan(f"feedback:{day}")) == left, day
    assert [r["family"] for r in await backend.scan("refresh_tokens")] == ["live"]
    assert [r["family"] for r in await backend.scan(USE)] == ["live"]
    assert [g["id"] for g in (await backend.get("users", "ann") or {})["grants"]] == ["grant_live"]
    assert len(await backend.read_log("audit", 10)) == 1, "the audit log is never deleted"
    assert await backend.get(MARKS, "feedback:") == {"prefix": "feedback:", "cleared_through": "2026-12-15"}
    await backend.put("feedback:2026-12-10", "key_a:late", {"key_id": "key_a", "request_id": "late"})
    next_day = await retention_job(settings, backend, clock=lambda: NOW + DAY)
    assert next_day.startswith("kept 30 d (from 2026-12-17): deleted 2 feedback record(s), 1 ended"), next_day
    assert len(await backend.scan("feedback:2026-12-10")) == 1, "a day already cleared is not looked at again"


async def test_retention_on_embedded(backend: EmbeddedBackend) -> None:
    await check_retention(backend)


async def test_retention_on_redis() -> None:
    with RedisServer() as server:
        backend = RedisBackend(server.url)
        try:
            await check_retention(backend)
        finally:
            await backend.aclose()


async def test_the_first_run_looks_back_lookback_days(backend: EmbeddedBackend) -> None:
    await backend.put("feedback:2026-01-01", "k:r", {"key_id": "k", "request_id": "r"})
    await backend.put("feedback:2025-01-01", "k:r", {"key_id": "k", "request_id": "r"})
    await backend.put("feedback:2026-01-02", "odd", {"request_id": "no key id"})
    table = DAY_TABLES[0]
    assert await prune_day_tables(backend, table, before=date(2027, 1, 15), lookback_days=400) == 1
    assert len(await backend.scan("feedback:2025-01-01")) == 1, "beyond the look-back"
    assert len(await backend.scan("feedback:2026-01-02")) == 1, "a record without its id fields is left"
