"""`/metrics` of a live gateway: after chat, stream, embedding, failing and
unknown-model requests, the catalog's series are there with sane values, no
label carries a key or a client string, and promtool accepts the output."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, MASTER_KEY, GatewayProcess, wait_until

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello metrics"}]
UNKNOWN_MODEL = "no-such-model-e2e-metrics"
BAD_KEY = "sk-e2e-not-a-key-metrics-0001"

Sample = tuple[str, dict[str, str], float]


def scrape(gateway: GatewayProcess) -> str:
    """GET /metrics with no credentials at all."""
    response = httpx.get(gateway.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str) -> list[Sample]:
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def matching(all_samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [v for n, lbl, v in all_samples if n == name and all(lbl.get(k) == x for k, x in labels.items())]


def total(all_samples: list[Sample], name: str, **labels: str) -> float:
    """The sum over the series of ``name`` with these labels; fails when there is none."""
    values = matching(all_samples, name, **labels)
    assert values, f"no series {name}{labels} in /metrics"
    return sum(values)


def drive(gateway: GatewayProcess, mock: Mock) -> None:
    """The traffic the assertions are about."""
    client = gateway.client()
    for _ in range(2):
        answer = client.chat.completions.create(model="chat", messages=MSGS)
        assert answer.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="chat",
            messages=MSGS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks
    gateway.client(LIMITED_KEY).chat.completions.create(model="chat", messages=MSGS)
    embedding = client.embeddings.create(model="embed", input="hello metrics")
    assert embedding.data[0].embedding

    # The upstream rejects the request: a client error, passed through for alias "chat".
    mock.behave("mock-gpt", error_status=400)
    try:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="chat", messages=MSGS)
    finally:
        mock.reset()
    # The gateway's own validation refuses it (before the model is looked up).
    bad = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "chat", "messages": []},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert bad.status_code == 400
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=UNKNOWN_MODEL, messages=MSGS)
    refused = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "chat", "messages": MSGS},
        headers={"authorization": f"Bearer {BAD_KEY}"},
        timeout=10,
    )
    assert refused.status_code == 401


DRIVEN = 9
"""The requests :func:`drive` sends, each counted once in ``gateway_requests_total``."""


def requests_counted(gateway: GatewayProcess) -> float:
    return sum(matching(samples(scrape(gateway)), "gateway_requests_total"))


@pytest.fixture(scope="module")
def metrics_text(gateway: GatewayProcess, mock: Mock) -> str:
    mock.reset()
    before = requests_counted(gateway)
    drive(gateway, mock)
    # A request is counted once its answer is sent (settlement ends after the last byte), so a
    # scrape right after the answers may miss the last few: wait (bounded) until all are counted.
    wait_until(lambda: requests_counted(gateway) >= before + DRIVEN, 10)
    return scrape(gateway)


def label_values(text: str) -> set[str]:
    return {value for _, labels, _ in samples(text) for value in labels.values()}


def test_request_series(metrics_text: str) -> None:
    s = samples(metrics_text)
    # Counters only grow and the gateway is shared by the session: at least our own requests.
    assert total(s, "gateway_requests_total", route="chat", alias="chat", status_class="2xx") >= 4
    assert total(s, "gateway_requests_total", route="chat", alias="chat", provider="openai", status_class="2xx") >= 4
    assert total(s, "gateway_requests_total", route="chat", alias="chat", status_class="4xx") >= 1
    assert total(s, "gateway_requests_total", route="chat", alias="unknown", status_class="4xx") >= 3
    assert total(s, "gateway_requests_total", route="embeddings", alias="embed", status_class="2xx") >= 1
    assert total(s, "gateway_auth_failures_total", reason="invalid_api_key") >= 1

    ok = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "chat", "error_type": ""}
    count = total(s, "gen_ai_server_request_duration_seconds_count", **ok)
    assert count >= 4
    assert total(s, "gen_ai_server_request_duration_seconds_bucket", le="+Inf", **ok) == count
    assert 0 < total(s, "gen_ai_server_request_duration_seconds_sum", **ok) < count * 15
    assert total(s, "gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="embeddings") >= 1
    assert total(s, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="chat") >= 1
    assert total(s, "gateway_added_latency_seconds_count", route="chat") >= 1
    assert all(v >= 0 for v in matching(s, "gateway_inflight_requests"))
    assert matching(s, "gateway_inflight_requests", route="chat")


def test_upstream_series(metrics_text: str) -> None:
    s = samples(metrics_text)
    chat = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "mock-gpt", "gen_ai_operation_name": "chat"}
    assert total(s, "gen_ai_client_operation_duration_seconds_count", error_type="", **chat) >= 4
    assert total(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_provider_name="openai") >= 5
    assert (
        total(
            s,
            "gen_ai_client_operation_duration_seconds_count",
            gen_ai_operation_name="embeddings",
            gen_ai_request_model="mock-embed",
        )
        >= 1
    )
    for kind in ("input", "output"):
        assert total(s, "gen_ai_client_token_usage_count", gen_ai_token_type=kind, **chat) >= 4
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type=kind, **chat) > 0
        assert total(s, "gateway_tokens_total", alias="chat", type=kind) > 0
    assert total(s, "gateway_tokens_total", alias="embed", type="input") > 0

    assert total(s, "gateway_upstream_attempts_total", deployment="chat/0", outcome="ok") >= 4
    failed = [v for n, lbl, v in s if n == "gateway_upstream_attempts_total" and lbl.get("deployment") == "chat/0"]
    assert sum(failed) > total(s, "gateway_upstream_attempts_total", deployment="chat/0", outcome="ok")
    assert total(s, "gateway_cache_requests_total") >= 5


def count_of(gateway: GatewayProcess, name: str, **labels: str) -> float:
    return sum(matching(samples(scrape(gateway)), name, **labels))


def test_a_stream_is_timed_to_its_first_token(gateway: GatewayProcess) -> None:
    """One stream: one time-to-first-token observation, and no added-latency one
    (a stream's upstream time goes on after its first chunk)."""
    ttft = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "chat"}
    before = count_of(gateway, "gen_ai_server_time_to_first_token_seconds_count", **ttft)
    added_before = count_of(gateway, "gateway_added_latency_seconds_count", route="chat")
    chunks = list(gateway.client().chat.completions.create(model="chat", messages=MSGS, stream=True))
    assert chunks
    assert count_of(gateway, "gen_ai_server_time_to_first_token_seconds_count", **ttft) == before + 1
    assert count_of(gateway, "gateway_added_latency_seconds_count", route="chat") == added_before


