"""Traces and logs of a live gateway.

A gateway process exports its spans over OTLP/HTTP to a receiver in this test
(an aiohttp server on loopback decoding the protobuf ``ExportTraceServiceRequest``),
and one of its aliases points at a recording upstream on the same server, so
the test sees both the spans and the ``traceparent`` the upstream received.
The access and audit lines are read from the gateway's log. The session's
default gateway (no ``OTEL_*`` variables, default logging) shows what is
logged when nothing was switched on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config, wait_until
from tests.ports import free_port

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
BAD_KEY = "sk-e2e-wrong-key-traces-0001"


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


# --- the OTLP receiver and recording upstream ------------------------------------------------


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Collector:
    """OTLP/HTTP ``POST /v1/traces`` and an OpenAI-shaped ``POST /v1/chat/completions``
    that records the request headers, on one loopback port, in a thread."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.upstream_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        with self._lock:
            for rs in export.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    self.spans.extend((resource, span) for span in ss.spans)
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def _chat(self, request: web.Request) -> web.Response:
        with self._lock:
            self.upstream_headers.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.json()
        answer = {
            "id": "chatcmpl-rec",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "recorded"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        }
        return web.json_response(answer)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    def __enter__(self) -> Collector:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._sock.close()

    def trace(self, trace_id: str) -> list[tuple[dict[str, Any], Span]]:
        with self._lock:
            return [(r, s) for r, s in self.spans if s.trace_id.hex() == trace_id]


def attrs(span: Span) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


