"""Connection tests never change the live circuit breaker: a failed test of an
unreachable model leaves its breaker closed (gateway/health/runner.py routes a test
over detached copies of the deployments), while a client request that fails the
same way opens it (the check can fail). Requests: 4 probes per test, 1 client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess
from tests.ports import free_port


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
router:
  retry: {{max_retries: 0}}
  breaker: {{consecutive_failures: 1, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 600}}
models:
  down: {{deployments: [{{provider: openai, model: m, base_url: '{down}', api_key: k}}]}}
"""
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("probe-breaker")))
    yield gw
    gw.stop()


def breaker(gw: GatewayProcess) -> str:
    (row,) = gw.deployments().values()
    return str(row["breaker"])


def test_failed_connection_tests_leave_the_live_breaker_closed(gw: GatewayProcess) -> None:
    assert breaker(gw) == "closed"
    tested = gw.http.post("/admin/models/down/test")  # through the router, as a client request goes
    assert tested.status_code == 200, tested.text
    body = tested.json()
    assert body["health_score"] == 0 and not any(t["passed"] for t in body["tests"])
    assert "upstream_connect_error" in body["tests"][0]["reason"]
    assert breaker(gw) == "closed"
    (dep,) = gw.deployments()
    assert gw.http.post("/admin/models/down/test", params={"deployment": dep}).json()["health_score"] == 0
    with gw.http.stream("POST", "/admin/models/test-all") as streamed:
        assert streamed.status_code == 200 and b'"event":"done"' in streamed.read()
    assert breaker(gw) == "closed"
    assert gw.deployments()[dep]["inflight"] == 0

    # the same failure from a client request is recorded: one opens it (consecutive_failures: 1)
    chat = {"model": "down", "messages": [{"role": "user", "content": "hi"}]}
    assert gw.http.post("/v1/chat/completions", json=chat).status_code >= 500
    assert breaker(gw) == "open"
