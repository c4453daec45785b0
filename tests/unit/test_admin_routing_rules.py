"""gateway.admin.routing_rules and /admin/deployments: the routing rules through the admin API
over a real GatewayApp (embedded backend in a temporary file) driven in process, its upstream
the project's mock server on loopback; stored rules applied at once, kept over a restart,
replaced by the file's on DELETE; a reloaded config file rebuilds the rule book."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.admin.model_store import StoredRules
from gateway.app.gateway_app import create_app
from gateway.config.loader import load_config
from gateway.config.rules import MatchRule
from gateway.mock import MockConfig
from gateway.mock.testing import MockServer

MASTER = "sk-unit-master-key-0001"
FILE_RULE = "  - {name: from-file, alias: chat, kind: shadow, to: cheap, share: 0.5}\n"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(MockConfig()) as server:
        yield server


def config_text(mock_url: str, tmp: Path, rules: str = FILE_RULE) -> str:
    dep = f"{{provider: openai, model: mock-gpt, base_url: '{mock_url}/v1', api_key: k}}"
    return f"""
auth: {{master_key: {MASTER}}}
admin: {{scrypt_n: 16384}}
state: {{path: '{tmp / "state.db"}', refresh_interval_s: 0.1, flush_interval_s: 0.1}}
models:
  chat: {{deployments: [{dep}, {dep}]}}
  cheap: {{deployments: [{dep}]}}
  vectors: {{kind: embedding, deployments: [{{provider: openai, model: e, base_url: '{mock_url}/v1', api_key: k}}]}}
