"""gateway.observability.tracing: when tracing is on, the SERVER span of a
request, the CLIENT spans of its attempts (through the real router), the W3C
context taken from the client and handed upstream; when it is off, nothing.

Spans are collected with the SDK's own in-memory exporter: the tracer, the
spans and the propagation under test are the real ones.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config.loader import parse_config
from gateway.errors import UpstreamError
from gateway.observability.logs import RequestRecord
from gateway.observability.tracing import Tracing, TracingConfigError, exporters_from_env
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, build_routes
from gateway.routing.router import Lease, RequestTrace, Router

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

MODELS = """
router:
  retry: {max_retries: 1, backoff_initial_s: 0.001, backoff_max_s: 0.002}
models:
  chat:
    deployments:
      - {id: first, provider: openai, model: up-a, base_url: 'https://api.example.test:8443/v1', api_key: k}
      - {id: second, provider: anthropic, model: up-b, base_url: 'http://127.0.0.1:9/v1', api_key: k}
"""


def scope(headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": raw, "client": ("10.0.0.7", 5)}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(spans: InMemorySpanExporter) -> Iterator[Tracing]:
    t = Tracing([SimpleSpanProcessor(spans)])
    yield t
    t.shutdown()


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind == kind]


def record(**kw: Any) -> RequestRecord:
    base: dict[str, Any] = {"ts": 0.0, "request_id": "req_1", "route": "chat", "status": 200, "latency_ms": 1.0}
    return RequestRecord(**{**base, **kw})


# --- on or off: the environment decides -------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ],
)
def test_exporters_from_env(env: dict[str, str], expected: list[str]) -> None:
    assert exporters_from_env(env) == expected


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_grpc_is_refused_with_the_reason() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(TracingConfigError, match=r"'grpc' is not supported.*http/protobuf"):
        exporters_from_env(env)


def test_off_by_default_builds_no_provider() -> None:
    tracing = Tracing.from_env({})
    assert not tracing.enabled
    assert tracing.provider is None and tracing.tracer is None
    # and nothing was installed process-wide either
    assert isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)
    tracing.shutdown()


def test_on_with_an_endpoint_keeps_the_provider_to_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-unit")
    before = otel_trace.get_tracer_provider()
    tracing = Tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert tracing.enabled and tracing.provider is not None
        assert tracing.provider.resource.attributes["service.name"] == "gw-unit"
        assert otel_trace.get_tracer_provider() is before  # never the global provider
    finally:
        tracing.shutdown()


def test_the_default_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tracing = Tracing([SimpleSpanProcessor(InMemorySpanExporter())])
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == "llm-gateway"
    tracing.shutdown()


# --- the request span ---------------------------------------------------------------------


def test_the_client_traceparent_makes_the_request_span_a_child(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    span = tracing.request(scope({"traceparent": TRACEPARENT, "tracestate": "vendor=1"}), "chat")
    assert span.trace_id == TRACE_ID
    assert span.exemplar is not None and span.exemplar["trace_id"] == TRACE_ID
    span.finish(
        record(
            alias="chat",
            deployment="first",
            provider="gemini",
            model="up-a",
            prompt_tokens=5,
            completion_tokens=7,
            key_id="key_1",
            team="t",
            cache="miss",
            attempts=1,
        ),
        {"temperature": 0.2, "max_tokens": 10},
    )
    (server,) = by_kind(spans, SpanKind.SERVER)
    assert server.name == "chat chat"
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    attrs = dict(server.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.response.model"] == "up-a"
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.usage.input_tokens"] == 5 and attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.request.temperature"] == 0.2 and attrs["gen_ai.request.max_tokens"] == 10
    assert attrs["http.response.status_code"] == 200
    assert attrs["client.address"] == "10.0.0.7"
    assert "error.type" not in attrs


def test_without_traceparent_a_new_trace_starts(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    span = tracing.request(scope({"traceparent": "garbage"}), "embeddings")
    span.finish(record(route="embeddings", alias="embed"), None)
    (server,) = by_kind(spans, SpanKind.SERVER)
    assert server.parent is None
    assert server.name == "embeddings embed"
    assert span.trace_id != TRACE_ID


def test_a_server_error_marks_the_span(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    tracing.request(scope(), "chat").finish(record(status=502, error_code="timeout"), None)
    tracing.request(scope(), "chat").finish(record(status=404, error_code="model_not_found"), None)
    failed, client_error = by_kind(spans, SpanKind.SERVER)
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "timeout"
    # a client's mistake is not the server span's error (OTel HTTP conventions)
    assert client_error.status.status_code is StatusCode.UNSET
    assert dict(client_error.attributes or {})["error.type"] == "model_not_found"


# --- attempts, through the real router ----------------------------------------------------------


def router() -> Router:
    settings = parse_config(textwrap.dedent(MODELS), env={}).settings
    return Router(build_routes(settings, presets()), total_timeout_s=10, rng=random.Random(0))


async def test_each_attempt_is_a_client_span_and_carries_its_context_upstream(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    sent: list[dict[str, str]] = []
    outcomes: list[object] = [
        UpstreamError("busy", upstream_status=503),
        {
            "id": "r1",
            "model": "up-a-0613",
            "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        },
    ]

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> Any:
        headers: dict[str, str] = {}
        tracing.inject(headers)  # what the HTTP client does for each upstream request
        sent.append(headers)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    request_span = tracing.request(scope({"traceparent": TRACEPARENT}), "chat")
    trace = RequestTrace(spans=request_span)
    result = await router().run("chat", attempt, trace)
    assert result["id"] == "r1"
    request_span.finish(record(attempts=trace.attempts), None)

    server = by_kind(spans, SpanKind.SERVER)[0]
    failed, ok = by_kind(spans, SpanKind.CLIENT)
    for client in (failed, ok):
        assert client.parent is not None and client.parent.span_id == server.context.span_id
        assert client.context.trace_id == server.context.trace_id
        assert client.name == "chat up-a"
    # each upstream request carried its own attempt's span as the parent
    assert sent[0]["traceparent"] == f"00-{TRACE_ID}-{failed.context.span_id:016x}-01"
    assert sent[1]["traceparent"] == f"00-{TRACE_ID}-{ok.context.span_id:016x}-01"
    a, b = dict(failed.attributes or {}), dict(ok.attributes or {})
    assert a["error.type"] == "http_503" and failed.status.status_code is StatusCode.ERROR
    assert a["gateway.retry"] is False and b["gateway.retry"] is True
    assert a["server.address"] == "api.example.test" and a["server.port"] == 8443
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "up-a"
    assert b["gen_ai.response.model"] == "up-a-0613" and b["gen_ai.response.id"] == "r1"
    assert b["gen_ai.response.finish_reasons"] == ("stop",)
    assert b["gen_ai.usage.input_tokens"] == 3 and b["gen_ai.usage.output_tokens"] == 4
    # the attempt's context was detached: nothing is current any more
    after: dict[str, str] = {}
    tracing.inject(after)
    assert after == {}


async def test_a_non_retryable_failure_closes_its_span_too(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> Any:
        raise UpstreamError("bad request", upstream_status=400, code="invalid_request", fallback=False)

    request_span = tracing.request(scope(), "chat")
    with pytest.raises(UpstreamError):
        await router().run("chat", attempt, RequestTrace(spans=request_span))
    (client,) = by_kind(spans, SpanKind.CLIENT)
    assert client.status.status_code is StatusCode.ERROR
    assert dict(client.attributes or {})["error.type"] == "http_400"


async def test_without_spans_the_router_does_no_span_work(spans: InMemorySpanExporter) -> None:
    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> str:
        return "ok"

    trace = RequestTrace()
    assert await router().run("chat", attempt, trace) == "ok"
    assert trace.spans is None and spans.get_finished_spans() == ()


def test_the_compose_stack_sends_spans_to_jaeger_over_otlp_http() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["x-gateway"]["environment"].items()}
    assert exporters_from_env(env) == ["otlp"]
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", 4318)  # OTLP/HTTP, not gRPC's 4317
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]


async def test_an_unsampled_trace_makes_no_attempt_span_but_still_propagates(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    sent: list[dict[str, str]] = []

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> str:
        headers: dict[str, str] = {}
        tracing.inject(headers)
        sent.append(headers)
        return "ok"

    request_span = tracing.request(scope({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}), "chat")  # not sampled
    assert request_span.exemplar is None  # no exemplar points at a trace nobody kept
    await router().run("chat", attempt, RequestTrace(spans=request_span))
    request_span.finish(record(), None)
    assert spans.get_finished_spans() == ()
    assert sent[0]["traceparent"].startswith(f"00-{TRACE_ID}-") and sent[0]["traceparent"].endswith("-00")


def test_a_span_written_later_ends_when_its_request_ended(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    # gateway/server/records.py may write a request's record a few ms after it ended
    import time

    span = tracing.request(scope(), "chat")
    ended = time.time()
    time.sleep(0.05)
    span.finish(record(), None, ended)
    (server,) = by_kind(spans, SpanKind.SERVER)
    assert server.end_time == int(ended * 1e9)
