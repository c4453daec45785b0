"""Routing rules end to end, through the client API (gateway/routing/rules.py): a time
window that changes which deployment goes first (and a reload that removes it), a budget
downgrade, conditions on a header, the team and metadata, shadow traffic that never
reaches the client's budget, and rules replaced through the admin API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]
PRICE = "price: {input_per_1m: 10000, output_per_1m: 10000}"
RULES = """
routing_rules:
  - {name: all-day-b-first, alias: tw, kind: time_window, hours: "00:00-24:00", deployments: {1: {priority: -1}}}
  - {name: batch-header, alias: primary, kind: match, when: {header: {X-Tier: batch}}, to: cheap}
  - {name: tagged, alias: primary, kind: match, when: {metadata: {purpose: eval}}, to: cheap}
  - {name: research-team, alias: primary, kind: match, when: {team: [research]}, to: cheap}
  - {name: spent-half, alias: primary, kind: budget_downgrade, scope: key, share: 0.5, to: cheap}
  - {name: try-candidate, alias: shadowed, kind: shadow, to: candidate, share: 1.0}
"""


def config(mock_url: str, rules: str = RULES) -> str:
    v1 = f"{mock_url}/v1"

    def dep(model: str, extra: str = "") -> str:
        return f"{{provider: openai, model: {model}, base_url: '{v1}', api_key: k, {PRICE}{extra}}}"

    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
router: {{pacing: {{enabled: false}}}}
models:
  tw:
    deployments: [{dep("tw-a", ", priority: 0")}, {dep("tw-b", ", priority: 1")}]
  primary: {{deployments: [{dep("rr-primary")}]}}
  cheap: {{deployments: [{dep("rr-cheap")}]}}
  shadowed: {{deployments: [{dep("rr-shadowed")}]}}
  candidate: {{deployments: [{dep("rr-candidate")}]}}
{rules}"""


@pytest.fixture
def ruled(mock: Mock, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(config(mock.url), tmp_path)
    yield gw
    gw.stop()


def key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    resp = gw.http.post("/admin/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}", **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def chat(
    gw: GatewayProcess, token: str, model: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": model, "messages": HELLO, "max_tokens": 5, **body},
        headers={"authorization": f"Bearer {token}", **(headers or {})},
        timeout=30,
    )


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


def test_a_time_window_puts_another_deployment_first_until_a_reload_removes_it(
    ruled: GatewayProcess, mock: Mock
) -> None:
    token = key(ruled)["key"]
    resp = chat(ruled, token, "tw")
    assert resp.status_code == 200 and resp.headers["x-gateway-deployment"] == "tw/1"
    rows = ruled.http.get("/admin/deployments").json()["deployments"]
    shown = {r["id"]: r for r in rows}
    assert "all-day-b-first" in str(shown["tw/1"])  # the rule and its override are shown
    ruled.config_path.write_text(config(mock.url, rules=""))
    ruled.sighup()
    assert wait_until(lambda: ruled.http.get("/ready").json()["reloads"] == 1, timeout=5)
    assert chat(ruled, token, "tw").headers["x-gateway-deployment"] == "tw/0"
    assert mock.calls("tw-a") == 1 and mock.calls("tw-b") == 1


def test_match_rules_on_a_header_and_on_metadata(ruled: GatewayProcess, mock: Mock) -> None:
    token = key(ruled)["key"]
    plain = chat(ruled, token, "primary")
    assert plain.status_code == 200 and "x-gateway-route" not in plain.headers
    batch = chat(ruled, token, "primary", {"x-tier": "batch"})
    assert batch.status_code == 200
    assert batch.headers["x-gateway-route"] == "rule=batch-header; kind=match; from=primary; to=cheap"
    assert batch.headers["x-gateway-deployment"] == "cheap/0"
    tagged = chat(ruled, token, "primary", metadata={"purpose": "eval"})
    assert tagged.headers["x-gateway-route"].startswith("rule=tagged;")
    other = chat(ruled, token, "primary", {"x-tier": "interactive"}, metadata={"purpose": "prod"})
    assert "x-gateway-route" not in other.headers
    assert mock.calls("rr-primary") == 2 and mock.calls("rr-cheap") == 2
    assert ruled.http.post("/admin/teams", json={"id": "research"}).status_code == 201
    member = key(ruled, team="research")["key"]
    assert chat(ruled, member, "primary").headers["x-gateway-route"].startswith("rule=research-team;")
    assert metric(ruled, "gateway_routing_rule_applied_total", rule="batch-header", kind="match") == 1


def test_a_key_past_half_its_budget_is_downgraded(ruled: GatewayProcess, mock: Mock) -> None:
    created = key(ruled, budget_daily_usd=1.0)
    routed = []
    for _ in range(12):
        resp = chat(ruled, created["key"], "primary")
        assert resp.status_code == 200, resp.text
        routed.append(resp.headers.get("x-gateway-route"))
        if routed[-1] is not None:
            break
    assert routed[0] is None, "nothing spent yet: the first request goes where it was sent"
    assert routed[-1] == "rule=spent-half; kind=budget_downgrade; from=primary; to=cheap"
    usage = ruled.http.get("/admin/usage", params={"key_id": created["id"]}).json()
    assert usage, "the spend that tripped the rule is on record"


def test_shadow_traffic_is_recorded_apart_and_never_charged(ruled: GatewayProcess, mock: Mock) -> None:
    created = key(ruled, budget_daily_usd=100.0)
    answers = [chat(ruled, created["key"], "shadowed") for _ in range(3)]
    assert all(a.status_code == 200 and a.headers["x-gateway-deployment"] == "shadowed/0" for a in answers)
    assert wait_until(lambda: mock.calls("rr-candidate") == 3, timeout=5)
    assert wait_until(
        lambda: (
            metric(ruled, "gateway_shadow_requests_total", alias="shadowed", candidate="candidate", outcome="ok") == 3
        )
    )
    assert metric(ruled, "gateway_shadow_cost_usd_total", candidate="candidate") > 0
    # the client's spend is the primary's three answers, the shadow's never
    primary_cost = sum(float(a.headers["x-gateway-cost-usd"]) for a in answers)
    time.sleep(0.3)
    spent = metric(ruled, "gateway_cost_usd_total", alias="shadowed")
    assert spent == pytest.approx(primary_cost, rel=1e-6)
    assert metric(ruled, "gateway_cost_usd_total", alias="candidate") == 0


def test_rules_replaced_through_the_admin_api(ruled: GatewayProcess, mock: Mock) -> None:
    token = key(ruled)["key"]
    rule = {"name": "all-to-cheap", "alias": "primary", "kind": "match", "when": {"header": {"x-run": "1"}}}
    bad = ruled.http.put("/admin/routing-rules", json={"rules": [{**rule, "to": "nowhere"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rules[0].to"
    put = ruled.http.put("/admin/routing-rules", json={"rules": [{**rule, "to": "cheap"}]})
    assert put.status_code == 200, put.text
    assert wait_until(lambda: chat(ruled, token, "primary", {"x-run": "1"}).headers.get("x-gateway-route") is not None)
    assert (
        "x-gateway-route" not in chat(ruled, token, "primary", {"x-tier": "batch"}).headers
    )  # the file's rules are replaced
    assert ruled.http.get("/admin/routing-rules").json()["rules"][0]["name"] == "all-to-cheap"
    assert ruled.http.delete("/admin/routing-rules").status_code == 200
    assert wait_until(lambda: "x-gateway-route" in chat(ruled, token, "primary", {"x-tier": "batch"}).headers)
