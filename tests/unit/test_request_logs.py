"""gateway.observability.logs: the access line, redaction, audit events, the
handlers that render them; and the OpenMetrics exposition with exemplars."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app.gateway_app import create_app
from gateway.config.loader import ConfigError, parse_config
from gateway.config.operations import LoggingSettings
from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from gateway.observability.logs import (
    ACCESS_LOGGER,
    AUDIT_LOGGER,
    AccessLog,
    Redactor,
    RequestRecord,
    _StructuredHandler,
    audit,
    audit_budget_event,
    deliver,
    flush_handlers,
    install_handlers,
)
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import Tracing
from gateway.policies.budget import BudgetEvent

REQ = {
    "model": "chat",
    "messages": [
        {"role": "user", "content": "mail bob@example.com, key sk-abcdefghijklmnop1234, card 4111 1111 1111 1111"}
    ],
}
ANSWER = {"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content": "ok, jane@corp.io"}}]}


def record(**kw: object) -> RequestRecord:
    base: dict[str, object] = {
        "ts": 1764158400.25,
        "request_id": "req_1",
        "route": "chat",
        "status": 200,
        "latency_ms": 12.5,
        "key_id": "key_ab",
        "team": "search",
        "alias": "chat",
        "deployment": "chat/0",
        "provider": "openai",
        "model": "up-a",
        "attempts": 1,
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "cost_usd": 0.0001,
        "cache": "miss",
    }
    return RequestRecord(**{**base, **kw})  # type: ignore[arg-type]


def restore_loggers() -> None:
    """Undo install_handlers (the app's startup does it too)."""
    for name in (ACCESS_LOGGER, AUDIT_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """The access and audit loggers' output, as the gateway installs them."""
    stream = io.StringIO()
    install_handlers(LoggingSettings(), stream)
    yield stream
    restore_loggers()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


# --- the access line -------------------------------------------------------------------------


def test_one_json_line_per_request_with_every_field(out: io.StringIO) -> None:
    AccessLog(LoggingSettings()).emit(record(), REQ, ANSWER)
    (line,) = lines(out)
    assert line["ts"] == "2025-11-26T12:00:00.250Z"
    assert line["logger"] == "gateway.access" and line["level"] == "info"
    for name in RequestRecord.__dataclass_fields__:
        assert name in line, name
    assert line["key_id"] == "key_ab" and line["status"] == 200 and line["cache"] == "miss"
    # by default, never the prompt or the completion
    assert "prompt" not in line and "completion" not in line
    assert "bob@example.com" not in out.getvalue() and "jane@corp.io" not in out.getvalue()


def test_payloads_when_enabled_are_redacted(out: io.StringIO) -> None:
    AccessLog(LoggingSettings(log_payloads=True)).emit(record(), REQ, ANSWER)
    (line,) = lines(out)
    prompt, completion = str(line["prompt"]), str(line["completion"])
    assert "[REDACTED:email]" in prompt and "[REDACTED:key]" in prompt and "[REDACTED:card]" in prompt
    assert "bob@example.com" not in prompt and "sk-abcdefghijklmnop1234" not in prompt and "4111" not in prompt
    assert completion == "ok, [REDACTED:email]"


def test_payloads_are_clipped(out: io.StringIO) -> None:
    req = {"model": "chat", "messages": [{"role": "user", "content": "x" * 500}]}
    AccessLog(LoggingSettings(log_payloads=True, payload_max_chars=50)).emit(record(), req, None)
    (line,) = lines(out)
    assert str(line["prompt"]).startswith('[{"role":"user"')
    assert str(line["prompt"]).endswith("more chars]") and len(str(line["prompt"])) < 100
    assert "completion" not in line


def test_embeddings_input_is_logged_but_never_the_vectors(out: io.StringIO) -> None:
    vectors = {"object": "list", "data": [{"embedding": [0.1, 0.2]}]}
    AccessLog(LoggingSettings(log_payloads=True)).emit(record(route="embeddings"), {"input": "hi"}, vectors)
    (line,) = lines(out)
    assert line["prompt"] == '"hi"' and "completion" not in line


class CountingStream(io.StringIO):
    """A stream that counts its writes (each one a system call on a real file)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def counting() -> Iterator[CountingStream]:
    stream = CountingStream()
    install_handlers(LoggingSettings(), stream)
    yield stream
    restore_loggers()


def access_handler() -> _StructuredHandler:
    """The handler the gateway installs (pytest may add its capture handlers beside it)."""
    return next(h for h in logging.getLogger(ACCESS_LOGGER).handlers if isinstance(h, _StructuredHandler))


def line(request_id: str) -> dict[str, object]:
    return {"ts": "2025-11-26T12:00:00.250Z", "logger": ACCESS_LOGGER, "level": "info", "request_id": request_id}


async def test_lines_written_in_the_event_loop_are_buffered_then_flushed_soon(counting: CountingStream) -> None:
    handler = access_handler()
    for i in range(10):
        handler.write_line(line(f"req_{i}"))
    assert counting.writes == 0, "nothing written per request"
    await asyncio.sleep(0.3)  # the flush timer (0.1 s) has fired
    assert [x["request_id"] for x in lines(counting)] == [f"req_{i}" for i in range(10)]
    assert counting.writes == 1, "ten lines, one write"


async def test_a_full_buffer_is_written_at_once(counting: CountingStream) -> None:
    handler = access_handler()
    for i in range(256):
        handler.write_line(line(f"req_{i}"))
    assert len(lines(counting)) == 256 and counting.writes == 1


def test_without_an_event_loop_each_line_is_written_at_once(counting: CountingStream) -> None:
    access_handler().write_line(line("no_loop"))
    assert [x["request_id"] for x in lines(counting)] == ["no_loop"]


async def test_lines_left_for_a_closed_stream_are_dropped_quietly(
    counting: CountingStream, capsys: pytest.CaptureFixture[str]
) -> None:
    access_handler().write_line(line("too_late"))
    counting.close()  # as pytest's captured stream, or stderr at interpreter exit
    flush_handlers()
    assert "Traceback" not in capsys.readouterr().err


async def test_buffered_lines_survive_a_reload_and_shutdown(counting: CountingStream) -> None:
    access_handler().write_line(line("before_reload"))
    second = io.StringIO()
    install_handlers(LoggingSettings(), second)  # a config reload replaces the handler
    assert [x["request_id"] for x in lines(counting)] == ["before_reload"]
    access_handler().write_line(line("before_shutdown"))
    flush_handlers()  # the app's shutdown
    assert [x["request_id"] for x in lines(second)] == ["before_shutdown"]


def test_text_format(out: io.StringIO) -> None:
    stream = io.StringIO()
    install_handlers(LoggingSettings(format="text"), stream)
    AccessLog(LoggingSettings()).emit(record(error_code="timeout", status=504, ttft_ms=None))
    text = stream.getvalue().strip()
    assert text.startswith("2025-11-26T12:00:00.250Z gateway.access info ")
    assert " status=504 " in text and " error_code=timeout " in text and " ttft_ms=- " in text
    assert " stream=false" in text


def test_a_second_install_replaces_the_handler(out: io.StringIO) -> None:
    again = io.StringIO()
    install_handlers(LoggingSettings(), again)  # a config reload
    AccessLog(LoggingSettings()).emit(record())
    assert out.getvalue() == "" and len(lines(again)) == 1


# --- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("use sk-proj-AbCdEf0123456789xyz now", "use [REDACTED:key] now"),
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: [REDACTED:key]"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:key]"),
        ("write to a.b-c@mail.example.org.", "write to [REDACTED:email]."),
        ("card 4242-4242-4242-4242 ok", "card [REDACTED:card] ok"),
        ("order 1234567890123 is not a card", "order 1234567890123 is not a card"),  # fails the Luhn check
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_redactor(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_extra_patterns() -> None:
    assert Redactor([r"EMP-\d{6}"])("employee EMP-123456 asked") == "employee [REDACTED] asked"


def test_a_bad_pattern_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"logging: redact_patterns\[1\]: not a valid regular expression"):
        parse_config("logging: {redact_patterns: ['ok', '(unclosed']}", env={})


def test_logging_settings_from_config() -> None:
    text = "logging: {format: text, access_log: 'false', log_payloads: true, payload_max_chars: 10}"
    settings = parse_config(text, env={}).settings.logging
    assert (settings.format, settings.access_log, settings.log_payloads, settings.payload_max_chars) == (
        "text",
        False,
        True,
        10,
    )
    with pytest.raises(ConfigError, match=r"logging\.format"):
        parse_config("logging: {format: xml}", env={})


# --- audit events and subscribers ------------------------------------------------------------------


def test_audit_events_are_json_lines_with_an_event_field(out: io.StringIO) -> None:
    audit("auth.failed", logging.WARNING, reason="invalid_api_key", client="10.0.0.1", path="/v1/chat/completions")
    audit_budget_event(BudgetEvent("threshold", "team", "search", "daily", 8.5, 10.0, "2026-11-26"))
    auth, budget = lines(out)
    assert auth["logger"] == "gateway.audit" and auth["level"] == "warning"
    assert auth["event"] == "auth.failed" and auth["reason"] == "invalid_api_key" and auth["client"] == "10.0.0.1"
    assert budget["event"] == "budget.threshold"
    assert (budget["scope"], budget["id"], budget["period"], budget["spent_usd"], budget["limit_usd"]) == (
        "team",
        "search",
        "daily",
        8.5,
        10.0,
    )


def test_a_failing_subscriber_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    got: list[RequestRecord] = []

    def broken(rec: RequestRecord) -> None:
        raise RuntimeError("boom")

    deliver([broken, got.append], record())
    assert [r.request_id for r in got] == ["req_1"]
    assert "request record subscriber" in caplog.text


# --- exemplars ----------------------------------------------------------------------------------


def test_exemplars_only_in_the_openmetrics_exposition() -> None:
    m = Metrics()
    exemplar = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
    m.request_done("chat", "chat", "openai", 200, 0.05, "", 0.04, False, exemplar)
    classic, classic_type = m.render("text/plain")
    assert classic_type.startswith("text/plain") and b"trace_id" not in classic
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.rstrip().endswith("# EOF")
    bucket = next(
        line
        for line in text.splitlines()
        if line.startswith("gen_ai_server_request_duration_seconds_bucket") and "#" in line
    )
    assert 'le="0.08"' in bucket
    assert '# {span_id="00f067aa0ba902b7",trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.05' in bucket


# --- the real app, in process: subscribers and spans -----------------------------------------------


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with MockServer(MockConfig()) as server:
        yield server.url


async def test_subscribers_get_each_record_and_the_span_matches(mock_url: str, tmp_path: Path) -> None:
    config = f"""
state: {{path: '{tmp_path / "state.db"}'}}
auth: {{master_key: sk-unit-master-0001}}
models:
  chat: {{deployments: [{{provider: openai, model: mock-gpt, base_url: '{mock_url}/v1', api_key: k}}]}}
"""
    exporter = InMemorySpanExporter()
    app = create_app(parse_config(config, env={}), tracing=Tracing([SimpleSpanProcessor(exporter)]))
    got: list[RequestRecord] = []
    app.request_sinks.append(got.append)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            ok = await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-unit-master-0001"}
            )
            refused = await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"})
    finally:
        await app.shutdown()
        restore_loggers()
    assert (ok.status_code, refused.status_code) == (200, 401)
    first, second = got
    assert first.request_id == ok.headers["x-request-id"] and first.status == 200 and first.key_id == "master"
    assert (first.deployment, first.model, first.attempts) == ("chat/0", "mock-gpt", 1)
    assert first.prompt_tokens == ok.json()["usage"]["prompt_tokens"]
    assert second.status == 401 and second.error_code == "invalid_api_key" and second.key_id is None
    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [f"{s.context.trace_id:032x}" for s in servers] == [first.trace_id, second.trace_id]
    (client_span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert client_span.parent is not None and client_span.parent.span_id == servers[0].context.span_id


def test_under_another_logging_setup_the_line_is_an_ordinary_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        AccessLog(LoggingSettings()).emit(record(status=429, error_code="rate_limit_exceeded"))
    (rec,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    fields = rec.fields  # type: ignore[attr-defined]
    assert rec.getMessage() == "request" and fields["status"] == 429 and fields["ts"] == "2025-11-26T12:00:00.250Z"


async def test_an_app_without_otel_variables_builds_no_tracer(
    mock_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    config = f"state: {{path: '{tmp_path / 'state.db'}'}}\nlogging: {{access_log: false}}\n"
    app = create_app(parse_config(config, env={}))
    await app.startup()
    try:
        assert not app.tracing.enabled and app.tracing.provider is None
        assert app.access_log is None
    finally:
        await app.shutdown()
        restore_loggers()
