"""Traffic control end to end on the embedded backend: client keys and teams,
rate limits, concurrency, the response cache, cost and budgets."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]
CHAT = "/v1/chat/completions"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    resp = gw.http.post("/admin/keys", json={"name": unique("key"), **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def create_team(gw: GatewayProcess, **fields: Any) -> str:
    team = unique("team")
    resp = gw.http.post("/admin/teams", json={"id": team, **fields})
    assert resp.status_code == 201, resp.text
    return team


def call(gw: GatewayProcess, key: str, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        gw.url + CHAT,
        json=body or {"model": "chat", "messages": HELLO},
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )


# --- keys ---------------------------------------------------------------------


def test_key_lifecycle(gateway: GatewayProcess) -> None:
    created = create_key(gateway, team=None, models=["chat"])
    key = created["key"]
    assert key.startswith("sk-gw-") and len(key) > 40
    assert "hash" not in created
    assert call(gateway, key).status_code == 200
    shown = gateway.http.get(f"/admin/keys/{created['id']}").json()
    assert "key" not in shown and "hash" not in shown
    assert key not in gateway.http.get("/admin/keys").text
    # a model outside the key's list
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="claude", messages=HELLO
        )
    # rotate: the old secret stops, the new one works
    rotated = gateway.http.post(f"/admin/keys/{created['id']}/rotate").json()
    assert call(gateway, rotated["key"]).status_code == 200
    assert call(gateway, key).json()["error"]["code"] == "invalid_api_key"
    # revoke: refused within a second
    assert gateway.http.delete(f"/admin/keys/{created['id']}").status_code == 200
    assert wait_until(lambda: call(gateway, rotated["key"]).status_code == 401, timeout=2.0)
    assert call(gateway, rotated["key"]).json()["error"]["code"] == "key_revoked"


def test_expired_key_is_refused(gateway: GatewayProcess) -> None:
    key = create_key(gateway, expires_at="2020-01-01T00:00:00Z")["key"]
    resp = call(gateway, key)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "key_expired"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "rpm": -1}, "rpm"),
        ({"name": "x", "colour": "blue"}, "colour"),
        ({"rpm": 5}, "name"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "models": ["no-such-alias"]}, "models"),
    ],
)
def test_invalid_key_fields_are_named(gateway: GatewayProcess, body: Any, param: str) -> None:
    resp = gateway.http.post("/admin/keys", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_key_for_unknown_team_is_404(gateway: GatewayProcess) -> None:
    resp = gateway.http.post("/admin/keys", json={"name": "x", "team": "no-such-team"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "team_not_found"


def test_admin_api_refuses_client_keys(gateway: GatewayProcess) -> None:
    key = create_key(gateway)["key"]
    resp = httpx.get(gateway.url + "/admin/keys", headers={"authorization": f"Bearer {key}"})
    assert resp.status_code == 403
    assert httpx.get(gateway.url + "/admin/keys").status_code == 401


def test_cli_keys(gateway: GatewayProcess) -> None:
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_URL": gateway.url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "keys", *args],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli("create", "--name", "cli-made", "--models", "chat", "--rpm", "100")
    assert made.returncode == 0, made.stderr
    key = made.stdout.split("store it now): ")[1].strip()
    key_id = made.stdout.split()[1]
    assert call(gateway, key).status_code == 200
    listing = cli("list")
    assert key_id in listing.stdout and key not in listing.stdout
    rotated = cli("rotate", key_id)
    assert rotated.returncode == 0
    new_key = rotated.stdout.split("(shown once): ")[1].strip()
    assert cli("revoke", key_id).returncode == 0
    assert wait_until(lambda: call(gateway, new_key).status_code == 401, timeout=2.0)
    bad = cli("revoke", "key_doesnotexist")
    assert bad.returncode == 1 and "HTTP 404" in bad.stderr
    no_key = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "list"],
        check=False,
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "GATEWAY_MASTER_KEY"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_key.returncode == 2 and "GATEWAY_MASTER_KEY" in no_key.stderr


# --- rate limits ----------------------------------------------------------------


def test_key_rpm_limit_with_openai_headers(gateway: GatewayProcess) -> None:
    key = create_key(gateway, rpm=5)["key"]
    statuses = []
    for _ in range(7):
        resp = call(gateway, key)
        statuses.append(resp.status_code)
        if resp.status_code == 200:
            assert resp.headers["x-ratelimit-limit-requests"] == "5"
            last_ok = resp
    assert statuses == [200] * 5 + [429] * 2
    assert last_ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert last_ok.headers["x-ratelimit-reset-requests"]
    refused = call(gateway, key)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "key" in refused.json()["error"]["message"]


def test_team_rpm_limit_spans_its_keys(gateway: GatewayProcess) -> None:
    team = create_team(gateway, rpm=4)
    a, b = create_key(gateway, team=team)["key"], create_key(gateway, team=team)["key"]
    statuses = [call(gateway, k).status_code for k in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_key_concurrency_limit(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=3000)  # held through the refused request below
    key = create_key(gateway, max_concurrent=1)["key"]
    first: dict[str, int] = {}
    slow = threading.Thread(
        target=lambda: first.update(status=call(gateway, key, {"model": "hold", "messages": HELLO}).status_code)
    )
    slow.start()
    assert wait_until(lambda: mock.calls("hold-model") == 1, timeout=3)
    # a request that may not wait is refused at once; one that may waits for the slot (tests/e2e/test_queue.py)
    second = call(gateway, key, {"model": "hold", "messages": HELLO}, {"x-gateway-max-wait": "0"})
    assert second.status_code == 429
    assert "concurren" in second.json()["error"]["message"]
    queued = call(gateway, key, {"model": "hold", "messages": HELLO})
    slow.join(timeout=10)
    assert first["status"] == 200
    assert queued.status_code == 200 and mock.calls("hold-model") == 2
    assert call(gateway, key).status_code == 200, "the slot was released"


# --- cache ------------------------------------------------------------------------


def test_cache_hit_does_not_touch_the_upstream(gateway: GatewayProcess, mock: Mock) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("cache me")}], "temperature": 0}
    first = call(gateway, MASTER_KEY, body)
    second = call(gateway, MASTER_KEY, body)
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert second.json()["choices"] == first.json()["choices"]
    assert mock.calls("mock-gpt") == 1
    # the same answer replayed as a stream
    streamed = call(gateway, MASTER_KEY, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert streamed.headers["x-gateway-cache"] == "hit"
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert mock.calls("mock-gpt") == 1
    # client control
    assert call(gateway, MASTER_KEY, body, {"cache-control": "no-cache"}).headers["x-gateway-cache"] == "refresh"
    assert call(gateway, MASTER_KEY, body, {"cache-control": "no-store"}).headers["x-gateway-cache"] == "off"
    assert mock.calls("mock-gpt") == 3


def test_streamed_miss_is_stored_for_non_stream_clients(gateway: GatewayProcess, mock: Mock) -> None:
    body = {"model": "claude", "messages": [{"role": "user", "content": unique("stream")}], "temperature": 0}
    streamed = call(gateway, MASTER_KEY, {**body, "stream": True})
    assert streamed.headers["x-gateway-cache"] == "miss"
    again = call(gateway, MASTER_KEY, body)
    assert again.headers["x-gateway-cache"] == "hit"
    assert "Mock reply" in again.json()["choices"][0]["message"]["content"]
    assert mock.calls("mock-claude") == 1


def test_cache_is_isolated_per_team(gateway: GatewayProcess, mock: Mock) -> None:
    a = create_key(gateway, team=create_team(gateway))["key"]
    b = create_key(gateway, team=create_team(gateway))["key"]
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("team")}], "temperature": 0}
    assert call(gateway, a, body).headers["x-gateway-cache"] == "miss"
    assert call(gateway, b, body).headers["x-gateway-cache"] == "miss"
    assert call(gateway, a, body).headers["x-gateway-cache"] == "hit"
    assert mock.calls("mock-gpt") == 2


def test_sampled_requests_and_errors_are_not_cached(gateway: GatewayProcess, mock: Mock) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("sampled")}], "temperature": 0.7}
    assert call(gateway, MASTER_KEY, body).headers["x-gateway-cache"] == "off"
    mock.behave("fail-model", fail_times=1, error_status=400)
    failing = {"model": "failing", "messages": [{"role": "user", "content": unique("err")}], "temperature": 0}
    assert call(gateway, MASTER_KEY, failing).status_code == 400
    assert call(gateway, MASTER_KEY, failing).headers["x-gateway-cache"] == "miss"


# --- cost and budgets ----------------------------------------------------------------


def test_cost_header_from_the_price_table(gateway: GatewayProcess) -> None:
    resp = call(gateway, MASTER_KEY)
    usage = resp.json()["usage"]
    expected = (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6
    assert float(resp.headers["x-gateway-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    assert resp.headers["x-gateway-price-version"] == "2026-12-06"  # config/prices.yaml


def test_unpriced_model_is_not_costed_at_zero(gateway: GatewayProcess) -> None:
    resp = call(gateway, MASTER_KEY, {"model": "rr", "messages": HELLO})
    assert resp.status_code == 200
    assert "x-gateway-cost-usd" not in resp.headers
    assert wait_until(lambda: "no price for openai model 'rr-" in gateway.log(), timeout=2)


def test_team_budget_refuses_with_insufficient_quota(gateway: GatewayProcess) -> None:
    team = create_team(gateway, budget_daily_usd=0.000001)
    key = create_key(gateway, team=team)["key"]
    assert call(gateway, key).status_code == 200  # spends more than the budget
    refused = call(gateway, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert f"team '{team}'" in error["message"]
    assert int(refused.headers["retry-after"]) > 0
    assert wait_until(lambda: f"budget exhausted: team {team!r}" in gateway.log(), timeout=2)
    assert f"budget threshold: team {team!r}" in gateway.log()
    metrics = gateway.http.get("/metrics").text
    assert f'gateway_budget_limit_usd{{period="daily",scope="team",team="{team}"}} 1e-06' in metrics
    spent = [
        line
        for line in metrics.splitlines()
        if line.startswith(f'gateway_budget_spent_usd{{period="daily",scope="team",team="{team}"}}')
    ]
    assert spent and float(spent[0].split()[-1]) > 1e-06
    for kind in ("threshold", "exhausted"):
        assert f'gateway_budget_events_total{{kind="{kind}",period="daily",scope="team"}}' in metrics


def test_keys_and_spend_survive_a_restart(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url), tmp_path)
    try:
        team = create_team(gw, budget_daily_usd=0.000001)
        key = create_key(gw, team=team)["key"]
        assert call(gw, key).status_code == 200
    finally:
        gw.stop()  # graceful: the spend is flushed to the SQLite file
    again = GatewayProcess(gw.config_path.read_text(), tmp_path)
    try:
        resp = call(again, key)
        assert resp.status_code == 429, "the key survived and so did its team's spend"
        assert resp.json()["error"]["code"] == "insufficient_quota"
    finally:
        again.stop()
