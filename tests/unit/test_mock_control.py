"""The mock's control surface over real loopback HTTP: ``require_api_key`` per format,
behaviour precedence, ``/_mock/*`` routes and the ``run_mock`` entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.mock import Behaviour, MockConfig
from gateway.mock.testing import MockServer, chat_request
from tests.ports import free_port
from tests.unit.conftest import call

CONFIG = MockConfig(models={"config-flaky": Behaviour(error_status=500, output_tokens=4)})


# --- auth -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_config() -> MockConfig:
    return CONFIG


def test_require_api_key_openai(mock: MockServer, http: httpx.Client) -> None:
    http.put("/_mock/behaviours/*", json={"require_api_key": "sk-right-key"})
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-wrong-key", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert refused.value.code == "invalid_api_key"
        assert refused.value.message.startswith("Error code: 401")
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-right-key", max_retries=0) as right:
        assert right.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices
    missing = call(http, "openai")
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None


def test_require_api_key_anthropic(http: httpx.Client) -> None:
    key = {"x-mock-require-api-key": "right"}
    missing = call(http, "anthropic", key)
    assert missing.status_code == 401
    assert missing.json()["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    wrong = call(http, "anthropic", {**key, "x-api-key": "wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid x-api-key"
    assert call(http, "anthropic", {**key, "x-api-key": "right"}).status_code == 200
    assert call(http, "anthropic", {**key, "authorization": "Bearer right"}).status_code == 200


def test_require_api_key_gemini(http: httpx.Client) -> None:
    http.put("/_mock/behaviours/m", json={"require_api_key": "right"})
    missing = call(http, "gemini")
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    wrong = call(http, "gemini", {"x-goog-api-key": "wrong"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert call(http, "gemini", {"x-goog-api-key": "right"}).status_code == 200
    path, body = chat_request("gemini")
    assert http.post(path + "?key=right", json=body).status_code == 200


# --- precedence, control ----------------------------------------------------------------------


def test_precedence_header_over_runtime_over_config(http: httpx.Client) -> None:
    model = "config-flaky"
    assert call(http, "openai", model=model).status_code == 500
    http.put("/_mock/behaviours/*", json={"error_status": 502})
    assert call(http, "openai", model=model).status_code == 502
    assert call(http, "openai", model="other").status_code == 502
    http.put(f"/_mock/behaviours/{model}", json={"error_status": 429})
    assert call(http, "openai", model=model).status_code == 429
    assert call(http, "openai", {"x-mock-error-status": "503"}, model=model).status_code == 503
    cleared = call(http, "openai", {"x-mock-error-status": "none"}, model=model)
    assert cleared.status_code == 200 and cleared.json()["usage"]["completion_tokens"] == 4
    assert http.delete(f"/_mock/behaviours/{model}").json() == {"deleted": True}
    assert http.delete("/_mock/behaviours/*").json() == {"deleted": True}
    assert call(http, "openai", model=model).status_code == 500


def test_bad_mock_headers_are_400(http: httpx.Client) -> None:
    unknown = call(http, "openai", {"x-mock-eror-status": "500"})
    assert unknown.status_code == 400 and "x-mock-eror-status" in unknown.json()["error"]["message"]
    bad = call(http, "gemini", {"x-mock-error-status": "teapot"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_stats_reset_and_control_routes(http: httpx.Client) -> None:
    call(http, "openai", model="a")
    call(http, "openai", {"x-mock-error-status": "500"}, model="a")
    call(http, "anthropic", model="b", stream=True)
    call(http, "gemini", model="c", stream=True)
    http.post("/v1/embeddings", json={"model": "e", "input": "x"})
    http.get("/v1/models")
    http.get("/v1beta/models")
    assert http.get("/_mock/stats").json() == {
        "total": 5,
        "by_model": {"a": 2, "b": 1, "c": 1, "e": 1},
        "by_route": {
            "openai.chat": 2,
            "anthropic.messages": 1,
            "gemini.streamGenerateContent": 1,
            "openai.embeddings": 1,
        },
    }
    assert http.put("/_mock/behaviours/a", json={"latency_ms": 1}).json() == {
        "model": "a",
        "behaviour": {"latency_ms": 1},
    }
    assert http.get("/_mock/behaviours").json() == {"a": {"latency_ms": 1}}
    invalid = http.put("/_mock/behaviours/a", json={"error_status": 200, "colour": "red"})
    assert invalid.status_code == 422 and "colour" in invalid.json()["error"]
    assert http.post("/_mock/reset").json() == {"status": "reset"}
    assert http.get("/_mock/stats").json() == {"total": 0, "by_model": {}, "by_route": {}}
    assert http.get("/_mock/behaviours").json() == {}
    assert http.delete("/_mock/behaviours/a").json() == {"deleted": False}
    assert http.get("/_mock/health").json() == {"status": "ok"}


def test_run_mock_serves_a_yaml_config(tmp_path: Path) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("models:\n  yaml-model: {error_status: 529}\nembedding_dims: 4\n")
    port = free_port()
    code = f"from gateway.mock import run_mock; run_mock('127.0.0.1', {port}, {str(config)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5) as client:
            _wait_healthy(client)
            resp = client.post("/v1/messages", json={"model": "yaml-model", "max_tokens": 5, "messages": []})
            assert resp.status_code == 529 and resp.json()["error"]["type"] == "overloaded_error"
            embedded = client.post("/v1/embeddings", json={"model": "e", "input": "x"}).json()
            assert len(embedded["data"][0]["embedding"]) == 4
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _wait_healthy(client: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if client.get("/_mock/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("run_mock did not start")
