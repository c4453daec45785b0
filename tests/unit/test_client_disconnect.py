"""A client that goes away while its request body is read (gateway/server/asgi.py ``read_body``)
is recorded as 499 ``client_disconnected`` (gateway/server/exchange.py ``Guard``), never as a
400 for the half body, and nothing is sent. Over a real socket: tests/e2e/test_client_disconnect.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app.gateway_app import GatewayApp, create_app
from gateway.config.loader import parse_config
from gateway.errors import ClientDisconnected, RequestTooLarge
from gateway.observability.logs import ACCESS_LOGGER, AUDIT_LOGGER, RequestRecord
from gateway.observability.tracing import Tracing
from gateway.server.asgi import Message, Receive, read_body

MASTER = "sk-unit-master-0001"
BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello there"}]})
DISCONNECT: Message = {"type": "http.disconnect"}


def receiving(messages: Iterable[Message]) -> tuple[Receive, list[Message]]:
    """An ASGI ``receive`` handing out ``messages`` in turn, then waiting as a server does
    once it has nothing more; the second value is what was handed out."""
    pending, given = list(messages), []

    async def receive() -> Message:
        if not pending:
            await asyncio.Event().wait()
        given.append(pending.pop(0))
        return given[-1]

    return receive, given


def part(body: bytes, more: bool = True) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def scope_of(path: str, length: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(b"content-length", str(length).encode()), (b"content-type", b"application/json")]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


# --- the reader ----------------------------------------------------------------------------


async def test_a_disconnect_after_part_of_the_body_is_client_disconnected() -> None:
    receive, given = receiving([part(BODY[:10]), part(BODY[10:20]), DISCONNECT])
    with pytest.raises(ClientDisconnected) as info:
        await read_body(scope_of("/v1/chat/completions", len(BODY)), receive, 65536)
    err = info.value
    assert (err.http_status, err.code) == (499, "client_disconnected")
    assert given[-1] is DISCONNECT and len(given) == 3


async def test_a_disconnect_before_any_body_is_client_disconnected() -> None:
    """uvicorn answers ``http.disconnect`` at once once the connection is gone, even with
    body bytes it had buffered."""
    receive, _ = receiving([DISCONNECT])
    with pytest.raises(ClientDisconnected):
        await read_body(scope_of("/v1/chat/completions", len(BODY)), receive, 65536)


async def test_a_body_in_parts_is_still_read_whole() -> None:
    receive, _ = receiving([part(BODY[:7]), part(b""), part(BODY[7:30]), part(BODY[30:], more=False)])
    assert await read_body(scope_of("/v1/chat/completions", len(BODY)), receive, 65536) == BODY


async def test_past_the_limit_is_still_413_before_a_later_disconnect() -> None:
    receive, given = receiving([part(b"x" * 60), part(b"x" * 60), DISCONNECT])
    with pytest.raises(RequestTooLarge):
        await read_body(scope_of("/v1/chat/completions", 0), receive, 100)
    assert len(given) == 2


# --- through the app: recorded as 499, nothing sent -----------------------------------------


def restore_loggers() -> None:
    """Undo install_handlers (the app's startup does it)."""
    for name in (ACCESS_LOGGER, AUDIT_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


class Rig:
    def __init__(self, app: GatewayApp, spans: InMemorySpanExporter) -> None:
        self.app, self.spans = app, spans
        self.records: list[RequestRecord] = []
        app.request_sinks.append(self.records.append)

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.app.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = f"""
state: {{path: '{tmp_path / "state.db"}'}}
auth: {{master_key: {MASTER}}}
models:
  chat: {{deployments: [{{provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1', api_key: k}}]}}
"""
    spans = InMemorySpanExporter()
    app = create_app(parse_config(config, env={}), tracing=Tracing([SimpleSpanProcessor(spans)]))
    await app.startup()
    try:
        yield Rig(app, spans)
    finally:
        await app.shutdown()
        restore_loggers()


ROUTES = [
    ("/v1/chat/completions", "chat"),
    ("/v1/embeddings", "embeddings"),
    ("/v1/messages", "messages"),
    ("/v1/responses", "responses"),
    ("/v1beta/models/chat:generateContent", "gemini_generate"),
]


@pytest.mark.parametrize(("path", "route"), ROUTES)
async def test_a_client_gone_mid_body_is_recorded_as_499_and_sent_nothing(rig: Rig, path: str, route: str) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    rid = f"req-gone-{route}"
    scope = scope_of(path, 1000, {"authorization": f"Bearer {MASTER}", "x-request-id": rid})
    receive, _ = receiving([part(BODY[:50]), DISCONNECT])
    await rig.app(scope, receive, send)

    assert sent == [], "the client is gone: nothing may be sent"
    (record,) = rig.records
    assert (record.request_id, record.route, record.status, record.error_code) == (
        rid,
        route,
        499,
        "client_disconnected",
    )
    assert (
        rig.sample(
            "gateway_requests_total", {"route": route, "alias": "unknown", "provider": "", "status_class": "4xx"}
        )
        == 1
    )
    duration = "gen_ai_server_request_duration_seconds_count"
    operation = "embeddings" if route == "embeddings" else "chat"
    labels = {"gen_ai_operation_name": operation, "gen_ai_request_model": "unknown"}
    assert rig.sample(duration, {**labels, "error_type": "client_disconnected"}) == 1
    assert rig.sample(duration, {**labels, "error_type": "invalid_json"}) == 0
    (span,) = [s for s in rig.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.attributes is not None
    assert (span.attributes["http.response.status_code"], span.attributes["error.type"]) == (499, "client_disconnected")


async def test_a_whole_body_is_still_answered(rig: Rig) -> None:
    """The same app, a truncated body the client finished sending: its own 400, sent."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = scope_of("/v1/chat/completions", 50, {"authorization": f"Bearer {MASTER}"})
    receive, _ = receiving([part(BODY[:50], more=False)])
    await rig.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "invalid_json"
    (record,) = rig.records
    assert (record.status, record.error_code) == (400, "invalid_json")
