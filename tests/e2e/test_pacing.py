"""Upstream back-pressure over loopback: the gateway (pacing on) in front of the mock,
whose deployments answer 429 with Retry-After, or succeed with a spent rate-limit budget.

Each test counts the requests the paced upstream receives, so a gateway that keeps
sending to it (no pacing) fails, and reads the deployment's breaker, which a paced
429 must leave closed (``consecutive_failures: 1`` here: one counted failure opens it).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]


def config(mock_url: str) -> str:
    def pair(a: str, b: str) -> str:
        base = f"provider: openai, base_url: '{mock_url}/v1', api_key: k"
        return f"[{{model: {a}, {base}, priority: 0}}, {{model: {b}, {base}, priority: 1}}]"

    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
router:
  timeouts: {{connect_s: 2, first_byte_s: 5, idle_s: 5, total_s: 15}}
  retry: {{max_retries: 1, backoff_initial_s: 0.01, backoff_max_s: 0.05, max_retry_after_s: 5, max_attempts: 8}}
  breaker: {{consecutive_failures: 1, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 30}}
  pacing: {{enabled: true, default_s: 1.0, max_s: 60}}
models:
  paced: {{deployments: {pair("pace-a", "pace-b")}}}
  budget: {{deployments: {pair("budget-a", "budget-b")}}}
  solo: {{deployments: [{{provider: openai, model: solo-model, base_url: '{mock_url}/v1', api_key: k}}]}}
  held: {{deployments: [{{provider: openai, model: held-model, base_url: '{mock_url}/v1', api_key: k}}]}}
"""


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(config(mock.url), Path(tmp_path_factory.mktemp("pacing")))
    yield gateway
    gateway.stop()


def served_by(gw: GatewayProcess, alias: str, *, stream: bool = False) -> tuple[str, int]:
    client = gw.client().chat.completions
    raw = client.with_raw_response.create(model=alias, messages=HELLO, stream=stream)
    if stream:
        list(raw.parse())  # read to the end: the deployment's slot is given back
    return raw.headers["x-gateway-deployment"], int(raw.headers["x-gateway-attempts"])


def metric(gw: GatewayProcess, name: str, **labels: str) -> float | None:
    text = gw.http.get("/metrics").text
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_a_429_with_retry_after_sends_the_next_requests_elsewhere(gw: GatewayProcess, mock: Mock) -> None:
    mock.behave("pace-a", error_status=429, retry_after=4)
    started = time.monotonic()
    # Retry-After 4 is within max_retry_after_s, but paced/1 can take the request now
    assert served_by(gw, "paced") == ("paced/1", 2), "the 429 paced paced/0: on to paced/1 at once"
    for _ in range(5):
        assert served_by(gw, "paced") == ("paced/1", 1)
    assert time.monotonic() - started < 3.5, "nobody waited for the pause (six requests well within it)"
    assert mock.calls("pace-a") == 1, "the paced upstream got no request during its Retry-After"
    assert gw.deployments()["paced/0"]["breaker"] == "closed", "a paced 429 is not a breaker failure"
    assert metric(gw, "gateway_upstream_paced_total", deployment="paced/0", source="retry_after") == 1.0
    assert metric(gw, "gateway_deployment_paced", deployment="paced/0") == 1.0

    mock.behave("pace-a", error_status=None, retry_after=None)
    assert wait_until(lambda: served_by(gw, "paced")[0] == "paced/0", timeout=10, interval=0.2)
    assert time.monotonic() - started >= 3.9, "not before the Retry-After passed"
    assert mock.calls("pace-a") == 2, "one 429, then one answer after the pause"
    assert wait_until(lambda: metric(gw, "gateway_deployment_paced", deployment="paced/0") == 0.0, timeout=2)


def test_a_success_with_a_spent_budget_paces_until_its_reset(gw: GatewayProcess, mock: Mock) -> None:
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "3s"}
    mock.behave("budget-a", headers=spent)
    assert served_by(gw, "budget") == ("budget/0", 1), "the answer itself is served"
    assert served_by(gw, "budget") == ("budget/1", 1), "then the budget is spent for 3s"
    assert mock.calls("budget-a") == 1
    assert wait_until(lambda: served_by(gw, "budget")[0] == "budget/0", timeout=8, interval=0.2)
    assert mock.calls("budget-a") == 2
    # the streamed answer's head paces too (its headers arrive before the first chunk)
    assert wait_until(lambda: served_by(gw, "budget", stream=True)[0] == "budget/0", timeout=8, interval=0.2)
    calls = mock.calls("budget-a")
    assert served_by(gw, "budget") == ("budget/1", 1)
    assert mock.calls("budget-a") == calls
    paced = metric(gw, "gateway_upstream_paced_total", deployment="budget/0", source="ratelimit_headers")
    assert paced is not None and paced >= 3.0
    assert gw.deployments()["budget/0"]["breaker"] == "closed"


def test_everything_paced_is_503_with_retry_after(gw: GatewayProcess, mock: Mock) -> None:
    mock.behave("solo-model", error_status=429, retry_after=10)
    body = {"model": "solo", "messages": HELLO}
    first = gw.http.post("/v1/chat/completions", json=body)
    assert first.status_code == 429, first.text
    assert first.headers["retry-after"] == "10", "longer than max_retry_after_s: passed on, not waited for"
    # a request that may wait 2 s does not queue for a pause that ends in 10 s
    second = gw.http.post("/v1/chat/completions", json=body, headers={"x-gateway-max-wait": "2"})
    assert second.status_code == 503, second.text
    assert second.json()["error"]["code"] == "no_deployment_available"
    assert second.headers["retry-after"] in ("9", "10"), "when the pause ends"
    assert mock.calls("solo-model") == 1, "the second request never reached the paced upstream"


def test_a_request_waits_in_the_queue_while_the_only_deployment_is_paced(gw: GatewayProcess, mock: Mock) -> None:
    mock.behave("held-model", error_status=429, retry_after=3, fail_times=1)
    body = {"model": "held", "messages": HELLO}
    first: dict[str, int] = {}
    worker = threading.Thread(
        target=lambda: first.update(status=gw.http.post("/v1/chat/completions", json=body).status_code)
    )
    worker.start()
    assert wait_until(lambda: mock.calls("held-model") == 1, timeout=3)
    started = time.monotonic()
    second = gw.http.post("/v1/chat/completions", json=body)
    waited = time.monotonic() - started
    worker.join(timeout=10)
    assert second.status_code == 200, second.text
    assert first["status"] == 200  # its own retry after the pause
    assert waited >= 1.5, "held until the upstream's pause ended, not refused and not sent"
    assert mock.calls("held-model") == 3
    assert (metric(gw, "gateway_queue_wait_seconds_count", alias="held") or 0) >= 1