routing_rules:
{rules}"""


@pytest.fixture
def path(mock: MockServer, tmp_path: Path) -> Path:
    file = tmp_path / "gateway.yaml"
    file.write_text(config_text(mock.url, tmp_path))
    return file


def started(path: Path) -> TestClient:
    return TestClient(create_app(load_config(path), config_path=path), headers={"authorization": f"Bearer {MASTER}"})


@pytest.fixture
def client(path: Path) -> Iterator[TestClient]:
    with started(path) as client:
        yield client


def in_force(client: TestClient) -> list[str]:
    app: Any = client.app
    return [r.name for r in app.service.rules.rules]


MATCH = {"name": "free", "alias": "chat", "kind": "match", "when": {"header": {"x-tier": "free"}}, "to": "cheap"}
ALL_DAY = {"name": "prefer-1", "alias": "chat", "kind": "time_window", "deployments": {"1": {"priority": -5}}}


def error(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    return body


def test_the_file_rules_are_shown_until_rules_are_stored(client: TestClient) -> None:
    body = client.get("/admin/routing-rules").json()
    assert body["source"] == "config" and body["updated_at"] is None
    assert [r["name"] for r in body["rules"]] == ["from-file"] and body["in_force"] == ["from-file"]
    assert body["active_windows"] == []


def test_put_stores_replaces_the_file_rules_and_applies_them_at_once(client: TestClient) -> None:
    resp = client.put("/admin/routing-rules", json={"rules": [MATCH, ALL_DAY]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["source"] == "api" and body["updated_by"] == "master" and body["rules"] == [MATCH, ALL_DAY]
    assert body["in_force"] == ["free", "prefer-1"] and body["active_windows"] == ["prefer-1"]
    assert in_force(client) == ["free", "prefer-1"]
    app: Any = client.app
    rule = app.service.rules.for_alias("chat")[0]
    assert isinstance(rule, MatchRule) and rule.to == "cheap"
    assert app.service.routes["chat"].deployments[1].spec.priority == -5  # the window is in force
    assert client.get("/admin/routing-rules").json() == body


def test_deployments_show_the_rules_and_the_window_overrides(client: TestClient) -> None:
    client.put("/admin/routing-rules", json={"rules": [MATCH, ALL_DAY]})
    rows = {r["id"]: r for r in client.get("/admin/deployments").json()["deployments"]}
    first, second, cheap = rows["chat/0"], rows["chat/1"], rows["cheap/0"]
    assert first["rules"] == [{"name": "free", "kind": "match"}, {"name": "prefer-1", "kind": "time_window"}]
    assert first["window"] is None and first["priority"] == 0
    assert second["priority"] == -5 and second["weight"] == 1.0
    assert second["window"] == {
        "rules": ["prefer-1"],
        "priority": -5,
        "weight": None,
        "configured": {"priority": 0, "weight": 1.0},
    }
    assert cheap["rules"] == [] and cheap["window"] is None


@pytest.mark.parametrize(
    ("rules", "param", "words"),
    [
        ([{**MATCH, "to": "nope"}], "rules[0].to", "routing_rules[0].to: unknown model alias 'nope'"),
        ([MATCH, {**MATCH, "to": "vectors"}], "rules[1].name", "duplicate rule name 'free'"),
        ([{**MATCH, "share": 0.5}], "rules[0].share", "unknown key"),
        ([{**MATCH, "kind": "sometimes"}], "rules[0]", "kind must be one of"),
        ([{**ALL_DAY, "deployments": {"7": {"priority": 1}}}], "rules[0].deployments.7", "has no deployment '7'"),
        ([{**ALL_DAY, "hours": "9-5"}], "rules[0].hours", "HH:MM-HH:MM"),
    ],
)
def test_a_bad_rule_is_400_naming_its_path_and_nothing_changes(
    client: TestClient, rules: list[Any], param: str, words: str
) -> None:
    resp = client.put("/admin/routing-rules", json={"rules": rules})
    assert resp.status_code == 400, resp.text
    err = error(resp)
    assert err["code"] == "invalid_routing_rules" and err["param"] == param and words in err["message"]
    assert client.get("/admin/routing-rules").json()["source"] == "config"
    assert in_force(client) == ["from-file"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([MATCH], "body"),
        ({"rules": MATCH}, "rules"),
        ({"rules": [MATCH], "extra": 1}, "extra"),
        ({"rules": [{**MATCH, "when": {"header": {"x-tier": "${SECRET_VAR}"}}}]}, "rules[0].when.header.x-tier"),
    ],
)
def test_a_bad_body_is_400(client: TestClient, body: Any, param: str) -> None:
    resp = client.put("/admin/routing-rules", json=body)
    assert resp.status_code == 400 and error(resp)["param"] == param, resp.text


def test_delete_reverts_to_the_file_rules(client: TestClient) -> None:
    assert client.delete("/admin/routing-rules").status_code == 404
    assert error(client.delete("/admin/routing-rules"))["code"] == "routing_rules_not_stored"
    client.put("/admin/routing-rules", json={"rules": []})
    assert in_force(client) == []  # an empty stored set switches the file's rules off
    resp = client.delete("/admin/routing-rules")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["deleted"] is True and body["reverted_to_config"] is True and body["source"] == "config"
    assert in_force(client) == ["from-file"]


def test_a_model_change_that_breaks_a_stored_rule_is_refused(client: TestClient, mock: MockServer) -> None:
    extra = {"deployments": [{"provider": "openai", "model": "mock-gpt", "base_url": f"{mock.url}/v1"}]}
    assert client.post("/admin/models", json={"name": "extra", **extra}).status_code == 201
    assert client.put("/admin/routing-rules", json={"rules": [{**MATCH, "to": "extra"}]}).status_code == 200
    resp = client.delete("/admin/models/extra")
    assert resp.status_code == 409 and "routing_rules[0].to: unknown model alias 'extra'" in error(resp)["message"]
    assert client.post("/admin/models/extra/disable").status_code == 200  # switched off: the rule goes with it
    assert in_force(client) == []
    assert client.post("/admin/models/extra/enable").status_code == 200
    assert in_force(client) == ["free"]


def test_every_change_is_audited(client: TestClient) -> None:
    client.put("/admin/routing-rules", json={"rules": [MATCH]})
    client.put("/admin/routing-rules", json={"rules": [ALL_DAY]})
    client.delete("/admin/routing-rules")
    records = [r for r in client.get("/admin/audit").json()["data"] if r["target"] == "routing-rules"]
    assert [r["action"] for r in records] == ["routing_rules.delete", "routing_rules.update", "routing_rules.update"]
    delete, second, first = records
    assert first["before"][0]["name"] == "from-file" and first["after"] == [MATCH]
    assert second["before"] == [MATCH] and second["after"] == [ALL_DAY]
    assert delete["before"] == [ALL_DAY] and delete["after"] is None


def test_reads_need_viewer_and_writes_admin(client: TestClient) -> None:
    tokens = {}
    for role in ("viewer", "operator"):
        name, password = f"{role}-user", "A-long-enough-passw0rd"
        assert (
            client.post("/admin/users", json={"username": name, "password": password, "role": role}).status_code == 201
        )
        login = client.post(
            "/admin/login", json={"username": name, "password": password}, headers={"authorization": ""}
        )
        tokens[role] = {"authorization": f"Bearer {login.json()['access_token']}"}
    assert client.get("/admin/routing-rules", headers=tokens["viewer"]).status_code == 200
    for role in ("viewer", "operator"):
        resp = client.put("/admin/routing-rules", json={"rules": []}, headers=tokens[role])
        assert resp.status_code == 403 and error(resp)["code"] == "insufficient_role"
        assert client.delete("/admin/routing-rules", headers=tokens[role]).status_code == 403
    assert client.get("/admin/routing-rules", headers={"authorization": ""}).status_code == 401


def test_stored_rules_survive_a_restart(path: Path) -> None:
    with started(path) as client:
        assert client.put("/admin/routing-rules", json={"rules": [MATCH]}).status_code == 200
    with started(path) as client:
        assert in_force(client) == ["free"]
        assert client.get("/admin/routing-rules").json()["source"] == "api"


def test_a_reloaded_file_rebuilds_the_rule_book(client: TestClient, path: Path, mock: MockServer) -> None:
    rule = "  - {name: reloaded, alias: chat, kind: match, when: {team: [t1]}, to: cheap}\n"
    path.write_text(config_text(mock.url, path.parent, rule))
    app: Any = client.app
    assert client.portal is not None and client.portal.call(app.reload) is True  # what SIGHUP runs
    assert in_force(client) == ["reloaded"]
    assert client.post("/admin/reload").status_code == 200
    assert client.get("/admin/routing-rules").json()["rules"][0]["name"] == "reloaded"
    path.write_text(config_text(mock.url, path.parent, "  - {name: bad, alias: chat, kind: match, to: cheap}\n"))
    resp = client.post("/admin/reload")
    assert resp.status_code == 409 and "routing_rules[0].when: Field required" in error(resp)["message"]
    assert in_force(client) == ["reloaded"]  # a bad file changes nothing
    client.put("/admin/routing-rules", json={"rules": [MATCH]})
    path.write_text(config_text(mock.url, path.parent))
    assert client.post("/admin/reload").status_code == 200
    assert in_force(client) == ["free"]  # stored rules stay over the file's


def test_a_reload_keeps_the_deployment_a_window_changed(client: TestClient) -> None:
    client.put("/admin/routing-rules", json={"rules": [ALL_DAY]})
    app: Any = client.app
    before = app.service.routes["chat"].deployments[1]
    assert before.spec.priority == -5
    assert client.post("/admin/reload").status_code == 200
    after = app.service.routes["chat"].deployments[1]
    assert after is before and after.spec.priority == -5  # breaker and latency history kept


def test_stored_rules_that_no_longer_build_are_not_applied(path: Path) -> None:
    with started(path) as client:
        app: Any = client.app
        portal = client.portal
        assert portal is not None
        bad = StoredRules([{**MATCH, "to": "nowhere"}], "2026-01-01T00:00:00+00:00", "someone")
        portal.call(app.model_store.put_rules, bad)  # as another replica of another version might
        portal.call(app.refresh_models)
        assert in_force(client) == ["from-file"]  # the previous rules stay in force
        assert app.metrics.registry.get_sample_value("gateway_config_reloads_total", {"result": "rejected"}) == 1
    with started(path) as again:  # a restart starts with the file alone rather than not at all
        assert in_force(again) == ["from-file"]


def test_a_malformed_rules_record_is_ignored(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    app: Any = client.app
    assert client.portal is not None
    client.portal.call(app.backend.put, "routing_rules", "rules", {"rules": "not a list"})
    assert client.portal.call(app.model_store.rules) is None
    assert "malformed stored routing rules" in caplog.text
    assert client.get("/admin/routing-rules").json()["source"] == "config"
