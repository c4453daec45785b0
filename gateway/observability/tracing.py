"""Traces: an OpenTelemetry span per client request and one per upstream attempt.

Configured by the standard ``OTEL_*`` environment variables, read by the
OpenTelemetry SDK itself wherever it reads them (endpoint, headers, timeout,
compression and certificates of the OTLP exporter; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_TRACES_SAMPLER``/``_ARG``; ``OTEL_BSP_*``).
The gateway decides only whether tracing is on (:func:`exporters_from_env`):

- ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``: off;
- ``OTEL_TRACES_EXPORTER`` = ``otlp`` and/or ``console``: on, with those exporters;
- unset: on with ``otlp`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, else off (the default: a
  gateway nobody pointed at a collector does not try to reach one).

OTLP goes over HTTP with protobuf bodies (port 4318): the exporter needs only
``requests``, where the gRPC one would pull in ``grpcio``; Jaeger, Tempo and
the Collector all accept it. Asking for ``grpc`` is refused with a clear error
rather than silently exporting to nowhere.

When tracing is off the hot path pays one boolean check per request: no span,
no context, no attribute dict. When it is on, :meth:`Tracing.request` opens
the SERVER span (a child of the client's W3C ``traceparent`` when there is
one); the router opens a CLIENT span per attempt through :class:`RequestSpan`
and makes it the current context for the attempt, so that the HTTP client
injects its ``traceparent`` into the upstream request (:meth:`Tracing.inject`).

The provider is held by the app (never installed as the global one) and shut
down (flushing what is queued) when the app stops.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.canonical import JSON
from gateway.errors import GatewayError
from gateway.observability.metric_labels import GENAI_PROVIDER, error_type, operation_of

Scope = MutableMapping[str, Any]

if TYPE_CHECKING:
    from gateway.observability.logs import RequestRecord
    from gateway.routing.deployment import LiveDeployment

log = logging.getLogger(__name__)

TRACER_NAME = "llm-gateway"
DEFAULT_SERVICE_NAME = "llm-gateway"
EXPORTERS = ("otlp", "console")
PROPAGATED = (b"traceparent", b"tracestate")
USAGE_ATTRIBUTES = (("prompt_tokens", "gen_ai.usage.input_tokens"), ("completion_tokens", "gen_ai.usage.output_tokens"))
REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable the gateway cannot honour (named in the message)."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def exporters_from_env(env: Mapping[str, str]) -> list[str]:
    """The trace exporters the environment asks for; empty when tracing is off.
    Raises :class:`TracingConfigError` for values the gateway cannot honour."""
    if _flag(env, "OTEL_SDK_DISABLED"):
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = ["otlp"] if endpoint else []
    if "none" in names:
        return []
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r}; the gateway supports otlp, console and none"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if "otlp" in names and protocol.strip() not in ("", "http/protobuf"):
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol.strip()!r} is not supported: the gateway exports OTLP "
            "over HTTP (http/protobuf, usually port 4318)"
        )
    return list(dict.fromkeys(names))


def _resource() -> Resource:
    """Service name and resource attributes from the environment (the SDK reads
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``), the gateway's name
    when none was given."""
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported here: it pulls in `requests`, which a gateway without tracing never needs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    """The app's tracer, or nothing at all when tracing is off."""

    def __init__(self, processors: Sequence[SpanProcessor] = ()) -> None:
        self.enabled = bool(processors)
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self._propagator = TraceContextTextMapPropagator()
        self._servers: dict[str, tuple[str, int | None]] = {}
        if processors:
            provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
            for processor in processors:
                provider.add_span_processor(processor)
            self.provider = provider
            self.tracer = provider.get_tracer(TRACER_NAME, __version__)

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tracing:
        """As the ``OTEL_*`` variables say (see the module docstring)."""
        names = exporters_from_env(env)
        if not names:
            return cls()
        tracing = cls([BatchSpanProcessor(_exporter(name)) for name in names])
        log.info("tracing on: exporting spans with %s", ", ".join(names))
        return tracing

    def request(self, scope: Scope, operation: str) -> RequestSpan:
        """Open the SERVER span of one client request (tracing on only)."""
        assert self.tracer is not None
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in PROPAGATED}
        parent = self._propagator.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "http.request.method": scope.get("method", ""),
            "url.path": scope.get("path", ""),
        }
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        span = self.tracer.start_span(operation, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return RequestSpan(self, span)

    def inject(self, headers: dict[str, str]) -> None:
        """Add the current context's ``traceparent`` (and ``tracestate``) to ``headers``."""
        self._propagator.inject(headers)

    def server(self, base_url: str) -> tuple[str, int | None]:
        """(host, port) of an upstream base URL, parsed once per URL."""
        found = self._servers.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
            found = self._servers[base_url] = (parts.hostname or "", port)
        return found

    def shutdown(self) -> None:
        """Flush queued spans and stop exporting (blocking: run it in a thread)."""
        if self.provider is not None:
            self.provider.shutdown()


class RequestSpan:
    """The SERVER span of one request and the CLIENT spans of its attempts."""

    __slots__ = ("_attempts", "_tracing", "context", "exemplar", "span", "trace_id")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self._tracing = tracing
        self.span = span
        self.context = set_span_in_context(span)
        ctx = span.get_span_context()
        self.trace_id = f"{ctx.trace_id:032x}"
        self.exemplar: dict[str, str] | None = (
            {"trace_id": self.trace_id, "span_id": f"{ctx.span_id:016x}"} if ctx.trace_flags.sampled else None
        )
        """Labels linking a histogram observation to this trace (sampled traces only)."""
        self._attempts = 0

    # --- attempts (the router calls these) ----------------------------------------------

    def start_attempt(self, dep: LiveDeployment, retry: bool) -> tuple[Span | None, object]:
        """Open an attempt's CLIENT span and make it current (for header injection).
        In a trace that is not sampled no span is made: the request's own
        context goes upstream (trace id kept, sampled flag off)."""
        self._attempts += 1
        if not self.span.is_recording():
            return None, otel_context.attach(self.context)
        tracer = self._tracing.tracer
        assert tracer is not None
        target = dep.target
        host, port = self._tracing.server(target.base_url)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": dep.operation,
            "gen_ai.provider.name": GENAI_PROVIDER.get(target.provider, target.provider),
            "gen_ai.request.model": target.model,
            "server.address": host,
            "gateway.deployment": dep.id,
            "gateway.attempt": self._attempts,
            "gateway.retry": retry,
        }
        if port is not None:
            attributes["server.port"] = port
        span = tracer.start_span(
            f"{dep.operation} {target.model}", context=self.context, kind=SpanKind.CLIENT, attributes=attributes
        )
        return span, otel_context.attach(set_span_in_context(span, self.context))

    def end_attempt(self, handle: tuple[Span | None, object], error: BaseException | None, result: object) -> None:
        span, token = handle
        otel_context.detach(token)  # type: ignore[arg-type]
        if span is None:
            return
        if error is not None:
            kind = error_type(error) if isinstance(error, GatewayError) else type(error).__name__
            span.set_attribute("error.type", kind or "_OTHER")
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        elif isinstance(result, dict):
            _response_attributes(span, result)
        span.end()

    # --- the request ---------------------------------------------------------------------

    def finish(self, record: RequestRecord, req: JSON | None, ended: float | None = None) -> None:
        """Close the SERVER span with what the request came to; ``ended`` (epoch seconds): when
        the request ended, if the record is written later (gateway/server/records.py)."""
        span = self.span
        end_time = int(ended * 1e9) if ended is not None else None
        if not span.is_recording():
            span.end(end_time=end_time)
            return
        operation = operation_of(record.route)
        span.update_name(f"{operation} {record.alias}")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gateway.route": record.route,
            "gen_ai.request.model": record.alias,
            "http.response.status_code": record.status,
            "gateway.request_id": record.request_id,
            "gateway.attempts": record.attempts,
            "gateway.stream": record.stream,
        }
        optional = {
            "gen_ai.response.model": record.model,
            "gen_ai.provider.name": GENAI_PROVIDER.get(record.provider, record.provider) if record.provider else None,
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "gateway.deployment": record.deployment,
            "gateway.key_id": record.key_id,
            "gateway.team": record.team,
            "gateway.cache": record.cache,
            "gateway.cost_usd": record.cost_usd,
            "gateway.ttft_ms": record.ttft_ms,
        }
        attributes.update((k, v) for k, v in optional.items() if v is not None and v != "")
        if req is not None:
            attributes.update((attr, req[name]) for name, attr in REQUEST_PARAMS if _scalar(req.get(name)))
        if record.error_code:
            attributes["error.type"] = record.error_code
            if record.status >= 500:
                span.set_status(Status(StatusCode.ERROR, record.error_code))
        span.set_attributes(attributes)
        span.end(end_time=end_time)


def _scalar(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _response_attributes(span: Span, result: JSON) -> None:
    model, rid, usage = result.get("model"), result.get("id"), result.get("usage")
    if isinstance(model, str):
        span.set_attribute("gen_ai.response.model", model)
    if isinstance(rid, str):
        span.set_attribute("gen_ai.response.id", rid)
    reasons = [c.get("finish_reason") for c in result.get("choices") or () if isinstance(c, dict)]
    if reasons and all(isinstance(r, str) for r in reasons):
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    if isinstance(usage, dict):
        for field, attr in USAGE_ATTRIBUTES:
            count = usage.get(field)
            if isinstance(count, int):
                span.set_attribute(attr, count)
