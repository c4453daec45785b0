"""Failure scenarios driven through the mock upstream: retries, fallback,
timeouts, the circuit breaker, broken streams and client disconnects.

Each test names the upstream models it scripts, asserts how often the mock was
called and which deployment served, so removing retries, fallback, timeouts or
the breaker makes it fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]


def served_by(gateway: GatewayProcess, alias: str, **kw: Any) -> tuple[str, int, Any]:
    raw = gateway.client().chat.completions.with_raw_response.create(model=alias, messages=HELLO, **kw)
    return raw.headers["x-gateway-deployment"], int(raw.headers["x-gateway-attempts"]), raw


def test_failover_to_next_deployment(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("primary-a", error_status=503)
    deployment, attempts, _ = served_by(gateway, "failover")
    assert deployment == "failover/1"
    assert attempts == 3  # primary twice (retry), then the backup
    assert (mock.calls("primary-a"), mock.calls("backup-b")) == (2, 1)


def test_retries_until_success(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("flaky-model", fail_times=2, error_status=502)
    deployment, attempts, _ = served_by(gateway, "flaky")
    assert (deployment, attempts) == ("flaky/0", 3)
    assert mock.calls("flaky-model") == 3


def test_falls_back_to_another_alias(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("fb-primary-model", error_status=500)
    deployment, _, raw = served_by(gateway, "fb-primary")
    assert deployment == "fb-secondary/0"
    assert raw.headers["x-gateway-fallback"] == "fb-secondary"
    assert raw.parse().choices[0].message.content


def test_client_error_is_not_retried_nor_fallen_back(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("badreq-model", error_status=400)
    with pytest.raises(openai.BadRequestError):
        gateway.client().chat.completions.create(model="badreq", messages=HELLO)
    assert mock.calls("badreq-model") == 1
    assert mock.calls("mock-gpt") == 0, "the fallback alias must not be used for the client's own error"


def test_retry_after_is_honoured(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("ra-model", fail_times=1, error_status=429, retry_after=1)
    started = time.monotonic()
    deployment, attempts, _ = served_by(gateway, "retry-after")
    assert (deployment, attempts) == ("retry-after/0", 2)
    assert time.monotonic() - started >= 0.95, "the retry must wait for Retry-After"


def test_first_byte_timeout_falls_back(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("slow-model", latency_ms=2000)
    deployment, attempts, _ = served_by(gateway, "slow")
    assert deployment == "chat/0"
    assert attempts == 3  # two timed-out attempts (timeouts are retryable), then the fallback


def test_stream_falls_back_before_first_byte(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("cut-model", error_status=503)
    raw = gateway.client().chat.completions.with_raw_response.create(model="cut", messages=HELLO, stream=True)
    assert raw.headers["x-gateway-deployment"] == "chat/0"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert "Hello" in text


def test_mid_stream_disconnect_surfaces_as_error_without_fallback(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("cut-model", disconnect_after_chunks=2)
    stream = gateway.client().chat.completions.create(model="cut", messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError, match=r"cut short|connection lost"):
        for chunk in stream:
            received.append(chunk)
    assert received, "the first chunks reached the client before the upstream broke"
    assert mock.calls("mock-gpt") == 0, "after the first byte a stream must not fall back"


def test_truncated_stream_is_reported(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("cut-model", garbage="truncate")
    with pytest.raises(openai.APIError, match="truncated"):
        list(gateway.client().chat.completions.create(model="cut", messages=HELLO, stream=True))


def test_stream_idle_timeout(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("idle-model", hang_ms=3000)
    with pytest.raises(openai.APIError, match="idle"):
        list(gateway.client().chat.completions.create(model="idle", messages=HELLO, stream=True))


@pytest.mark.parametrize("garbage", ["json", "content_type"])
def test_garbage_answer_is_502_then_next_deployment(gateway: GatewayProcess, mock: Mock, garbage: str) -> None:
    mock.behave("garbage-model", garbage=garbage)
    deployment, attempts, _ = served_by(gateway, "garbage")
    assert (deployment, attempts) == ("garbage/1", 2)
    assert mock.calls("garbage-model") == 1, "garbage is not retried on the same deployment"


def test_garbage_without_alternative_is_502(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("fail-model", garbage="json")
    resp = gateway.http.post("/v1/chat/completions", json={"model": "failing", "messages": HELLO})
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_bad_response"


def test_context_window_fallback(gateway: GatewayProcess) -> None:
    short, _, _ = served_by(gateway, "small-ctx")
    assert short == "small-ctx/0"
    long_prompt: Any = [{"role": "user", "content": "word " * 200}]
    raw = gateway.client().chat.completions.with_raw_response.create(model="small-ctx", messages=long_prompt)
    assert raw.headers["x-gateway-deployment"] == "big-ctx/0"


def test_round_robin_alternates(gateway: GatewayProcess, mock: Mock) -> None:
    served = [served_by(gateway, "rr")[0] for _ in range(4)]
    assert sorted(served) == ["rr/0", "rr/0", "rr/1", "rr/1"]
    assert served[0] != served[1]


def test_weighted_split(gateway: GatewayProcess, mock: Mock) -> None:
    for _ in range(200):
        served_by(gateway, "weighted")
    share_a = mock.calls("w-a") / 200
    assert 0.62 <= share_a <= 0.88, f"weight 3:1 should give about 75% to w-a, got {share_a:.0%}"


def test_client_disconnect_cancels_upstream_call(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=4000)
    with pytest.raises(httpx.ReadTimeout):
        gateway.http.post("/v1/chat/completions", json={"model": "hold", "messages": HELLO}, timeout=0.5)
    # Without cancellation the attempt would stay in flight for the mock's 4 s.
    assert wait_until(lambda: gateway.deployments()["hold/0"]["inflight"] == 0, timeout=2.0)


def test_client_disconnect_mid_stream_cancels_upstream(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", tokens_per_s=5, output_tokens=60)
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        headers=dict(gateway.http.headers),
        json={"model": "hold", "messages": HELLO, "stream": True},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()  # keep the iterator: dropping it closes the response
        assert next(lines).startswith("data: ")
        assert gateway.deployments()["hold/0"]["inflight"] == 1
    assert wait_until(lambda: gateway.deployments()["hold/0"]["inflight"] == 0, timeout=2.0)


@pytest.fixture
def breaker_gateway(mock: Mock, tmp_path: Path) -> Iterator[GatewayProcess]:
    # a cooldown long enough that the checks made while the breaker is open fit in it on a loaded machine
    breaker = "{consecutive_failures: 2, error_ratio: 1.0, window_s: 30, min_requests: 100, cooldown_s: 3}"
    gw = GatewayProcess(e2e_config(mock.url, breaker=breaker), tmp_path)
    yield gw
    gw.stop()


def test_circuit_breaker_opens_skips_and_recovers(breaker_gateway: GatewayProcess, mock: Mock) -> None:
    gw = breaker_gateway
    mock.behave("brk-model", error_status=503)
    assert served_by(gw, "breaker")[:2] == ("breaker/1", 3)
    assert gw.deployments()["breaker/0"]["breaker"] == "open"
    assert mock.calls("brk-model") == 2
    # Open: the failing deployment is skipped without a call.
    assert served_by(gw, "breaker")[:2] == ("breaker/1", 1)
    assert mock.calls("brk-model") == 2
    # After the cooldown one trial goes through; it succeeds and the breaker closes.
    mock.http.delete("/_mock/behaviours/brk-model").raise_for_status()
    time.sleep(3.1)
    assert served_by(gw, "breaker")[:2] == ("breaker/0", 1)
    assert gw.deployments()["breaker/0"]["breaker"] == "closed"


def test_breaker_half_open_failure_reopens(breaker_gateway: GatewayProcess, mock: Mock) -> None:
    gw = breaker_gateway
    mock.behave("brk-model", error_status=503)
    served_by(gw, "breaker")
    assert gw.deployments()["breaker/0"]["breaker"] == "open"
    time.sleep(3.1)
    assert served_by(gw, "breaker")[0] == "breaker/1"  # the trial failed ...
    assert mock.calls("brk-model") == 3  # ... after exactly one trial call
    assert gw.deployments()["breaker/0"]["breaker"] == "open"


def test_all_circuits_open_is_503(breaker_gateway: GatewayProcess, mock: Mock) -> None:
    gw = breaker_gateway
    mock.behave("brk-model", error_status=503)
    mock.behave("brk-backup", error_status=503)
    with pytest.raises(openai.InternalServerError):
        gw.client().chat.completions.create(model="breaker", messages=HELLO)
    resp = gw.http.post("/v1/chat/completions", json={"model": "breaker", "messages": HELLO})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "no_deployment_available"
