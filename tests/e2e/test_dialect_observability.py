"""The new client API routes (Anthropic Messages, OpenAI Responses, Gemini) in what operators
see: ``/metrics`` (request counts by the fixed route labels, aliases only ever configured
ones, token usage), the access log line of each request, rate limits answered in each
dialect's shape, the spend in the admin usage API, and one SERVER span per request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config, wait_until
from tests.e2e.test_dialect_bad_input import (
    BATCH,
    COUNT,
    COUNT_TOKENS,
    EMBED,
    GENERATE,
    INPUT_TOKENS,
    MESSAGES,
    RESPONSES,
    STREAM,
    VALID,
    batch,
    error_of,
    send,
    url,
)
from tests.e2e.test_metrics_live import Sample, matching, samples, scrape
from tests.e2e.test_traces_logs import PARENT_ID, Collector, access_line, attrs, collector
from tests.e2e.test_traffic import create_key

__all__ = ["collector"]  # the OTLP receiver (test_traces_logs.py), as a fixture here too

CLAUDE_MODEL = "claude-sonnet-4-5-20250929"  # model_aliases: "claude-*" -> claude
GEMINI_MODEL = "gemini-2.5-flash"  # "gemini-*" -> gemini
UNKNOWN_MODEL = "no-such-model-dialect-obs"
TEXT = f"hello dialects {uuid.uuid4().hex[:8]}"  # a prompt of its own: never answered from the cache
MSGS = [{"role": "user", "content": TEXT}]
CONTENTS = [{"role": "user", "parts": [{"text": TEXT}]}]


@dataclass(frozen=True)
class Call:
    """One request on a new route and what the gateway must record for it."""

    name: str
    route: str
    alias: str
    path: str
    body: dict[str, Any] | None = None
    """None: a ``GET`` of the stored response made by the ``responses`` call."""
    status: int = 200
    stream: bool = False


def msg(model: str, **more: Any) -> dict[str, Any]:
    return {"model": model, "messages": MSGS, "max_tokens": 8, **more}


GEN = {"contents": CONTENTS}
CALLS = [
    Call("messages", "messages", "claude", MESSAGES, msg(CLAUDE_MODEL)),
    Call("messages_stream", "messages", "claude", MESSAGES, msg("claude", stream=True), stream=True),
    Call("messages_to_openai", "messages", "chat", MESSAGES, msg("gpt-4o")),
    Call("count_tokens", "messages_count_tokens", "claude", COUNT, {"model": CLAUDE_MODEL, "messages": MSGS}),
    Call("responses", "responses", "chat", RESPONSES, {"model": "chat", "input": TEXT}),
    Call("responses_native", "responses", "resp-api", RESPONSES, {"model": "resp-api", "input": TEXT}),
    Call("input_tokens", "responses_input_tokens", "chat", INPUT_TOKENS, {"model": "chat", "input": "x"}),
    Call("stored", "responses_stored", "unknown", RESPONSES + "/"),
    Call("generate", "gemini_generate", "gemini", url(GEMINI_MODEL, "generateContent"), GEN),
    Call("generate_stream", "gemini_generate", "gemini", STREAM, GEN, stream=True),
    Call("generate_on_claude", "gemini_generate", "claude", url("claude", "generateContent"), GEN),
    Call("count", "gemini_count_tokens", "gemini", COUNT_TOKENS, GEN),
    Call("embed", "gemini_embed", "gemini-embed", EMBED, {"content": {"parts": [{"text": TEXT}]}}),
    Call("batch_embed", "gemini_embed", "gemini-embed", BATCH, batch("gemini-embed", [{"text": TEXT}])),
    Call("unknown_model", "messages", "unknown", MESSAGES, msg(UNKNOWN_MODEL), 404),
    Call("unknown_gemini", "gemini_generate", "unknown", url(UNKNOWN_MODEL, "generateContent"), GEN, 404),
]
ROUTES = {
    "messages",
    "messages_count_tokens",
    "responses",
    "responses_input_tokens",
    "responses_stored",
    "gemini_generate",
    "gemini_count_tokens",
    "gemini_embed",
}


def make(gw: GatewayProcess, call: Call, stored: str, **headers: str) -> httpx.Response:
    """``call`` on ``gw``; ``stored``: the id of the response the ``stored`` call reads."""
    if call.body is None:
        return send(gw, call.path + stored, b"", method="GET", headers=headers)
    return send(gw, call.path, call.body, headers=headers)


@dataclass
class Driven:
    before: list[Sample]
    after: list[Sample]
    text: str
    answers: dict[str, httpx.Response]

    def delta(self, name: str, **labels: str) -> float:
        return sum(matching(self.after, name, **labels)) - sum(matching(self.before, name, **labels))


@pytest.fixture(scope="module")
def driven(gateway: GatewayProcess) -> Driven:
    """One request per entry of CALLS on the session's gateway, between two scrapes."""
    before = samples(scrape(gateway))
    answers: dict[str, httpx.Response] = {}
    for call in CALLS:
        stored = answers["responses"].json()["id"] if call.body is None else ""
        answers[call.name] = resp = make(gateway, call, stored)
        assert resp.status_code == call.status, (call.name, resp.text)
    # A request is counted once its answer is sent (settlement ends after the last byte), so a
    # scrape right after the answers may miss the last few: wait (bounded) until all are counted.
    counted = sum(matching(before, "gateway_requests_total")) + len(CALLS)
    wait_until(lambda: sum(matching(samples(scrape(gateway)), "gateway_requests_total")) >= counted, 10)
    text = scrape(gateway)
    return Driven(before, samples(text), text, answers)


