"""A client that sends a request's head and part of its body, then goes away, over a raw socket
to a real ``gateway serve``: the request is recorded as 499 ``client_disconnected`` in the access
log and the metrics, never as ``400 invalid_json`` (gateway/server/asgi.py ``read_body``).

Every wait is bounded; nothing here asserts how fast anything is."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import MASTER_KEY, GatewayProcess, wait_until

WAIT_S = 15.0
DURATION = "gen_ai_server_request_duration_seconds_count"
CHAT_UNKNOWN = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "unknown"}
REQUESTS = ("gateway_requests_total", {"route": "chat", "alias": "unknown", "provider": "", "status_class": "4xx"})


def sample(gw: GatewayProcess, name: str, labels: dict[str, str]) -> float:
    """The value of one series in ``/metrics`` (0 when it has not been written yet)."""
    text = httpx.get(gw.url + "/metrics", timeout=WAIT_S).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def counts(gw: GatewayProcess) -> dict[str, float]:
    return {
        "client_disconnected": sample(gw, DURATION, {**CHAT_UNKNOWN, "error_type": "client_disconnected"}),
        "invalid_json": sample(gw, DURATION, {**CHAT_UNKNOWN, "error_type": "invalid_json"}),
        "requests_4xx": sample(gw, *REQUESTS),
    }


def access_lines(gw: GatewayProcess, request_id: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(x) for x in gw.log().splitlines() if x.startswith("{"))
    return [x for x in lines if x.get("logger") == "gateway.access" and x.get("request_id") == request_id]


def leave_mid_body(gw: GatewayProcess, request_id: str, *, half_close: bool) -> bytes:
    """POST a chat request announcing 1000 bytes, send 100 of them, then go away (a plain close,
    or a half-close reading what comes back before closing: returned)."""
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\nAuthorization: Bearer {MASTER_KEY}\r\nx-request-id: {request_id}\r\n\r\n"
    )
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "' + b"x" * 100
    with socket.create_connection(("127.0.0.1", gw.port), timeout=WAIT_S) as sock:
        sock.sendall(head.encode() + body[:100])
        if not half_close:
            return b""
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):  # until the gateway closes (bounded by the timeout)
            got += chunk
        return got


@pytest.mark.parametrize("half_close", [False, True], ids=["close", "half_close"])
def test_a_client_gone_mid_body_is_a_499_not_invalid_json(gateway: GatewayProcess, half_close: bool) -> None:
    before = counts(gateway)
    request_id = f"req-gone-{uuid.uuid4().hex[:12]}"
    answered = leave_mid_body(gateway, request_id, half_close=half_close)
    assert answered == b"", f"nothing may be sent to a client that left: {answered[:200]!r}"

    assert wait_until(lambda: access_lines(gateway, request_id), timeout=WAIT_S), gateway.log()[-3000:]
    (line,) = access_lines(gateway, request_id)
    assert (line["route"], line["status"], line["error_code"]) == ("chat", 499, "client_disconnected")
    assert line["key_id"] == "master" and line["alias"] == "unknown"

    after = counts(gateway)
    assert after["client_disconnected"] == before["client_disconnected"] + 1
    assert after["requests_4xx"] == before["requests_4xx"] + 1
    assert after["invalid_json"] == before["invalid_json"], "the half body must not be parsed"


def test_the_gateway_still_serves_after_clients_left_mid_body(gateway: GatewayProcess) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "still there?"}]}
    response = gateway.http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
