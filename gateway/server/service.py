"""One configuration's worth of gateway: routes, router, and the attempt
functions that join a provider's translation to the HTTP client.

A :class:`Service` is immutable once built; a config reload builds a new one
and swaps it in, so requests in flight finish on the one they started with.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.canonical import JSON, upstream_view
from gateway.config.loader import LoadedConfig
from gateway.config.settings import Params
from gateway.dialects.base import Native
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import (
    InvalidRequest,
    NotFound,
    UpstreamAddressRefused,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRedirect,
    UpstreamResponseTooLarge,
)
from gateway.observability.router_observer import RouterObserver
from gateway.providers import options
from gateway.providers.base import NativeProvider, SSEEvent, StreamDecoder, WireRequest, json_object
from gateway.providers.registry import Preset
from gateway.providers.sse import SSEParser
from gateway.routing.deployment import LiveDeployment, Route, build_routes
from gateway.routing.names import ModelNames
from gateway.routing.pacing import Pacer
from gateway.routing.router import CapacityWait, Gate, Lease, RequestTrace, Router
from gateway.routing.rules import RuleBook, apply_windows, restore_configured
from gateway.server.traffic import TrafficControl
from gateway.upstream.http import HTTPClient, UpstreamResponse
from gateway.upstream.redact import redact_bytes, redact_error, secrets_of

MAX_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")


def apply_params(req: JSON, params: Params, *, chat: bool = True) -> JSON:
    """The request as one deployment gets it: its defaults filled in, its
    ranges clamped, and (chat only) its max-tokens cap applied. ``req`` is not modified."""
    if not (params.defaults or params.ranges or (chat and params.max_tokens_cap)):
        return req
    out = {**params.defaults, **req}
    for name, (low, high) in params.ranges.items():
        value = out.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = min(max(value, low), high)
    cap = params.max_tokens_cap
    if cap is not None and chat:
        for name in MAX_TOKEN_PARAMS:
            value = out.get(name)
            if isinstance(value, int) and value > cap:
                out[name] = cap
        if not any(name in out for name in MAX_TOKEN_PARAMS):
            out["max_tokens"] = cap
    return out


async def _error_from(dep: LiveDeployment, resp: UpstreamResponse, deadline: float, pacer: Pacer) -> UpstreamError:
    """The error of a non-2xx answer. A 3xx is never followed (the request, its
    credentials included, would go to another origin). The body is read within the
    caps and the deployment's credentials are masked before the provider reads it.
    ``pacer`` hears it: a 429 or a Retry-After pauses ``dep`` (gateway/routing/pacing.py)."""
    if 300 <= resp.status < 400:
        return UpstreamRedirect(
            f"upstream answered HTTP {resp.status} (a redirect); redirects are never followed: "
            "point the deployment's base_url at the final address"
        )
    try:
        body = await resp.read(max(0.001, deadline - time.monotonic()))
    except UpstreamResponseTooLarge:
        raise
    except UpstreamError:
        body = b""
    err = dep.provider.error(resp.status, resp.headers, redact_bytes(body, secrets_of(dep.target)))
    pacer.on_error(dep, resp.status, resp.headers, err.retry_after)
    return err


REFUSALS = (UpstreamRedirect, UpstreamResponseTooLarge, UpstreamAddressRefused)


def upstream_failed(dep: LiveDeployment, err: UpstreamError, count: Callable[[str], None]) -> None:
    """An upstream error on its way out of an attempt: the deployment's credentials
    masked in everything it says, and a refused answer counted by ``count(reason)``."""
    redact_error(err, secrets_of(dep.target))
    if isinstance(err, REFUSALS):
        count(err.reason)


@dataclass(slots=True)
class OpenStream:
    """A stream whose first chunk is in hand: from here on it cannot fall back."""

    first: list[JSON]
    pieces: AsyncIterator[bytes]
    parser: SSEParser
    decoder: StreamDecoder
    response: UpstreamResponse
    lease: Lease
    failed: Callable[[UpstreamError], None]
    """Called with an upstream error before it leaves the stream (masks credentials)."""
    ended: bool = False
    """The whole upstream stream was consumed while waiting for the first chunk."""
    raw: list[SSEEvent] | None = None
    """Same-format pass-through: the upstream's events as they came, drained by the writer
    after each batch (a batch may then be empty: events that carry no chunk still count)."""

    def feed(self, events: list[SSEEvent], into: list[JSON]) -> None:
        if self.raw is not None:
            self.raw.extend(events)
        for event in events:
            into.extend(self.decoder.on_event(event))

    async def rest(self) -> AsyncIterator[list[JSON]]:
        """The remaining chunks, a batch per upstream read; settles the lease.
        Raises UpstreamError if the upstream fails or cuts the stream short."""
        ok: bool | None = None
        try:
            if self.ended:
                ok = True
                return
            async for piece in self.pieces:
                batch: list[JSON] = []
                self.feed(self.parser.feed(piece), batch)
                if batch or self.raw:
                    yield batch
            tail: list[JSON] = []
            self.feed(self.parser.close(), tail)
            tail.extend(self.decoder.finish())
            ok = True
            if tail or self.raw:
                yield tail
        except UpstreamError as err:
            ok = False
            self.failed(err)
            raise
        finally:
            self.response.close()
            self.lease.settle(ok)


class Service:
    def __init__(
        self,
        loaded: LoadedConfig,
        http: HTTPClient,
        presets: dict[str, Preset],
        previous: Service | None = None,
        rng: random.Random | None = None,
        *,
        traffic: TrafficControl,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.config = loaded
        self.traffic = traffic
        self.settings = loaded.settings
        self.http = http
        self.rules = RuleBook.from_settings(self.settings, rng)
        """The routing rules (gateway/routing/rules.py); the time windows in force are applied here."""
        if previous is not None:
            restore_configured(previous.routes)  # unchanged deployments are kept, not rebuilt
        self.routes: dict[str, Route] = build_routes(self.settings, presets, previous.routes if previous else None)
        apply_windows(self.routes, self.rules, datetime.now(UTC))
        pacing, observer = self.settings.router.pacing, RouterObserver(traffic.metrics)
        total = self.settings.router.timeouts.total_s  # on_release: an attempt gave its deployment slot back
        self.on_release = on_release
        self.router = Router(
            self.routes, total_timeout_s=total, rng=rng, observer=observer, pacing=pacing, on_release=on_release
        )
        self.created = int(time.time())
        self.names = ModelNames([*self.routes, *loaded.missing_env], self.settings.model_aliases)
        """Model names as clients send them -> aliases (``model_aliases``)."""

    def route_for(self, alias: str, kind: str) -> Route:
        route = self.routes.get(alias)
        if route is None:
            raise _unknown_model(alias, self.config.missing_env.get(alias))
        if route.spec.kind != kind:
            raise InvalidRequest(
                f"model '{alias}' is a {route.spec.kind} model and cannot serve {kind} requests",
                code="wrong_model_kind",
                param="model",
            )
        return route

    async def chat(
        self, req: JSON, trace: RequestTrace, gate: Gate | None = None, wait: CapacityWait | None = None
    ) -> JSON:
        route = self.route_for(req["model"], "chat")
        options.checked(req)  # a malformed provider_options is the client's 400 before any attempt

        async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> JSON:
            return await self.chat_attempt(dep, req, deadline)

        return await self.router.run(
            route.alias, attempt, trace, prompt_tokens=self.tokens(route, req), gate=gate, wait_for_capacity=wait
        )

    async def chat_attempt(self, dep: LiveDeployment, req: JSON, deadline: float) -> JSON:
        """One non-streaming chat exchange with ``dep``: translate, send, translate
        back. Client requests (through the router) and health probes share it."""
        with self.upstream_errors(dep):
            wire = dep.provider.chat_request(
                apply_params(upstream_view(req), dep.spec.params), dep.target, stream=False
            )
            wire = options.apply_to_wire(wire, provider_fields(dep, req))
            body = await self.exchange(dep, wire, deadline)
            return dep.provider.chat_response(json_object(body, "the upstream's chat completion"), dep.target)

    @contextmanager
    def upstream_errors(self, dep: LiveDeployment) -> Iterator[None]:
        """Every upstream error leaves an attempt through :func:`upstream_failed`."""
        try:
            yield
        except UpstreamError as err:
            upstream_failed(dep, err, self.traffic.metrics.upstream_refused)
            raise

    async def open_stream(
        self,
        req: JSON,
        trace: RequestTrace,
        gate: Gate | None = None,
        native: Native | None = None,
        wait: CapacityWait | None = None,
    ) -> OpenStream:
        """A chat stream; with ``native``, the client's own body to a deployment of its
        format, whose events the stream then also keeps (:attr:`OpenStream.raw`)."""
        route = self.route_for(req["model"], "chat")
        options.checked(req)

        async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> OpenStream:
            with self.upstream_errors(dep):
                return await _open(self, dep, req, lease, deadline, native)

        return await self.router.run(
            route.alias, attempt, trace, prompt_tokens=self.tokens(route, req), gate=gate, wait_for_capacity=wait
        )

    async def embed(
        self, req: JSON, trace: RequestTrace, gate: Gate | None = None, wait: CapacityWait | None = None
    ) -> JSON:
        route = self.route_for(req["model"], "embedding")

        async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> JSON:
            with self.upstream_errors(dep):
                wire = dep.provider.embed_request(apply_params(req, dep.spec.params, chat=False), dep.target)
                body = await self.exchange(dep, wire, deadline)
                return dep.provider.embed_response(json_object(body, "the upstream's embeddings"), dep.target, req)

        return await self.router.run(route.alias, attempt, trace, gate=gate, wait_for_capacity=wait)

    async def exchange(self, dep: LiveDeployment, wire: WireRequest, deadline: float) -> bytes:
        """Send a non-streaming request; the 2xx JSON body, or the mapped error."""
        t = dep.timeouts
        resp = await self.http.send(
            wire, connect_s=t.connect_s, first_byte_s=_left(deadline, t.first_byte_s), limits=self.settings.upstream
        )
        try:
            if resp.status >= 300:
                raise await _error_from(dep, resp, deadline, self.router.pacer)
            self.router.pacer.on_answer(dep, resp.headers)  # a spent rate-limit budget pauses dep
            body = await resp.read(max(0.001, deadline - time.monotonic()))
        finally:
            resp.close()
        if "json" not in resp.content_type:
            raise UpstreamBadResponse(f"upstream answered {resp.content_type or 'no content type'} instead of JSON")
        return body

    @staticmethod
    def tokens(route: Route, req: JSON) -> int | None:
        return estimate_prompt_tokens(req) if route.spec.context_window else None


async def _open(
    service: Service, dep: LiveDeployment, req: JSON, lease: Lease, deadline: float, native: Native | None
) -> OpenStream:
    """One stream attempt on ``dep``, open once its first chunk is in hand (see :meth:`Service.open_stream`)."""
    provider = native_provider(dep, native) if native is not None else None
    if native is not None and provider is None and native.untranslatable is not None:
        raise native.untranslatable
    if provider is not None and native is not None:
        body = native_body(dep, native.prepare(dep.target.model, dep.spec.params, dep.target.drop_params))
        wire = provider.native_request(body, dep.target, stream=True, headers=native.headers)
    else:
        wire = dep.provider.chat_request(apply_params(upstream_view(req), dep.spec.params), dep.target, stream=True)
        wire = options.apply_to_wire(wire, provider_fields(dep, req))
    t, caps = dep.timeouts, service.settings.upstream
    resp = await service.http.send(
        wire, connect_s=t.connect_s, first_byte_s=_left(deadline, t.first_byte_s), limits=caps
    )
    try:
        if resp.status >= 300:
            raise await _error_from(dep, resp, deadline, service.router.pacer)
        service.router.pacer.on_answer(dep, resp.headers)  # a spent rate-limit budget pauses dep
        if "event-stream" not in resp.content_type:
            raise UpstreamBadResponse(
                f"upstream answered {resp.content_type or 'no content type'} instead of an event stream"
            )
        stream = OpenStream(
            [],
            resp.chunks(t.idle_s, deadline),
            SSEParser(max_line_bytes=caps.max_sse_line_bytes, max_event_bytes=caps.max_sse_event_bytes),
            dep.provider.stream_decoder(dep.target),
            resp,
            lease,
            lambda err: upstream_failed(dep, err, service.traffic.metrics.upstream_refused),
            raw=[] if provider is not None else None,
        )
        await _first_chunks(stream)
    except BaseException:
        resp.close()
        raise
    dep.observe_latency(time.monotonic() - lease.started)  # time to first chunk
    lease.keep()
    return stream


def _unknown_model(alias: str, missing: list[str] | None) -> NotFound:
    if missing:
        return NotFound(
            f"The model '{alias}' is switched off: it needs the environment variable "
            f"{', '.join(missing)}, which is not set on the gateway. Set it and restart the gateway "
            "(or reload its config).",
            code="model_not_configured",
            param="model",
        )
    return NotFound(
        f"The model '{alias}' does not exist or you do not have access to it.", code="model_not_found", param="model"
    )


def provider_fields(dep: LiveDeployment, req: JSON) -> JSON:
    """The client's ``provider_options`` fields for ``dep`` (an InvalidRequest for one off its list)."""
    return options.for_deployment(options.checked(req), dep.spec.provider, dep.spec.provider_options)