# --- metrics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_each_request_is_counted_under_its_route_and_alias(driven: Driven, call: Call) -> None:
    status_class = f"{call.status // 100}xx"
    assert driven.delta("gateway_requests_total", route=call.route, alias=call.alias, status_class=status_class) >= 1


def test_route_and_alias_labels_are_bounded(driven: Driven, gateway: GatewayProcess) -> None:
    configured = {m["id"] for m in gateway.http.get("/v1/models").json()["data"]}
    assert {"claude", "chat", "gemini", "gemini-embed", "resp-api"} <= configured
    labelled = [lbl for n, lbl, _ in driven.after if n == "gateway_requests_total" and lbl["route"] in ROUTES]
    assert {lbl["route"] for lbl in labelled} == ROUTES
    assert {lbl["alias"] for lbl in labelled} <= configured | {"unknown"}
    for series in ("gateway_inflight_requests", "gateway_added_latency_seconds_count"):
        assert {lbl["route"] for n, lbl, _ in driven.after if n == series} >= ROUTES, series
    for client_string in (CLAUDE_MODEL, GEMINI_MODEL, UNKNOWN_MODEL, "gpt-4o", TEXT, MASTER_KEY):
        assert client_string not in driven.text


def test_token_usage_counts_the_dialect_requests(driven: Driven) -> None:
    claude = driven.answers["messages"].json()["usage"]
    assert claude["input_tokens"] > 0 and claude["output_tokens"] > 0
    for alias in ("claude", "chat", "gemini", "resp-api"):
        for kind in ("input", "output"):
            assert driven.delta("gateway_tokens_total", alias=alias, type=kind) > 0, (alias, kind)
    assert driven.delta("gateway_tokens_total", alias="gemini-embed", type="input") > 0
    # the non-stream Messages answer, the stream and the Gemini request on "claude"
    anthropic = {"gen_ai_provider_name": "anthropic", "gen_ai_request_model": "mock-claude"}
    assert driven.delta("gen_ai_client_token_usage_count", gen_ai_token_type="output", **anthropic) >= 3
    assert (
        driven.delta("gen_ai_client_token_usage_sum", gen_ai_token_type="output", **anthropic)
        >= claude["output_tokens"]
    )
    gemini = {"gen_ai_provider_name": "gcp.gemini", "gen_ai_request_model": "mock-gemini"}
    assert driven.delta("gen_ai_client_token_usage_count", gen_ai_token_type="input", **gemini) >= 2
    chat = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "claude", "error_type": ""}
    assert driven.delta("gen_ai_server_request_duration_seconds_count", **chat) >= 3
    assert driven.delta("gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="gemini") >= 1


def test_gemini_embeddings_are_timed_as_embeddings(driven: Driven) -> None:
    labels = {"gen_ai_operation_name": "embeddings", "gen_ai_request_model": "gemini-embed"}
    assert driven.delta("gen_ai_server_request_duration_seconds_count", **labels) >= 2


# --- access lines --------------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_each_request_has_its_access_line(driven: Driven, gateway: GatewayProcess, call: Call) -> None:
    answer = driven.answers[call.name]
    line = access_line(gateway, answer.headers["x-request-id"])
    assert (line["route"], line["alias"], line["status"]) == (call.route, call.alias, call.status)
    assert line["key_id"] == "master"
    assert line["stream"] is call.stream
    if call.status == 200 and call.route in ("messages", "responses", "gemini_generate"):
        assert isinstance(line["prompt_tokens"], int) and isinstance(line["completion_tokens"], int)
        assert line["deployment"] == f"{call.alias}/0" and line["attempts"] == 1
    if call.status == 404:
        assert line["error_code"] == "model_not_found" and line["deployment"] is None
    assert UNKNOWN_MODEL not in str(line) and CLAUDE_MODEL not in str(line)


# --- rate limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (MESSAGES, VALID[MESSAGES]),
        (COUNT, VALID[COUNT]),
        (RESPONSES, VALID[RESPONSES]),
        (GENERATE, VALID[GENERATE]),
        (EMBED, VALID[EMBED]),
    ],
)
def test_rate_limit_in_the_dialects_shape(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> None:
    key = create_key(gateway, rpm=1)["key"]
    assert send(gateway, path, body, key=key).status_code == 200
    refused = send(gateway, path, body, key=key)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    message, _ = error_of(refused, path)  # the dialect's envelope, rate_limit_error / RESOURCE_EXHAUSTED
    assert "rate limit" in message and "1 requests per minute" in message
    error = refused.json()["error"]
    if path.startswith("/v1beta/"):
        retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
        assert retry == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{refused.headers['retry-after']}s"}
        ]
    elif path == RESPONSES:
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    line = access_line(gateway, refused.headers["x-request-id"])
    assert (line["status"], line["error_code"]) == (429, "rate_limit_exceeded")


