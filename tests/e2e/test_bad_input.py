"""Bad input never crashes or leaks: every case gets a 4xx with an OpenAI-shaped
body and a stable code, and the gateway keeps serving afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, GatewayProcess

CHAT = "/v1/chat/completions"
MSGS = [{"role": "user", "content": "hi"}]

CASES: list[tuple[str, bytes | Any, int, str, str | None]] = [
    # (case id, body, status, code, param)
    ("malformed_json", b'{"model": "chat", "messages": [', 400, "invalid_json", "body"),
    ("empty_body", b"", 400, "invalid_json", "body"),
    (
        "invalid_utf8",
        b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        "invalid_json",
        "body",
    ),
    ("array_body", [1, 2], 400, "invalid_json", "body"),
    ("missing_model", {"messages": MSGS}, 400, "missing_required_parameter", "model"),
    ("model_not_string", {"model": 42, "messages": MSGS}, 400, "invalid_type", "model"),
    ("missing_messages", {"model": "chat"}, 400, "missing_required_parameter", "messages"),
    ("messages_not_list", {"model": "chat", "messages": "hi"}, 400, "invalid_type", "messages"),
    ("empty_messages", {"model": "chat", "messages": []}, 400, "invalid_value", "messages"),
    (
        "bad_role",
        {"model": "chat", "messages": [{"role": "wizard", "content": "x"}]},
        400,
        "unsupported_value",
        "messages[0].role",
    ),
    (
        "content_number",
        {"model": "chat", "messages": [{"role": "user", "content": 5}]},
        400,
        "invalid_type",
        "messages[0].content",
    ),
    (
        "bad_part",
        {"model": "chat", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        400,
        "unsupported_value",
        "messages[0].content[0].type",
    ),
    (
        "temperature_absurd",
        {"model": "chat", "messages": MSGS, "temperature": 1e9},
        400,
        "invalid_value",
        "temperature",
    ),
    (
        "temperature_string",
        {"model": "chat", "messages": MSGS, "temperature": "hot"},
        400,
        "invalid_type",
        "temperature",
    ),
    ("max_tokens_negative", {"model": "chat", "messages": MSGS, "max_tokens": -5}, 400, "invalid_value", "max_tokens"),
    ("max_tokens_float", {"model": "chat", "messages": MSGS, "max_tokens": 1.5}, 400, "invalid_type", "max_tokens"),
    ("n_huge", {"model": "chat", "messages": MSGS, "n": 10**12}, 400, "invalid_value", "n"),
    ("stream_string", {"model": "chat", "messages": MSGS, "stream": "yes"}, 400, "invalid_type", "stream"),
    (
        "too_many_stops",
        {"model": "chat", "messages": MSGS, "stop": ["a", "b", "c", "d", "e"]},
        400,
        "invalid_value",
        "stop",
    ),
    (
        "tool_choice_unknown",
        {"model": "chat", "messages": MSGS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        400,
        "invalid_value",
        "tool_choice.function.name",
    ),
    ("unknown_model", {"model": "no-such-model", "messages": MSGS}, 404, "model_not_found", "model"),
    ("embedding_model_for_chat", {"model": "embed", "messages": MSGS}, 400, "wrong_model_kind", "model"),
]


@pytest.mark.parametrize(("case", "body", "status", "code", "param"), CASES, ids=[c[0] for c in CASES])
def test_bad_chat_request(
    gateway: GatewayProcess, case: str, body: Any, status: int, code: str, param: str | None
) -> None:
    if isinstance(body, bytes):
        resp = gateway.http.post(CHAT, content=body, headers={"content-type": "application/json"})
    else:
        resp = gateway.http.post(CHAT, json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in resp.text
    assert resp.headers["x-request-id"]


def test_body_over_limit_is_413(gateway: GatewayProcess) -> None:
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 70_000}]}
    resp = gateway.http.post(CHAT, json=big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"


def test_body_over_limit_chunked_is_413(gateway: GatewayProcess) -> None:
    def chunks() -> Any:
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    resp = gateway.http.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"model": "embed"}, "missing_required_parameter", "input"),
        ({"model": "embed", "input": ""}, "invalid_value", "input"),
        ({"model": "embed", "input": [{"a": 1}]}, "invalid_type", "input[0]"),
        ({"model": "embed", "input": "x", "encoding_format": "hex"}, "unsupported_value", "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "invalid_value", "dimensions"),
        ({"model": "chat", "input": "x"}, "wrong_model_kind", "model"),
    ],
)
def test_bad_embeddings_request(gateway: GatewayProcess, body: Any, code: str, param: str) -> None:
    resp = gateway.http.post("/v1/embeddings", json=body)
    assert resp.status_code == 400
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == (code, param)


def test_missing_key_is_401(gateway: GatewayProcess) -> None:
    resp = httpx.post(gateway.url + CHAT, json={"model": "chat", "messages": MSGS})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "missing_api_key"


def test_wrong_method_is_405(gateway: GatewayProcess) -> None:
    resp = gateway.http.get(CHAT)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_unknown_api_route_is_404(gateway: GatewayProcess) -> None:
    resp = gateway.http.post("/v1/completions-of-doom", json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_route"


def test_admin_needs_master_key(gateway: GatewayProcess) -> None:
    resp = httpx.get(gateway.url + "/admin/deployments", headers={"authorization": f"Bearer {LIMITED_KEY}"})
    assert resp.status_code == 403


def test_upstream_garbage_in_each_format_is_502(gateway: GatewayProcess, mock: Mock) -> None:
    for model, alias in (("mock-claude", "claude"), ("mock-gemini", "gemini")):
        mock.behave(model, garbage="json")
        resp = gateway.http.post(CHAT, json={"model": alias, "messages": MSGS})
        assert resp.status_code == 502, (alias, resp.text)
        assert resp.json()["error"]["code"] == "upstream_bad_response"


def test_gateway_still_serves_after_bad_input(gateway: GatewayProcess) -> None:
    resp = gateway.http.post(CHAT, json={"model": "chat", "messages": MSGS})
    assert resp.status_code == 200
    assert "Traceback" not in gateway.log()
