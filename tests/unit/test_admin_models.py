"""gateway.admin.models and gateway.admin.usage: the runtime models API over a
real GatewayApp (embedded backend in a temporary file) driven in process,
its upstream the project's mock server on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import __version__
from gateway.admin.openapi import load_document
from gateway.app.gateway_app import create_app
from gateway.config.loader import load_config
from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from gateway.security.secrets import SECRETS_KEY_ENV

MASTER = "sk-unit-master-key-0001"
HELLO: Any = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(MockConfig()) as server:
        yield server


def config_text(mock_url: str, tmp: Path, extra_models: str = "") -> str:
    return f"""
auth: {{master_key: {MASTER}}}
admin: {{scrypt_n: 16384}}
state: {{path: '{tmp / "state.db"}', refresh_interval_s: 0.1, flush_interval_s: 0.1}}
models:
  chat:
    deployments: [{{provider: openai, model: mock-gpt, base_url: '{mock_url}/v1', api_key: "${{MOCK_KEY}}"}}]
  literal:
    deployments: [{{provider: openai, model: mock-gpt, base_url: '{mock_url}/v1', api_key: sk-literal-file-key-12345}}]
{extra_models}"""


@pytest.fixture
def secrets_key() -> str | None:
    return None


@pytest.fixture
def setup(
    mock: MockServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secrets_key: str | None
) -> Iterator[tuple[TestClient, Path]]:
    monkeypatch.setenv("MOCK_KEY", "mock-secret-value")
    if secrets_key is None:
        monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRETS_KEY_ENV, secrets_key)
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(mock.url, tmp_path))
    app = create_app(load_config(path), config_path=path)
    with TestClient(app, headers={"authorization": f"Bearer {MASTER}"}) as client:
        yield client, path


@pytest.fixture
def client(setup: tuple[TestClient, Path]) -> TestClient:
    return setup[0]


def new_model(mock: MockServer, name: str = "runtime", model: str = "mock-gpt", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "deployments": [
            {
                "provider": "openai",
                "model": model,
                "base_url": f"{mock.url}/v1",
                "api_key": "${MOCK_KEY}",
                "price": {"input_per_1m": 1000.0, "output_per_1m": 2000.0},
            }
        ],
        **extra,
    }


def chat(client: TestClient, alias: str) -> Any:
    return client.post("/v1/chat/completions", json={"model": alias, "messages": HELLO})


def error(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    return body


# --- create, read, round trip ---------------------------------------------------------


def test_created_model_serves_traffic_at_once(client: TestClient, mock: MockServer) -> None:
    assert chat(client, "runtime").status_code == 404
    resp = client.post("/admin/models", json=new_model(mock))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["source"] == "api" and body["active"] is True and body["disabled"] is False
    answer = chat(client, "runtime")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gateway-deployment"] == "runtime/0"
    assert "runtime" in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_get_body_posts_back_unchanged(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock, fallbacks=["chat"], description="copy me"))
    body = client.get("/admin/models/runtime").json()
    assert client.delete("/admin/models/runtime").status_code == 200
    assert client.post("/admin/models", json=body).status_code == 201
    again = client.get("/admin/models/runtime").json()
    assert {k: v for k, v in again.items() if k != "updated_at"} == {k: v for k, v in body.items() if k != "updated_at"}


def test_listing_shows_file_and_stored_aliases_with_secrets_masked(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    data = {m["name"]: m for m in client.get("/admin/models").json()["data"]}
    assert set(data) == {"chat", "literal", "runtime"}
    assert data["chat"]["source"] == "config"
    assert data["chat"]["deployments"][0]["api_key"] == "${MOCK_KEY}"  # a reference, not a secret
    shown = data["literal"]["deployments"][0]["api_key"]
    assert shown == "****2345" and "sk-literal" not in client.get("/admin/models").text


def test_unknown_alias_is_404(client: TestClient) -> None:
    for resp in (
        client.get("/admin/models/nope"),
        client.patch("/admin/models/nope", json={"description": "x"}),
        client.delete("/admin/models/nope"),
        client.post("/admin/models/nope/disable"),
    ):
        assert resp.status_code == 404 and error(resp)["code"] == "model_not_found"


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        (
            {"deployments": [{"provider": "openai", "model": "m", "weight": 0}]},
            "deployments[0].weight",
            "greater than 0",
        ),
        ({"deployments": []}, "deployments", "at least 1"),
        ({"strategy": "fastest"}, "strategy", "priority"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"fallbacks": ["missing"]}, "fallbacks[0]", "unknown model alias 'missing'"),
        ({"deployments": [{"provider": "openai_compatible", "model": "m"}]}, "deployments[0]", "base_url is required"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: TestClient, mock: MockServer, change: dict[str, Any], param: str, words: str
) -> None:
    resp = client.post("/admin/models", json={**new_model(mock), **change})
    assert resp.status_code == 400, resp.text
    assert error(resp)["param"] == param
    assert f"models.runtime.{param}" in error(resp)["message"] and words in error(resp)["message"]
    assert client.get("/admin/models/runtime").status_code == 404  # nothing stored


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ([1, 2], "body", "invalid_json"),
        ({"deployments": []}, "name", "missing_field"),
        ({"name": "has space"}, "name", "invalid_field"),
        ({"name": "a:b"}, "name", "invalid_field"),
        ({"name": "x", "disabled": "yes"}, "disabled", "invalid_field"),
    ],
)
def test_bad_names_and_shapes_are_400(client: TestClient, body: Any, param: str, code: str) -> None:
    resp = client.post("/admin/models", json=body)
    assert resp.status_code == 400 and error(resp)["param"] == param and error(resp)["code"] == code


def test_invalid_json_is_400(client: TestClient) -> None:
    resp = client.post("/admin/models", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and error(resp)["code"] == "invalid_json"


def test_literal_secrets_need_the_secrets_key_and_unlisted_variables_are_refused(
    client: TestClient, mock: MockServer
) -> None:
    literal = new_model(mock)
    literal["deployments"][0]["api_key"] = "sk-live-0123456789abcdef"
    resp = client.post("/admin/models", json=literal)
    assert resp.status_code == 400 and error(resp)["param"] == "deployments[0].api_key"
    assert error(resp)["code"] == "secrets_not_configured" and "sk-live" not in resp.text
    header = new_model(mock)
    header["deployments"][0]["headers"] = {"X-Api-Key": "plain-text-secret"}
    resp = client.post("/admin/models", json=header)
    assert resp.status_code == 400 and error(resp)["param"] == "deployments[0].headers.X-Api-Key"
    mixed = new_model(mock)
    mixed["deployments"][0]["api_key"] = "sk-${MOCK_KEY}"
    resp = client.post("/admin/models", json=mixed)
    assert resp.status_code == 400 and error(resp)["param"] == "deployments[0].api_key"
    other_env = new_model(mock)
    other_env["deployments"][0]["base_url"] = "${HOME}"
    resp = client.post("/admin/models", json=other_env)
    assert resp.status_code == 400 and error(resp)["code"] == "env_not_allowed"
    assert error(resp)["param"] == "deployments[0].base_url"
    needs = new_model(mock, requires_env=["PATH"])
    resp = client.post("/admin/models", json=needs)
    assert resp.status_code == 400 and error(resp)["param"] == "requires_env"
    assert client.get("/admin/models/runtime").status_code == 404


def test_a_missing_secret_reference_is_400_naming_the_field(client: TestClient, mock: MockServer) -> None:
    body = new_model(mock)
    body["deployments"][0]["api_key"] = "secret:nowhere"
    resp = client.post("/admin/models", json=body)
    assert resp.status_code == 400 and error(resp)["param"] == "deployments[0].api_key"
    assert "secret:nowhere cannot be opened" in error(resp)["message"]


def test_existing_alias_cannot_be_posted_again(client: TestClient, mock: MockServer) -> None:
    resp = client.post("/admin/models", json=new_model(mock, name="chat"))
    assert resp.status_code == 409 and error(resp)["code"] == "model_exists"


# --- changes -------------------------------------------------------------------------


def test_patch_changes_routing(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    second = {**new_model(mock)["deployments"][0], "id": "second", "model": "mock-gpt-2"}
    resp = client.patch("/admin/models/runtime", json={"deployments": [second]})
    assert resp.status_code == 200, resp.text
    assert chat(client, "runtime").headers["x-gateway-deployment"] == "second"


def test_patch_cannot_rename_and_validates(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    resp = client.patch("/admin/models/runtime", json={"name": "other"})
    assert resp.status_code == 400 and error(resp)["param"] == "name"
    resp = client.patch("/admin/models/runtime", json={"context_window": 0})
    assert resp.status_code == 400 and error(resp)["param"] == "context_window"


def test_masked_key_sent_back_means_unchanged(client: TestClient) -> None:
    body = client.get("/admin/models/literal").json()
    resp = client.put("/admin/models/literal", json={**body, "description": "edited"})
    # the file's literal key is unmasked again, then needs the secrets store to be kept
    assert resp.status_code == 400 and error(resp)["code"] == "secrets_not_configured"
    body["deployments"][0]["api_key"] = "****9999"
    resp = client.put("/admin/models/literal", json=body)
    assert resp.status_code == 400 and error(resp)["param"] == "deployments[0].api_key"
    assert "matches no current secret" in error(resp)["message"]


def test_override_of_a_file_alias_and_delete_reverts(client: TestClient, mock: MockServer) -> None:
    resp = client.patch("/admin/models/chat", json={"description": "from the API"})
    assert resp.status_code == 200 and resp.json()["source"] == "api_override"
    assert resp.json()["deployments"][0]["api_key"] == "${MOCK_KEY}"
    resp = client.delete("/admin/models/chat")
    assert resp.json() == {"name": "chat", "deleted": True, "reverted_to_config": True}
    assert client.get("/admin/models/chat").json()["source"] == "config"
    assert chat(client, "chat").status_code == 200


def test_a_file_alias_cannot_be_deleted_only_disabled(client: TestClient) -> None:
    resp = client.delete("/admin/models/chat")
    assert resp.status_code == 409 and error(resp)["code"] == "defined_in_config"
    assert client.post("/admin/models/chat/disable").json()["disabled"] is True
    resp = chat(client, "chat")
    assert resp.status_code == 404 and error(resp)["code"] == "model_not_found"
    assert client.get("/admin/models/chat").json()["active"] is False
    assert client.post("/admin/models/chat/enable").json()["active"] is True
    assert chat(client, "chat").status_code == 200


def test_disable_then_enable_a_runtime_model(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    assert client.patch("/admin/models/runtime", json={"disabled": True}).json()["disabled"] is True
    assert error(chat(client, "runtime"))["code"] == "model_not_found"
    assert client.post("/admin/models/runtime/enable").status_code == 200
    assert chat(client, "runtime").status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"disabled": false}'])
def test_disable_and_enable_take_no_body(client: TestClient, mock: MockServer, body: bytes) -> None:
    client.post("/admin/models", json=new_model(mock))
    for action in ("disable", "enable"):
        resp = client.post(f"/admin/models/runtime/{action}", content=body)
        assert resp.status_code == 400 and error(resp)["code"] == "unexpected_body" and error(resp)["param"] == "body"
    assert chat(client, "runtime").status_code == 200, "nothing changed"
    assert client.post("/admin/models/runtime/disable", json={}).status_code == 200  # {} is no body


def test_deleting_a_fallback_target_is_a_conflict(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock, name="target"))
    client.post("/admin/models", json=new_model(mock, name="user", fallbacks=["target"]))
    resp = client.delete("/admin/models/target")
    assert resp.status_code == 409 and error(resp)["code"] == "config_conflict"
    assert "models.user.fallbacks[0]" in error(resp)["message"]
    assert client.post("/admin/models/target/disable").status_code == 200  # disabling drops the reference
    assert chat(client, "user").status_code == 200


def test_alias_names_may_hold_a_slash(client: TestClient, mock: MockServer) -> None:
    assert client.post("/admin/models", json=new_model(mock, name="team/model")).status_code == 201
    assert client.get("/admin/models/team/model").json()["name"] == "team/model"
    assert client.post("/admin/models/team/model/disable").json()["disabled"] is True
    assert client.delete("/admin/models/team/model").status_code == 200


# --- reload, usage, document ---------------------------------------------------------------


def test_reload_applies_the_file_and_keeps_stored_models(setup: tuple[TestClient, Path], mock: MockServer) -> None:
    client, path = setup
    client.post("/admin/models", json=new_model(mock))
    path.write_text(config_text(mock.url, path.parent, "  extra: {deployments: [{provider: openai, model: m}]}\n"))
    resp = client.post("/admin/reload")
    assert resp.status_code == 200 and {"extra", "runtime", "chat"} <= set(resp.json()["models"])
    path.write_text(
        config_text(mock.url, path.parent, "  extra: {deployments: [{provider: openai, model: m, weight: -1}]}\n")
    )
    resp = client.post("/admin/reload")
    assert resp.status_code == 409 and error(resp)["code"] == "config_invalid"
    assert "models.extra.deployments[0].weight" in error(resp)["message"]
    assert chat(client, "runtime").status_code == 200  # the previous config stays


def test_usage_reports_the_spend_of_requests(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    answers = [chat(client, "runtime") for _ in range(3)]
    cost = sum(float(a.headers["x-gateway-cost-usd"]) for a in answers)
    tokens = sum(a.json()["usage"]["total_tokens"] for a in answers)
    by_alias = client.get("/admin/usage", params={"group_by": "alias"}).json()
    row = next(r for r in by_alias["data"] if r["alias"] == "runtime")
    assert row["requests"] == 3 and row["total_tokens"] == tokens
    assert row["spend_usd"] == pytest.approx(cost, rel=1e-6)
    by_key = client.get("/admin/usage", params={"group_by": "key", "id": "master"}).json()
    assert by_key["data"][0]["key"] == "master" and by_key["data"][0]["spend_usd"] == pytest.approx(cost, rel=1e-6)
    by_day = client.get("/admin/usage").json()
    assert by_day["data"][0]["requests"] == 3 and by_day["total"]["requests"] == 3


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),
    ],
)
def test_bad_usage_queries_are_400(client: TestClient, params: dict[str, str], param: str) -> None:
    resp = client.get("/admin/usage", params=params)
    assert resp.status_code == 400 and error(resp)["param"] == param


def test_admin_routes_need_the_master_key(client: TestClient) -> None:
    for method, path in (("GET", "/admin/models"), ("POST", "/admin/reload"), ("GET", "/admin/usage")):
        assert client.request(method, path, headers={"authorization": "Bearer wrong-key-123"}).status_code == 401


def token_for(client: TestClient, role: str) -> dict[str, str]:
    """Headers of a fresh admin user with ``role``, logged in."""
    name = f"{role}-user"
    password = "A-long-enough-passw0rd"
    created = client.post("/admin/users", json={"username": name, "password": password, "role": role})
    assert created.status_code == 201, created.text
    login = client.post("/admin/login", json={"username": name, "password": password}, headers={"authorization": ""})
    assert login.status_code == 200, login.text
    return {"authorization": f"Bearer {login.json()['access_token']}"}


def test_roles_reads_viewer_enable_disable_operator_writes_admin(client: TestClient, mock: MockServer) -> None:
    viewer, operator = token_for(client, "viewer"), token_for(client, "operator")
    assert client.get("/admin/models", headers=viewer).status_code == 200
    assert client.get("/admin/usage", headers=viewer).status_code == 200
    assert client.get("/admin/openapi.json", headers=viewer).status_code == 200
    resp = client.post("/admin/models/chat/disable", headers=viewer)
    assert resp.status_code == 403 and error(resp)["code"] == "insufficient_role"
    assert client.post("/admin/models/chat/disable", headers=operator).status_code == 200
    assert client.post("/admin/models/chat/enable", headers=operator).status_code == 200
    for method, path in (("POST", "/admin/models"), ("PATCH", "/admin/models/chat"), ("POST", "/admin/reload")):
        resp = client.request(method, path, json=new_model(mock), headers=operator)
        assert resp.status_code == 403, (method, path)
    assert client.delete("/admin/models/chat", headers=operator).status_code == 403


def test_every_write_is_audited_without_secrets(client: TestClient, mock: MockServer) -> None:
    client.post("/admin/models", json=new_model(mock))
    client.patch("/admin/models/runtime", json={"description": "changed"})
    client.post("/admin/models/runtime/disable")
    client.delete("/admin/models/runtime")
    records = client.get("/admin/audit").json()["data"]
    mine = [(r["action"], r["target"]) for r in records if r["target"] == "models/runtime"]
    assert mine == [
        ("models.delete", "models/runtime"),
        ("models.update", "models/runtime"),
        ("models.update", "models/runtime"),
        ("models.create", "models/runtime"),
    ]
    assert "mock-secret-value" not in client.get("/admin/audit").text


def _app_routes(client: TestClient) -> set[tuple[str, str]]:
    app: Any = client.app
    out = set()
    for route in app._other.routes:
        if isinstance(route, Route) and route.path.startswith("/admin"):
            path = route.path.replace(":path}", "}")
            out |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return out


def test_openapi_document_lists_exactly_the_admin_routes(client: TestClient) -> None:
    served = client.get("/admin/openapi.json").json()
    assert served == load_document()
    assert served["info"]["version"] == __version__
    documented = {
        (method.upper(), path)
        for path, ops in served["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    routes = _app_routes(client)
    assert routes - documented == set(), "routes missing from gateway/admin/openapi.yaml"
    assert documented - routes == set(), "documented routes the app does not serve"


# --- with the secrets store ------------------------------------------------------------

KEY_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("secrets_key", [KEY_B64])
def test_literal_key_is_sealed_and_served(client: TestClient, mock: MockServer) -> None:
    body = new_model(mock)
    body["deployments"][0]["api_key"] = "sk-live-0123456789abcdef"
    resp = client.post("/admin/models", json=body)
    assert resp.status_code == 201, resp.text
    ref = "secret:model.runtime.deployments_0_.api_key"
    assert resp.json()["deployments"][0]["api_key"] == ref
    assert "sk-live" not in resp.text and "sk-live" not in client.get("/admin/models").text
    app: Any = client.app
    assert app.service.routes["runtime"].deployments[0].spec.api_key == "sk-live-0123456789abcdef"
    assert chat(client, "runtime").status_code == 200
    shown = client.get("/admin/secrets/model.runtime.deployments_0_.api_key").json()
    assert shown["ref"] == ref and "sk-live-0123" not in str(shown)
    again = client.get("/admin/models/runtime").json()  # posts back with the reference
    assert client.delete("/admin/models/runtime").status_code == 200
    assert client.get("/admin/secrets/model.runtime.deployments_0_.api_key").status_code == 404
    body["deployments"][0]["api_key"] = "sk-live-0123456789abcdef"
    assert client.post("/admin/models", json=body).status_code == 201
    assert client.put("/admin/models/runtime", json=again).status_code == 200


@pytest.mark.parametrize("secrets_key", [KEY_B64])
def test_file_literal_key_round_trips_through_the_secrets_store(client: TestClient) -> None:
    body = client.get("/admin/models/literal").json()
    assert body["deployments"][0]["api_key"] == "****2345"
    resp = client.put("/admin/models/literal", json={**body, "description": "edited"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["deployments"][0]["api_key"].startswith("secret:model.literal.")
    assert chat(client, "literal").status_code == 200