def native_body(dep: LiveDeployment, body: JSON) -> JSON:
    """A same-format body for ``dep``: its ``provider_options`` taken out, the fields for
    ``dep``'s provider written in (gateway/providers/options.py)."""
    if options.FIELD not in body:
        return body
    fields = options.for_deployment(options.checked(body), dep.spec.provider, dep.spec.provider_options)
    return options.merged({k: v for k, v in body.items() if k != options.FIELD}, fields)


def native_provider(dep: LiveDeployment, native: Native) -> NativeProvider | None:
    """``dep``'s provider when it speaks ``native``'s format (same-format pass-through)."""
    provider = dep.provider
    return provider if getattr(provider, "wire", None) == native.format else None  # type: ignore[return-value]


def _left(deadline: float, cap: float) -> float:
    return max(0.001, min(cap, deadline - time.monotonic()))


async def _first_chunks(stream: OpenStream) -> None:
    """Read until the decoder yields a chunk (or the stream ends): until then a
    failure can still fall back, because the client has received nothing."""
    while not stream.first:
        try:
            piece = await anext(stream.pieces)
        except StopAsyncIteration:
            stream.feed(stream.parser.close(), stream.first)
            stream.first.extend(stream.decoder.finish())
            stream.ended = True
            if not stream.first:
                raise UpstreamBadResponse("upstream stream ended without any content") from None
            return
        stream.feed(stream.parser.feed(piece), stream.first)
