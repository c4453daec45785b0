"""Authentication under concurrency and the client address, over real HTTP to real
``gateway serve`` processes: bursts of 25 parallel logins for one user (24 wrong
passwords and the right one) on one gateway and across two replicas sharing Redis;
the admin allow-list and the audit log against a forged ``X-Forwarded-For``.

How many passwords were checked is read from the gateways' own
``gateway_admin_login_attempts_total{outcome}`` and cross-checked with the answers
and the audit log: ``locked`` is a guess refused with nothing hashed, every other
outcome a checked one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config
from tests.redis_server import RedisServer

PASSWORD = "Correct horse battery staple 9"
WRONG = [f"wrong password number {i:02d}" for i in range(24)]
MAX_FAILURES = 5
LOCKOUT = f"admin: {{scrypt_n: 16384, lockout: {{max_failures: {MAX_FAILURES}, window_s: 600, duration_s: 600}}}}\n"
CHECKED = ("success", "invalid", "totp_required", "disabled")


def login_attempts(gws: Sequence[GatewayProcess]) -> Counter[str]:
    """``gateway_admin_login_attempts_total`` by outcome, summed over ``gws``."""
    total: Counter[str] = Counter()
    for gw in gws:
        text = httpx.get(f"{gw.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "gateway_admin_login_attempts_total":
                    total[s.labels["outcome"]] += int(s.value)
    return total


def code_of(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["code"])


async def burst(urls: Sequence[str], username: str, passwords: Sequence[str]) -> list[httpx.Response]:
    """Every password at once (guess ``i`` to ``urls[i % len(urls)]``), each on its own connection."""
    limits = httpx.Limits(max_connections=len(passwords), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = asyncio.Event()

        async def one(i: int, password: str) -> httpx.Response:
            await start.wait()
            body = {"username": username, "password": password}
            return await client.post(f"{urls[i % len(urls)]}/admin/login", json=body)

        tasks = [asyncio.create_task(one(i, p)) for i, p in enumerate(passwords)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


def make_user(gw: GatewayProcess, username: str) -> None:
    resp = gw.http.post("/admin/users", json={"username": username, "password": PASSWORD, "role": "viewer"})
    assert resp.status_code == 201, resp.text


def audit_for(gw: GatewayProcess, username: str) -> Counter[str]:
    rows: list[dict[str, Any]] = gw.http.get("/admin/audit", params={"limit": 1000}).json()["data"]
    return Counter(r["action"] for r in rows if r["target"] == f"users/{username}")


def check_burst(gws: Sequence[GatewayProcess], username: str, right_at: int) -> None:
    """25 parallel logins (the right password at index ``right_at``) and every promise of the lock-out."""
    make_user(gws[0], username)
    before = login_attempts(gws)
    passwords = [*WRONG[:right_at], PASSWORD, *WRONG[right_at:]]
    answers = asyncio.run(burst([gw.url for gw in gws], username, passwords))
    after = login_attempts(gws)
    delta = {k: after[k] - before[k] for k in ("success", "invalid", "locked", "totp_required", "disabled")}
    checked = sum(delta[k] for k in CHECKED)
    statuses = Counter((r.status_code, code_of(r) if r.status_code != 200 else "ok") for r in answers)

    assert checked + delta["locked"] == 25, (delta, statuses)
    assert delta["invalid"] <= MAX_FAILURES, f"at most {MAX_FAILURES} wrong passwords checked: {delta}"
    assert checked <= MAX_FAILURES + delta["success"], "a success frees its own place only"
    assert delta["locked"] >= 25 - MAX_FAILURES - 1, "the rest refused unchecked"
    succeeded = answers[right_at].status_code == 200
    assert delta["success"] == (1 if succeeded else 0), "the right one succeeds only if it got a place"
    if not succeeded:
        assert code_of(answers[right_at]) == "account_locked", answers[right_at].text
    locked_now = delta["invalid"] >= MAX_FAILURES
    wrong_answers = statuses[(401, "invalid_credentials")]
    assert wrong_answers == delta["invalid"] - (1 if locked_now else 0), "the locking failure answers 403"
    assert statuses[(403, "account_locked")] == delta["locked"] + (1 if locked_now else 0)
    audit = audit_for(gws[0], username)  # one audit log for every replica
    assert audit["auth.login_failed"] == delta["invalid"] and audit["auth.login_refused"] == delta["locked"]

    again = httpx.post(f"{gws[-1].url}/admin/login", json={"username": username, "password": PASSWORD})
    if locked_now:
        assert again.status_code == 403 and code_of(again) == "account_locked", "failures reached the limit: locked"
        assert gws[0].http.get(f"/admin/users/{username}").json()["locked_until"] is not None
    else:  # the right one had a place and succeeded; its success erased none of the failures
        assert again.status_code == 200, again.text
        for _ in range(MAX_FAILURES - delta["invalid"] - 1):
            wrong = httpx.post(f"{gws[0].url}/admin/login", json={"username": username, "password": WRONG[0]})
            assert wrong.status_code == 401
        locking = httpx.post(f"{gws[0].url}/admin/login", json={"username": username, "password": WRONG[1]})
        assert locking.status_code == 403 and code_of(locking) == "account_locked", "the earlier failures still count"


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url) + LOCKOUT, Path(tmp_path_factory.mktemp("login-burst")))
    yield g
    g.stop()


@pytest.mark.parametrize("right_at", [0, 12, 24])
def test_a_burst_of_logins_checks_at_most_max_failures(gw: GatewayProcess, right_at: int) -> None:
    check_burst([gw], f"burst{right_at}", right_at)


def test_a_burst_across_two_replicas_on_redis(mock: Mock, tmp_path: Path) -> None:
    with RedisServer() as redis:
        config = f"state: {{backend: redis, url: '{redis.url}'}}\n" + e2e_config(mock.url) + LOCKOUT
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = GatewayProcess(config, tmp_path / "a")
        b = GatewayProcess(config, tmp_path / "b")
        try:
            for right_at in (0, 13):
                check_burst([a, b], f"shared{right_at}", right_at)
        finally:
            a.stop()
            b.stop()


# --- the client address: the socket's, unless the peer is a trusted proxy -------------------------


def from_address(gw: GatewayProcess, local: str) -> httpx.Client:
    """A client whose connections leave from ``local`` (any 127.x address is loopback)."""
    transport = httpx.HTTPTransport(local_address=local)
    return httpx.Client(
        base_url=gw.url, transport=transport, timeout=30, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )


def last_login(client: httpx.Client, username: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = client.get("/admin/audit", params={"limit": 20}, headers=headers)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["data"]
    return next(r for r in rows if r["target"] == f"users/{username}" and r["action"] == "auth.login")


FORGED = {"x-forwarded-for": "10.0.0.1"}


def test_a_forged_forwarded_for_grants_nothing_and_is_not_recorded(mock: Mock, tmp_path: Path) -> None:
    admin = "admin: {scrypt_n: 16384, allow_ips: ['10.0.0.0/8', '127.0.0.2/32']}\n"
    gw = GatewayProcess(e2e_config(mock.url) + admin, tmp_path)
    try:
        with from_address(gw, "127.0.0.1") as outside, from_address(gw, "127.0.0.2") as inside:
            refused = outside.get("/admin/me", headers=FORGED)
            assert refused.status_code == 403 and code_of(refused) == "ip_not_allowed", refused.text
            assert "127.0.0.1" in refused.json()["error"]["message"] and "10.0.0.1" not in refused.text
            body = {"username": "spoofer", "password": PASSWORD}
            assert code_of(outside.post("/admin/login", json=body, headers=FORGED)) == "ip_not_allowed"
            me = inside.get("/admin/me", headers=FORGED)
            assert me.status_code == 200 and me.json()["client"] == "127.0.0.2", "the socket's address"
            assert inside.post("/admin/users", json={**body, "role": "viewer"}).status_code == 201
            assert inside.post("/admin/login", json=body, headers=FORGED).status_code == 200
            assert last_login(inside, "spoofer")["client"] == "127.0.0.2", "the audit log has the socket's address"
    finally:
        gw.stop()


def test_without_an_allow_list_the_audit_log_still_has_the_socket_address(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url) + "admin: {scrypt_n: 16384}\n", tmp_path)
    try:
        with from_address(gw, "127.0.0.1") as client:
            body = {"username": "plain", "password": PASSWORD}
            assert client.post("/admin/users", json={**body, "role": "viewer"}, headers=FORGED).status_code == 201
            assert client.post("/admin/login", json=body, headers=FORGED).status_code == 200
            assert last_login(client, "plain")["client"] == "127.0.0.1"
            created = client.get("/admin/audit", params={"limit": 5}).json()["data"]
            assert {r["client"] for r in created} == {"127.0.0.1"}, created
    finally:
        gw.stop()


def test_a_trusted_proxy_forwarded_for_is_honoured(mock: Mock, tmp_path: Path) -> None:
    admin = "admin: {scrypt_n: 16384, allow_ips: ['10.0.0.0/8'], trusted_proxies: ['127.0.0.1/32']}\n"
    gw = GatewayProcess(e2e_config(mock.url) + admin, tmp_path)
    try:
        with from_address(gw, "127.0.0.1") as proxy, from_address(gw, "127.0.0.2") as stranger:
            body = {"username": "proxied", "password": PASSWORD}
            assert proxy.get("/admin/me").status_code == 403, "the proxy itself is not on the allow-list"
            assert proxy.post("/admin/users", json={**body, "role": "viewer"}, headers=FORGED).status_code == 201
            assert proxy.post("/admin/login", json=body, headers=FORGED).status_code == 200
            assert last_login(proxy, "proxied", FORGED)["client"] == "10.0.0.1", "the client the trusted proxy saw"
            not_proxy = stranger.get("/admin/me", headers=FORGED)
            assert not_proxy.status_code == 403 and "127.0.0.2" in not_proxy.json()["error"]["message"]
    finally:
        gw.stop()
