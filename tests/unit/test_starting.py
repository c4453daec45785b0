"""Requests that arrive before the app's startup has finished get a 503 with
Retry-After, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app.gateway_app import create_app
from gateway.config.loader import parse_config

CONFIG = """
auth: {master_key: sk-starting-test-0001}
models:
  chat:
    deployments: [{provider: openai_compatible, model: m, base_url: "http://127.0.0.1:9/v1", api_key: k}]
"""


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/chat/completions"), ("GET", "/admin/keys"), ("GET", "/admin/deployments"), ("GET", "/admin/usage")],
)
def test_before_startup_every_route_answers_503_starting(tmp_path: Path, method: str, path: str) -> None:
    app = create_app(parse_config(CONFIG, source=str(tmp_path / "gateway.yaml")))
    client = TestClient(app)  # not entered: the lifespan (startup) never runs
    resp = client.request(
        method, path, json={"model": "chat", "messages": []}, headers={"authorization": "Bearer sk-starting-test-0001"}
    )
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "starting"
    assert resp.headers["retry-after"] == "1"