@pytest.fixture(scope="module")
def traced(mock: Mock, collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway exporting spans to the collector, with payload logging on."""
    recorded = f"{{provider: openai, model: rec-model, base_url: '{collector.url}/v1', api_key: k}}"
    config = e2e_config(mock.url) + f"  recorded: {{deployments: [{recorded}]}}\nlogging: {{log_payloads: true}}\n"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "gateway-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("traced")), extra_env=env)
    yield gw
    gw.stop()


def log_lines(gw: GatewayProcess, logger: str) -> list[dict[str, Any]]:
    out = []
    for line in gw.log().splitlines():
        if line.startswith("{"):
            parsed = orjson.loads(line)
            if parsed.get("logger") == logger:
                out.append(parsed)
    return out


def access_line(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    """The access line of one request (written just after its answer: waited for)."""
    found: list[dict[str, Any]] = []

    def look() -> bool:
        found[:] = [x for x in log_lines(gw, "gateway.access") if x["request_id"] == request_id]
        return bool(found)

    assert wait_until(look, timeout=10), f"no access line for {request_id}:\n{gw.log()[-3000:]}"
    (line,) = found
    return line


def chat(gw: GatewayProcess, body: dict[str, Any], key: str = MASTER_KEY, **headers: str) -> httpx.Response:
    return gw.http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", **headers})


# --- traces --------------------------------------------------------------------------------------


def test_request_and_attempt_spans_continue_the_client_trace(traced: GatewayProcess, collector: Collector) -> None:
    body = {"model": "recorded", "messages": [{"role": "user", "content": "trace me"}], "max_tokens": 20}
    response = chat(traced, body, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert response.status_code == 200, response.text

    assert wait_until(lambda: len(collector.trace(TRACE_ID)) >= 2, timeout=10), traced.log()[-3000:]
    spans = collector.trace(TRACE_ID)
    (resource, server), *_ = [(r, s) for r, s in spans if s.kind == Span.SPAN_KIND_SERVER]
    (_, client), *_ = [(r, s) for r, s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert resource["service.name"] == "gateway-e2e"

    # the client's span is the parent of the request span, which is the parent of the attempt
    assert server.parent_span_id.hex() == PARENT_ID
    assert client.parent_span_id == server.span_id
    assert server.name == "chat recorded" and client.name == "chat rec-model"
    s, c = attrs(server), attrs(client)
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "recorded"
    assert s["gen_ai.response.model"] == "rec-model" and s["gen_ai.provider.name"] == "openai"
    assert s["gen_ai.usage.input_tokens"] == 11 and s["gen_ai.usage.output_tokens"] == 2
    assert s["gen_ai.request.max_tokens"] == 20 and s["http.response.status_code"] == 200
    assert s["gateway.request_id"] == response.headers["x-request-id"]
    assert c["gen_ai.provider.name"] == "openai" and c["gen_ai.request.model"] == "rec-model"
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == int(collector.url.rsplit(":", 1)[1])
    assert c["gen_ai.response.id"] == "chatcmpl-rec"

    # the upstream got the attempt's context
    (headers,) = collector.upstream_headers[-1:]
    assert headers["traceparent"] == f"00-{TRACE_ID}-{client.span_id.hex()}-01"
    # and the access line names the trace
    assert access_line(traced, response.headers["x-request-id"])["trace_id"] == TRACE_ID


def test_a_failed_attempt_span_has_its_error(traced: GatewayProcess, collector: Collector, mock: Mock) -> None:
    mock.behave("fail-model", error_status=503)
    trace_id = uuid.uuid4().hex
    body = {"model": "failing", "messages": [{"role": "user", "content": "fail"}]}
    response = chat(traced, body, traceparent=f"00-{trace_id}-{PARENT_ID}-01")
    assert response.status_code == 503

    assert wait_until(lambda: len(collector.trace(trace_id)) >= 3, timeout=10)
    spans = [s for _, s in collector.trace(trace_id)]
    clients = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert len(clients) == 2  # one retry
    assert all(attrs(c)["error.type"] == "http_503" for c in clients)
    assert all(c.status.code == c.status.STATUS_CODE_ERROR for c in clients)
    assert [attrs(c)["gateway.retry"] for c in clients] == [False, True]
    assert attrs(server)["error.type"] == "http_503" and server.status.code == server.status.STATUS_CODE_ERROR


def test_exemplars_link_latency_to_traces(traced: GatewayProcess) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "exemplar"}]}
    trace_id = uuid.uuid4().hex
    assert chat(traced, body, traceparent=f"00-{trace_id}-{PARENT_ID}-01").status_code == 200

    accept = "application/openmetrics-text; version=1.0.0"

    def duration_exemplar() -> bool:
        text = httpx.get(traced.url + "/metrics", headers={"accept": accept}, timeout=10).text
        return any(
            line.startswith("gen_ai_server_request_duration_seconds_bucket") and f'trace_id="{trace_id}"' in line
            for line in text.splitlines()
        )

    # The request's duration (and its exemplar) is observed once its answer is sent (settlement
    # ends after the last byte): wait (bounded) until it is.
    wait_until(duration_exemplar, 10)
    openmetrics = httpx.get(traced.url + "/metrics", headers={"accept": accept}, timeout=10)
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    durations = [
        line
        for line in openmetrics.text.splitlines()
        if line.startswith("gen_ai_server_request_duration_seconds_bucket") and f'trace_id="{trace_id}"' in line
    ]
    assert durations, "no exemplar with the request's trace id"
    attempts = [
        line
        for line in openmetrics.text.splitlines()
        if line.startswith("gen_ai_client_operation_duration_seconds_bucket") and f'trace_id="{trace_id}"' in line
    ]
    assert attempts
    assert openmetrics.text.rstrip().endswith("# EOF")

    classic = httpx.get(traced.url + "/metrics", timeout=10)
    assert classic.headers["content-type"].startswith("text/plain") and "trace_id" not in classic.text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make test` installs it: scripts/install-os-deps.sh)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=classic.text, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- access lines --------------------------------------------------------------------------------


def test_access_line_of_a_success_with_redacted_payloads(traced: GatewayProcess) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "write to carol@example.com please"}]}
    response = chat(traced, body)
    assert response.status_code == 200
    line = access_line(traced, response.headers["x-request-id"])
    assert line["status"] == 200 and line["route"] == "chat" and line["alias"] == "chat"
    assert line["key_id"] == "master" and line["deployment"] == "chat/0" and line["provider"] == "openai"
    assert line["model"] == "mock-gpt" and line["attempts"] == 1 and line["error_code"] is None
    assert isinstance(line["prompt_tokens"], int) and isinstance(line["completion_tokens"], int)
    assert line["latency_ms"] > 0 and line["stream"] is False and line["cache"] in ("miss", "off")
    assert len(line["trace_id"]) == 32  # tracing is on: a new trace
    assert "[REDACTED:email]" in line["prompt"] and "carol@example.com" not in traced.log()
    # the mock echoes the prompt: the completion is redacted the same way
    answer = response.json()["choices"][0]["message"]["content"]
    assert line["completion"] == answer.replace("carol@example.com", "[REDACTED:email]") != answer


def test_access_line_of_an_upstream_error(traced: GatewayProcess, mock: Mock) -> None:
    mock.behave("fail-model", error_status=500)
    response = chat(traced, {"model": "failing", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 500
    line = access_line(traced, response.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["attempts"], line["alias"]) == (500, "http_500", 2, "failing")
    assert line["prompt_tokens"] is None and line["cost_usd"] is None


def test_access_line_of_a_refused_request(traced: GatewayProcess) -> None:
    response = chat(traced, {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    line = access_line(traced, response.headers["x-request-id"])
    assert (line["status"], line["error_code"], line["alias"], line["attempts"]) == (
        404,
        "model_not_found",
        "unknown",
        0,
    )
    assert line["deployment"] is None and line["cache"] is None


def test_access_line_of_a_cache_hit(traced: GatewayProcess, mock: Mock) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("cache")}], "temperature": 0}
    first, second = chat(traced, body), chat(traced, body)
    assert second.headers["x-gateway-cache"] == "hit"
    miss, hit = (access_line(traced, r.headers["x-request-id"]) for r in (first, second))
    assert miss["cache"] == "miss" and miss["deployment"] == "chat/0"
    assert hit["cache"] == "hit" and hit["deployment"] is None and hit["attempts"] == 0
    assert hit["prompt_tokens"] is None  # nothing was used upstream


def test_access_line_of_a_stream(traced: GatewayProcess, collector: Collector) -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "stream it"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with traced.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    line = access_line(traced, response.headers["x-request-id"])
    assert line["stream"] is True and line["status"] == 200
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert isinstance(line["completion_tokens"], int) and line["completion"]
    # the request span covers the whole stream; its attempt span ended at the first chunk
    assert wait_until(lambda: len(collector.trace(line["trace_id"])) >= 2, timeout=10)
    spans = {s.kind: s for _, s in collector.trace(line["trace_id"])}
    server, client = spans[Span.SPAN_KIND_SERVER], spans[Span.SPAN_KIND_CLIENT]
    assert attrs(server)["gateway.stream"] is True and attrs(server)["gateway.ttft_ms"] == line["ttft_ms"]
    assert attrs(server)["gen_ai.usage.output_tokens"] == line["completion_tokens"]
    assert client.end_time_unix_nano <= server.end_time_unix_nano


def test_embeddings_spans(traced: GatewayProcess, collector: Collector) -> None:
    trace_id = uuid.uuid4().hex
    response = traced.http.post(
        "/v1/embeddings",
        json={"model": "embed", "input": "vectors"},
        headers={"traceparent": f"00-{trace_id}-{PARENT_ID}-01"},
    )
    assert response.status_code == 200
    assert wait_until(lambda: len(collector.trace(trace_id)) >= 2, timeout=10)
    spans = {s.kind: s for _, s in collector.trace(trace_id)}
    server, client = spans[Span.SPAN_KIND_SERVER], spans[Span.SPAN_KIND_CLIENT]
    assert server.name == "embeddings embed" and client.name == "embeddings mock-embed"
    assert attrs(server)["gen_ai.operation.name"] == attrs(client)["gen_ai.operation.name"] == "embeddings"
    line = access_line(traced, response.headers["x-request-id"])
    assert line["route"] == "embeddings" and line["trace_id"] == trace_id and "completion" not in line


# --- audit lines ---------------------------------------------------------------------------------


def test_auth_failures_are_audited_without_the_token(traced: GatewayProcess) -> None:
    response = chat(traced, {"model": "chat", "messages": [{"role": "user", "content": "x"}]}, key=BAD_KEY)
    assert response.status_code == 401
    assert wait_until(lambda: any(x["event"] == "auth.failed" for x in log_lines(traced, "gateway.audit")))
    event = next(x for x in log_lines(traced, "gateway.audit") if x["event"] == "auth.failed")
    assert event["reason"] == "invalid_api_key" and event["client"] == "127.0.0.1" and event["level"] == "warning"
    assert event["path"] == "/v1/chat/completions"
    assert BAD_KEY not in traced.log()
    # its access line too, with no key id: none was established
    line = access_line(traced, response.headers["x-request-id"])
    assert line["status"] == 401 and line["key_id"] is None and line["error_code"] == "invalid_api_key"


def test_key_changes_and_refused_admin_calls_are_audited(traced: GatewayProcess) -> None:
    created = traced.http.post("/admin/keys", json={"name": unique("audited")})
    assert created.status_code == 201, created.text
    key_id, token = created.json()["id"], created.json()["key"]
    rid = unique("audit").replace(" ", "-")
    assert traced.http.delete(f"/admin/keys/{key_id}", headers={"x-request-id": rid}).status_code == 200
    denied = httpx.get(traced.url + "/admin/keys", headers={"authorization": f"Bearer {BAD_KEY}"}, timeout=10)
    assert denied.status_code == 401

    def events() -> list[dict[str, Any]]:
        lines = log_lines(traced, "gateway.audit")
        return [x for x in lines if x.get("target") == f"keys/{key_id}" or x["event"] == "admin.denied"]

    assert wait_until(lambda: len(events()) >= 3)
    by_event = {x["event"]: x for x in events()}
    assert by_event["keys.create"]["actor"] == "master" and by_event["keys.create"]["client"] == "127.0.0.1"
    assert by_event["keys.revoke"]["request_id"] == rid and by_event["keys.revoke"]["role"] == "admin"
    assert by_event["admin.denied"]["reason"] == "invalid_api_key" and by_event["admin.denied"]["level"] == "warning"
    assert by_event["admin.denied"]["path"] == "/admin/keys"
    assert token not in traced.log() and BAD_KEY not in traced.log()


# --- nothing switched on ---------------------------------------------------------------------------


def test_by_default_no_payloads_and_no_trace(gateway: GatewayProcess) -> None:
    secret = unique("dave@example.com private prompt")
    response = chat(gateway, {"model": "chat", "messages": [{"role": "user", "content": secret}]})
    assert response.status_code == 200
    line = access_line(gateway, response.headers["x-request-id"])
    assert line["trace_id"] is None and "prompt" not in line and "completion" not in line
    log = gateway.log()
    assert secret not in log and "dave@example.com" not in log and MASTER_KEY not in log
    assert "tracing on" not in log


def test_an_exporter_the_gateway_cannot_use_stops_it_at_startup(mock: Mock, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"state: {{path: '{tmp_path / 'state.db'}'}}\n" + e2e_config(mock.url))
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, "OTEL_TRACES_EXPORTER": "zipkin"}
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(free_port())]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'" in done.stdout + done.stderr