def test_breaker_and_build_info(metrics_text: str) -> None:
    s = samples(metrics_text)
    assert matching(s, "gateway_breaker_state", deployment="chat/0", state="closed") == [1.0]
    assert matching(s, "gateway_breaker_state", deployment="chat/0", state="open") == [0.0]
    assert matching(s, "gateway_breaker_state", deployment="chat/0", state="half_open") == [0.0]
    info = [(labels, v) for n, labels, v in s if n == "gateway_build_info"]
    assert len(info) == 1 and info[0][1] == 1.0, info
    assert info[0][0]["version"] == __version__ and info[0][0]["python"]
    assert matching(s, "gateway_state_backend_errors_total", operation="spend_flush")


def test_runtime_series(metrics_text: str, gateway: GatewayProcess) -> None:
    s = samples(metrics_text)

    def lag_samples() -> float:
        return total(samples(scrape(gateway)), "gateway_event_loop_lag_seconds_count")

    assert wait_until(lambda: lag_samples() >= 1, timeout=5), "the lag is sampled every 0.5 s from the start"
    open_conns = total(s, "gateway_upstream_connections", state="in_use") + total(
        s, "gateway_upstream_connections", state="idle"
    )
    assert open_conns >= 1, "the upstream connections of the requests made are still pooled"


def test_no_keys_or_client_strings(metrics_text: str) -> None:
    assert "sk-" not in metrics_text
    for secret in (MASTER_KEY, LIMITED_KEY, BAD_KEY, UNKNOWN_MODEL, "hello metrics"):
        assert secret not in metrics_text
    values = label_values(metrics_text)
    assert "limited" not in values  # the static key's id
    assert "master" not in values


def test_promtool_accepts_live_metrics(metrics_text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make test` installs it: scripts/install-os-deps.sh)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=metrics_text, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"promtool exit {result.returncode}: {result.stdout}{result.stderr}"
    assert result.stdout.strip() == "" and result.stderr.strip() == "", (
        f"promtool complained:\n{result.stdout}{result.stderr}"
    )
