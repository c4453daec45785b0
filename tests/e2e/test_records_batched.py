"""Finished requests recorded together (gateway/server/records.py), end to end: while a
request is still in flight, one that has just ended (its record held for up to
``record_batch_ms``, the most allowed here) is counted in /metrics read at once, and one
scored through POST /v1/feedback at once is found on the first look (the route's second
look, after two feedback write intervals, would take seconds here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, wait_until

SLOW, FAST = "rb-slow", "rb-fast"


@pytest.fixture
def gateway(mock: Mock, tmp_path: Path) -> Iterator[GatewayProcess]:
    config = f"""
server: {{record_batch_ms: 50}}
feedback: {{flush_interval_s: 2}}
state: {{path: '{tmp_path / "state.db"}'}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
models:
  {SLOW}: {{deployments: [{{provider: openai, model: rb-slow-model, base_url: '{mock.url}/v1', api_key: k}}]}}
  {FAST}: {{deployments: [{{provider: openai, model: rb-fast-model, base_url: '{mock.url}/v1', api_key: k}}]}}
"""
    mock.behave("rb-slow-model", latency_ms=5000)  # in flight all through the checks below
    gw = GatewayProcess(config, tmp_path)
    yield gw
    gw.stop()


def _requests_total(text: str, alias: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("gateway_requests_total{") and f'alias="{alias}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_ended_request_is_seen_at_once_while_another_is_in_flight(gateway: GatewayProcess) -> None:
    gw = gateway
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    slow_status: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            body = {"model": SLOW, "messages": [{"role": "user", "content": "wait"}]}
            slow_status.append(client.post("/v1/chat/completions", json=body, headers=headers).status_code)

    holder = threading.Thread(target=slow)
    holder.start()
    try:
        assert wait_until(lambda: 'gateway_inflight_requests{route="chat"} 1.0' in gw.http.get("/metrics").text)
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            body = {"model": FAST, "messages": [{"role": "user", "content": "now"}]}
            answer = client.post("/v1/chat/completions", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert _requests_total(gw.http.get("/metrics").text, FAST) == 1  # read at once: counted
            answer = client.post("/v1/chat/completions", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            rid = answer.headers["x-request-id"]
            began = time.monotonic()
            scored = client.post("/v1/feedback", json={"request_id": rid, "score": 5}, headers=headers)
            assert scored.status_code == 200, scored.text
            assert time.monotonic() - began < 2  # the first look found it
        assert slow_status == []  # all of that while the slow request was in flight
    finally:
        holder.join(timeout=30)
    assert slow_status == [200]
    assert wait_until(lambda: f'"request_id":"{rid}"' in gw.log())
