"""A loopback webhook receiver that records what Alertmanager sends, and the
stack's trace backend.

The stack (scripts/stack.py) points every Alertmanager receiver at ``<sink>/<receiver name>``;
this server keeps each POSTed JSON body with its path. ``GET /`` answers the count (readiness).
The gateways export their OpenTelemetry spans here too (OTLP over HTTP, ``POST /v1/traces``,
protobuf): each span is kept as ``{"trace_id", "span_id", "parent_id", "name", "kind",
"service", "attributes"}`` (in a process: one JSON line each in ``traces.jsonl`` beside
``--out``). Jaeger stands in for this in docker-compose.yml; it is no OS package.

- in a process: ``python -m scripts.stack_sink --port 9095 --out .stack/alerts.jsonl`` writes one
  JSON line per notification (``{"path", "received_at", "body"}``) and a summary line to stdout;
- in a test: ``with AlertSink() as sink: ... sink.notifications()``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Notification:
    path: str
    """``/<receiver>`` as the stack configures it."""
    received_at: float
    """time.time() when it arrived."""
    body: dict[str, Any]
    """Alertmanager's webhook payload: receiver, status, groupLabels, commonLabels, alerts, ..."""

    @property
    def receiver(self) -> str:
        return str(self.body.get("receiver", ""))

    def alertnames(self) -> set[str]:
        return {str(a.get("labels", {}).get("alertname")) for a in self.body.get("alerts", [])}


_SCALARS = ("string_value", "int_value", "bool_value", "double_value")


def decode_spans(raw: bytes) -> list[dict[str, Any]]:
    """The spans of an OTLP ExportTraceServiceRequest (ValueError when it is not one)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except Exception as exc:  # protobuf's DecodeError (its module has no type stubs)
        raise ValueError(f"not an OTLP trace export: {exc}") from None
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {}
                for kv in span.attributes:
                    value = kv.value
                    kind = value.WhichOneof("value")
                    attributes[kv.key] = (
                        getattr(value, kind)
                        if kind in ("string_value", "int_value", "bool_value", "double_value")
                        else str(value)
                    )
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": int(span.kind),
                        "service": resource.get("service.name", ""),
                        "attributes": attributes,
                    }
                )
    return spans


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        on_post: Callable[[Notification], None],
        on_spans: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        super().__init__(address, _Handler)
        self.on_post = on_post
        self.on_spans = on_spans
        self.count = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self._answer(400, {"error": f"a JSON body of 1 to {MAX_BODY_BYTES} bytes is required"})
            return
        if self.path == "/v1/traces":
            try:
                spans = decode_spans(self.rfile.read(length))
            except ValueError as exc:
                self._answer(400, {"error": str(exc)})
                return
            self.server.on_spans(spans)
            self._answer(200, {})
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        if not isinstance(body, dict):
            self._answer(400, {"error": "the body must be a JSON object"})
            return
        self.server.on_post(Notification(self.path, time.time(), body))
        self.server.count += 1
        self._answer(200, {"status": "recorded"})

    def do_GET(self) -> None:
        self._answer(200, {"notifications": self.server.count})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded notifications are the log


class AlertSink:
    """The receiver in a background thread on ``host:port`` (0: a free port)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, out: Path | None = None, echo: TextIO | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._seen: list[Notification] = []
        self._spans: list[dict[str, Any]] = []
        self._out = out
        self._traces_out = out.with_name("traces.jsonl") if out is not None else None
        self._echo = echo
        self._server = _Server((host, port), self._record, self._record_spans)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _record(self, n: Notification) -> None:
        with self._lock:
            self._seen.append(n)
            if self._out is not None:
                with self._out.open("a") as f:
                    f.write(json.dumps({"path": n.path, "received_at": n.received_at, "body": n.body}) + "\n")
            if self._echo is not None:
                print(summary(n), file=self._echo, flush=True)

    def _record_spans(self, spans: list[dict[str, Any]]) -> None:
        with self._lock:
            self._spans += spans
            if self._traces_out is not None:
                with self._traces_out.open("a") as f:
                    f.writelines(json.dumps(span) + "\n" for span in spans)

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._seen)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def serve(self) -> None:
        """Serve in this thread until SIGTERM or Ctrl-C."""
        signal.signal(signal.SIGTERM, _stop)
        try:
            self._server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> AlertSink:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def summary(n: Notification) -> str:
    names = ",".join(sorted(n.alertnames()))
    return f"{n.path} {n.body.get('status')} {names} groupLabels={json.dumps(n.body.get('groupLabels', {}))}"


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file the notifications go to")
    args = parser.parse_args(argv)
    sink = AlertSink(args.host, args.port, args.out, echo=sys.stdout)
    print(f"alert sink on {sink.url}, writing {args.out}", flush=True)
    sink.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
