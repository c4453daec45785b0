"""Runtime models on two gateway replicas sharing one real Redis: a model
created, changed, disabled or deleted through the admin API of one replica
is in force on both without a restart; usage reports the spend of both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, wait_until
from tests.redis_server import RedisServer

HELLO: Any = [{"role": "user", "content": "Hello there"}]
PROPAGATION_S = 10.0
"""Upper bound for a poll loop (refresh_interval_s is 0.2 s): not a timing assertion."""


def config(mock: Mock, server: RedisServer) -> str:
    return f"""
state: {{backend: redis, url: '{server.url}', flush_interval_s: 0.2, refresh_interval_s: 0.2}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
models:
  chat:
    deployments: [{{provider: openai, model: mock-gpt, base_url: '{mock.url}/v1', api_key: "${{MOCK_KEY}}"}}]
"""


@pytest.fixture(scope="module")
def replicas(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with RedisServer() as server:
        env = {"MOCK_KEY": "mock-key-value"}
        a = GatewayProcess(config(mock, server), Path(tmp_path_factory.mktemp("models-a")), extra_env=env)
        b = GatewayProcess(config(mock, server), Path(tmp_path_factory.mktemp("models-b")), extra_env=env)
        yield a, b
        a.stop()
        b.stop()


def model(mock: Mock, name: str, upstream: str = "mock-gpt", version: str = "v1") -> dict[str, Any]:
    """One deployment, id ``<name>.<version>`` (deployment ids are unique across aliases)."""
    return {
        "name": name,
        "deployments": [
            {
                "id": f"{name}.{version}",
                "provider": "openai",
                "model": upstream,
                "base_url": f"{mock.url}/v1",
                "api_key": "${MOCK_KEY}",
                "price": {"input_per_1m": 1000.0, "output_per_1m": 2000.0},
            }
        ],
    }


def chat(gw: GatewayProcess, alias: str) -> httpx.Response:
    return gw.http.post("/v1/chat/completions", json={"model": alias, "messages": HELLO})


def served_by(gw: GatewayProcess, alias: str) -> str | None:
    resp = chat(gw, alias)
    return resp.headers.get("x-gateway-deployment") if resp.status_code == 200 else None


def code_of(resp: httpx.Response) -> str | None:
    return resp.json().get("error", {}).get("code") if resp.status_code >= 400 else None


def unique() -> str:
    return f"rt-{uuid.uuid4().hex[:8]}"


def test_created_model_serves_on_both_replicas(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    alias = unique()
    assert code_of(chat(b, alias)) == "model_not_found"
    resp = a.http.post("/admin/models", json=model(mock, alias))
    assert resp.status_code == 201, resp.text
    assert served_by(a, alias) == f"{alias}.v1"  # in force on A before the answer
    assert wait_until(lambda: served_by(b, alias) == f"{alias}.v1", PROPAGATION_S), b.log()[-3000:]
    assert b.http.get(f"/admin/models/{alias}").json()["active"] is True


def test_patch_changes_routing_everywhere(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    alias = unique()
    a.http.post("/admin/models", json=model(mock, alias)).raise_for_status()
    assert wait_until(lambda: served_by(b, alias) == f"{alias}.v1", PROPAGATION_S)
    second = model(mock, alias, upstream="mock-gpt-second", version="v2")["deployments"]
    resp = b.http.patch(f"/admin/models/{alias}", json={"deployments": second})
    assert resp.status_code == 200, resp.text
    assert wait_until(
        lambda: served_by(a, alias) == f"{alias}.v2" and served_by(b, alias) == f"{alias}.v2", PROPAGATION_S
    )
    assert mock.calls("mock-gpt-second") >= 2


def test_disable_enable_and_delete_apply_on_both(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    alias = unique()
    a.http.post("/admin/models", json=model(mock, alias)).raise_for_status()
    assert wait_until(lambda: served_by(b, alias) == f"{alias}.v1", PROPAGATION_S)
    assert a.http.post(f"/admin/models/{alias}/disable").status_code == 200
    both_gone = lambda: code_of(chat(a, alias)) == code_of(chat(b, alias)) == "model_not_found"  # noqa: E731
    assert wait_until(both_gone, PROPAGATION_S)
    assert b.http.post(f"/admin/models/{alias}/enable").status_code == 200
    assert wait_until(lambda: served_by(a, alias) == served_by(b, alias) == f"{alias}.v1", PROPAGATION_S)
    assert b.http.delete(f"/admin/models/{alias}").json()["deleted"] is True
    assert wait_until(both_gone, PROPAGATION_S)
    assert a.http.get(f"/admin/models/{alias}").status_code == 404


def test_get_body_posts_back_on_the_other_replica(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    alias = unique()
    a.http.post("/admin/models", json={**model(mock, alias), "description": "round trip"}).raise_for_status()
    body = a.http.get(f"/admin/models/{alias}").json()
    assert a.http.delete(f"/admin/models/{alias}").status_code == 200
    assert wait_until(lambda: b.http.get(f"/admin/models/{alias}").status_code == 404, PROPAGATION_S)
    resp = b.http.post("/admin/models", json=body)
    assert resp.status_code == 201, resp.text
    assert {k: v for k, v in resp.json().items() if k != "updated_at"} == {
        k: v for k, v in body.items() if k != "updated_at"
    }
    assert wait_until(lambda: served_by(a, alias) == f"{alias}.v1", PROPAGATION_S)


def test_bad_bodies_are_400_naming_the_field(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, _ = replicas
    body = model(mock, unique())
    body["deployments"][0]["weight"] = -1
    resp = a.http.post("/admin/models", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "deployments[0].weight"
    body = model(mock, unique())
    body["deployments"][0]["api_key"] = "${GATEWAY_MASTER_KEY}"  # not a variable the file's models use
    resp = a.http.post("/admin/models", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "env_not_allowed"
    assert MASTER_KEY not in resp.text


def test_usage_reports_the_spend_of_both_replicas(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    alias = unique()
    a.http.post("/admin/models", json=model(mock, alias)).raise_for_status()
    assert wait_until(lambda: b.http.get(f"/admin/models/{alias}").json().get("active") is True, PROPAGATION_S)
    answers = [chat(gw, alias) for gw in (a, b, a, b)]
    cost = sum(float(r.headers["x-gateway-cost-usd"]) for r in answers)
    tokens = sum(r.json()["usage"]["total_tokens"] for r in answers)

    def report() -> dict[str, Any]:
        rows = a.http.get("/admin/usage", params={"group_by": "alias", "id": alias}).json()["data"]
        return rows[0] if rows else {}

    assert wait_until(lambda: report().get("requests") == 4, PROPAGATION_S), report()
    row = report()
    assert row["alias"] == alias and row["total_tokens"] == tokens
    assert row["spend_usd"] == pytest.approx(cost, rel=1e-6)