# --- spend ----------------------------------------------------------------------------------------


def usage_of(gw: GatewayProcess, key_id: str) -> dict[str, Any]:
    rows = gw.http.get("/admin/usage", params={"group_by": "key", "id": key_id}).json()["data"]
    assert len(rows) == 1, rows
    return dict(rows[0])


def test_spend_of_a_messages_request_is_the_keys_like_a_chat_request(gateway: GatewayProcess) -> None:
    messages_key, chat_key, gemini_key = (create_key(gateway) for _ in range(3))
    prompt = [{"role": "user", "content": f"spend {uuid.uuid4().hex[:8]}"}]
    via_messages = send(
        gateway, MESSAGES, {"model": "claude", "messages": prompt, "max_tokens": 8}, key=messages_key["key"]
    )
    via_chat = send(
        gateway, "/v1/chat/completions", {"model": "claude", "messages": prompt, "max_tokens": 8}, key=chat_key["key"]
    )
    contents = [{"role": "user", "parts": [{"text": prompt[0]["content"]}]}]
    via_gemini = send(gateway, GENERATE, {"contents": contents}, key=gemini_key["key"])
    assert via_messages.status_code == via_chat.status_code == via_gemini.status_code == 200
    used = via_messages.json()["usage"]
    expected = (used["input_tokens"] * 1.00 + used["output_tokens"] * 5.00) / 1e6  # config/prices.yaml: mock-claude
    assert float(via_messages.headers["x-gateway-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    assert via_chat.headers["x-gateway-cost-usd"] == via_messages.headers["x-gateway-cost-usd"]

    by_messages, by_chat = usage_of(gateway, messages_key["id"]), usage_of(gateway, chat_key["id"])
    assert by_messages["spend_usd"] == pytest.approx(expected, rel=1e-6)
    assert {k: v for k, v in by_messages.items() if k != "key"} == {k: v for k, v in by_chat.items() if k != "key"}
    assert (by_messages["requests"], by_messages["prompt_tokens"], by_messages["completion_tokens"]) == (
        1,
        used["input_tokens"],
        used["output_tokens"],
    )
    by_gemini = usage_of(gateway, gemini_key["id"])
    assert by_gemini["requests"] == 1 and by_gemini["spend_usd"] == pytest.approx(
        float(via_gemini.headers["x-gateway-cost-usd"]), rel=1e-6
    )


# --- traces ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(mock: Mock, collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The standard configuration exporting its spans to the collector."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    gw = GatewayProcess(e2e_config(mock.url), tmp_path_factory.mktemp("dialect-traced"), extra_env=env)
    yield gw
    gw.stop()


def server_span_in(found: list[tuple[dict[str, Any], Span]]) -> bool:
    return any(s.kind == Span.SPAN_KIND_SERVER for _, s in found)


Traced = dict[str, tuple[list[Span], httpx.Response]]


@pytest.fixture(scope="module")
def spans(traced: GatewayProcess, collector: Collector) -> Traced:
    """Each call of CALLS on the traced gateway in a trace of its own: name -> (its spans, the answer)."""
    sent: list[tuple[str, str, httpx.Response]] = []
    stored = ""
    for call in CALLS:
        trace_id = uuid.uuid4().hex
        resp = make(traced, call, stored, traceparent=f"00-{trace_id}-{PARENT_ID}-01")
        assert resp.status_code == call.status, (call.name, resp.text)
        stored = resp.json()["id"] if call.name == "responses" else stored
        sent.append((call.name, trace_id, resp))
    out: Traced = {}
    for name, trace_id, resp in sent:
        assert wait_until(lambda t=trace_id: server_span_in(collector.trace(t)), timeout=10), name
        out[name] = ([s for _, s in collector.trace(trace_id)], resp)
    return out


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_one_server_span_per_request_with_its_route(spans: Traced, call: Call) -> None:
    found, resp = spans[call.name]
    servers = [s for s in found if s.kind == Span.SPAN_KIND_SERVER]
    assert len(servers) == 1, [s.name for s in found]
    (server,) = servers
    a = attrs(server)
    assert call.route in (a.get("gateway.route"), a.get("gen_ai.operation.name")), a
    assert a["url.path"] == resp.request.url.path  # never the query string
    assert a["gateway.request_id"] == resp.headers["x-request-id"]
    assert a["gen_ai.request.model"] == call.alias and a["http.response.status_code"] == call.status
    assert server.parent_span_id.hex() == PARENT_ID
    if call.route != "gemini_embed":
        assert server.name == f"chat {call.alias}"
    # the client's model name only in url.path (a Gemini URL names it), never as the model
    named = [{k: v for k, v in attrs(s).items() if k != "url.path"} for s in found]
    assert all(UNKNOWN_MODEL not in str(a) and CLAUDE_MODEL not in str(a) for a in named)


def test_a_gemini_embed_span_is_an_embeddings_span(spans: Traced) -> None:
    found, _ = spans["embed"]
    assert {s.name for s in found if attrs(s).get("gateway.request_id")} == {"embeddings gemini-embed"}


def test_key_query_never_reaches_a_span(traced: GatewayProcess, collector: Collector) -> None:
    key = create_key(traced)["key"]
    trace_id = uuid.uuid4().hex
    resp = send(
        traced,
        f"{GENERATE}?key={key}",
        VALID[GENERATE],
        key=None,
        headers={"traceparent": f"00-{trace_id}-{PARENT_ID}-01"},
    )
    assert resp.status_code == 200, resp.text
    assert wait_until(lambda: len(collector.trace(trace_id)) >= 2, timeout=10)
    assert all(key not in str(attrs(s)) for _, s in collector.trace(trace_id))
    assert key not in traced.log()
