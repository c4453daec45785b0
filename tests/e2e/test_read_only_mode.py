"""Read-only mode with real processes: Redis (append-only file) killed while an admin writes
keys in a loop. Every write after the kill answers 503 ``state_backend_unavailable`` with
``Retry-After`` (never a 500), client traffic with a key seen before goes on, the metric and
``/admin/status`` say so, the console shows its banner; Redis restarted, nothing written before
is lost and writes work again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config, wait_until
from tests.redis_server import RedisServer

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(persist=True) as server:
        yield server


def metric(gw: GatewayProcess, name: str) -> float | None:
    for line in gw.http.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_redis_killed_during_admin_writes(mock: Mock, redis_server: RedisServer, tmp_path: Path) -> None:
    state = f"state: {{backend: redis, url: '{redis_server.url}', flush_interval_s: 0.2, refresh_interval_s: 0.2}}\n"
    gw = GatewayProcess(state + e2e_config(mock.url), tmp_path)
    try:
        client_key = gw.http.post("/admin/keys", json={"name": "client"}).json()["key"]
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        client = {"authorization": f"Bearer {client_key}"}
        assert gw.http.post("/v1/chat/completions", json=chat, headers=client).status_code == 200
        assert metric(gw, "gateway_state_backend_up") == 1.0
        made: list[str] = []
        for i in range(20):
            resp = gw.http.post("/admin/keys", json={"name": f"before-{i}"})
            assert resp.status_code == 201, resp.text
            made.append(resp.json()["id"])
        time.sleep(1.2)  # the append-only file is written every second
        redis_server.kill()
        answers = [gw.http.post("/admin/keys", json={"name": f"during-{i}"}) for i in range(10)]
        assert {r.status_code for r in answers} == {503}, [r.text for r in answers]
        for r in answers:
            assert r.json()["error"]["code"] == "state_backend_unavailable"
            assert r.headers["retry-after"] == "5"
        team = gw.http.post("/admin/teams", json={"id": "t-during"})
        assert (team.status_code, team.headers.get("retry-after")) == (503, "5")
        assert gw.http.post("/v1/chat/completions", json=chat, headers=client).status_code == 200, "seen before"
        assert wait_until(lambda: metric(gw, "gateway_state_backend_up") == 0.0, timeout=15)
        status = gw.http.get("/admin/status").json()["state_backend"]
        assert (status["kind"], status["up"], status["read_only"]) == ("redis", False, True)
        banner_shows(gw, expected=True)

        redis_server.start()  # same port, same append-only file
        assert wait_until(lambda: metric(gw, "gateway_state_backend_up") == 1.0, timeout=15)
        listed = {k["id"] for k in gw.http.get("/admin/keys").json()["data"]}
        assert set(made) <= listed, "every key written before the outage is still there"
        assert not any(k.startswith("during-") for k in listed)
        assert gw.http.post("/admin/keys", json={"name": "after"}).status_code == 201
        assert gw.http.get("/admin/status").json()["state_backend"]["read_only"] is False
        banner_shows(gw, expected=False)
    finally:
        gw.stop()


def banner_shows(gw: GatewayProcess, *, expected: bool) -> None:
    """The console, signed in with the master key: its banner while the backend is down."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: run scripts/install-os-deps.sh")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(gw.url + "/console/")
            page.fill("#key-form [name=key]", MASTER_KEY)
            page.click("#key-form button[type=submit]")
            expect(page.locator("#who")).to_have_text("master (admin)")
            banner = page.locator("#backend-banner")
            if expected:
                expect(banner).to_be_visible()
                expect(banner).to_contain_text("The state backend (redis) has been unreachable since")
                expect(banner).to_contain_text("changes cannot be saved now")
            else:
                expect(banner).to_be_hidden()
        finally:
            browser.close()


def test_a_401_is_not_mistaken_for_the_backend(mock: Mock, tmp_path: Path) -> None:
    """/admin/status needs a viewer: without credentials it is a 401, not a status."""
    gw = GatewayProcess(e2e_config(mock.url), tmp_path)
    try:
        assert httpx.get(gw.url + "/admin/status", timeout=10).status_code == 401
        body = gw.http.get("/admin/status").json()
        assert body["state_backend"] == {
            "kind": "embedded",
            "up": True,
            "since": body["state_backend"]["since"],
            "read_only": False,
        }
        assert [j["name"] for j in body["jobs"]] == sorted(j["name"] for j in body["jobs"])
    finally:
        gw.stop()
