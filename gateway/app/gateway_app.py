"""The ASGI application: ``create_app(loaded_config) -> GatewayApp``.

Everything the app uses is built here or in its lifespan (the HTTP client
needs a running loop) and hangs off the instance: no module state, so tests
build as many independent apps as they like.

Reload: SIGHUP (or :meth:`GatewayApp.reload`) re-reads the config file in a
thread, validates it fully, and swaps in a new :class:`Service`. A bad file is
rejected with its problems logged, and the old config stays in force. Requests
in flight keep the service they started with, so none is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.access import Actor
from gateway.admin.audit import request_id
from gateway.admin.deployments import deployment_rows
from gateway.admin.gate import AdminGate, admin_cors, build_gate
from gateway.admin.health import HealthAPI
from gateway.admin.keys import KeysAPI, error_response, guarded, json_response
from gateway.admin.model_store import ModelStore, Stored, effective_config, open_secrets
from gateway.admin.models import ModelsAPI
from gateway.admin.openapi import OpenAPIDoc
from gateway.admin.reports import ReportsAPI
from gateway.admin.usage import UsageAPI
from gateway.admin.users import security_routes
from gateway.config.settings import ConfigError, LoadedConfig, Settings, load_config
from gateway.console import console_routes
from gateway.errors import AuthenticationFailed, GatewayError, MethodNotAllowed, NotFound, Starting
from gateway.health.monitor import HealthMonitor
from gateway.observability.logs import AccessLog, RequestSink, client_address, flush_handlers, install_handlers
from gateway.observability.logs import audit as audit_line
from gateway.observability.loop_lag import LoopLagMonitor
from gateway.observability.metrics import LiveCounts, Metrics
from gateway.observability.tracing import Tracing
from gateway.observability.worker_metrics import WorkerMetricsListener
from gateway.policies.auth import Authenticator, Principal
from gateway.policies.keys import KeyStore
from gateway.policies.pricing import PriceTable, UnpricedModels, load_prices
from gateway.providers.registry import presets
from gateway.reports.builder import ReportSources
from gateway.reports.store import StatsStore
from gateway.security.roles import Role
from gateway.security.secrets import SecretStore
from gateway.server.asgi import Receive, Scope, Send, bearer_token, send_error
from gateway.server.handlers import Handlers
from gateway.server.service import Service
from gateway.server.traffic import TrafficControl
from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.factory import create_backend
from gateway.state.ledger import SpendLedger
from gateway.upstream.http import AiohttpClient, HTTPClient

log = logging.getLogger("gateway")

API_ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}


def load_price_table(loaded: LoadedConfig) -> PriceTable:
    path = loaded.settings.pricing.file
    return load_prices(path) if path else PriceTable.empty()


class GatewayApp:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        config_path: str | Path | None = None,
        tracing: Tracing | None = None,
        worker_metrics: tuple[str, range] | None = None,
    ) -> None:
        """``worker_metrics`` (host, ports): this is one of several worker
        processes; it serves its /metrics on the first free one of ``ports``."""
        self._worker_ports = worker_metrics
        self._worker_metrics: WorkerMetricsListener | None = None
        self.metrics = Metrics()
        self._loop_lag = LoopLagMonitor(self.metrics.loop_lag.observe)
        self._loaded = loaded
        """The configuration in force: the file overlaid by the stored models."""
        self._file = loaded
        """The config file alone."""
        self._prices = PriceTable.empty()
        self._models: ModelStore | None = None
        self.config_path = Path(config_path) if config_path else None
        self._presets = presets()
        self.service: Service | None = None
        self.http: HTTPClient | None = None
        self.backend: StateBackend | None = None
        self.ledger: SpendLedger | None = None
        self.stats: StatsStore | None = None
        """Request statistics for the reports (gateway/reports/)."""
        self._keys: KeyStore | None = None
        self._auth: Authenticator | None = None
        self._gate: AdminGate | None = None
        """Admin security: users, sessions, allow-list, audit log, secrets (gateway/admin/gate.py)."""
        self.unpriced = UnpricedModels()
        self._given_tracing = tracing
        self.tracing = tracing or Tracing.off()
        """Built from the OTEL_* environment at startup unless one was given."""
        self.access_log: AccessLog | None = None
        self.request_sinks: list[RequestSink] = []
        """In-process subscribers: each gets every finished request's RequestRecord."""
        self.reloads = 0
        self.health = HealthMonitor(lambda: self.service, self.metrics)
        """Scheduled health checks (gateway/health/); started with the app."""
        self._handlers = Handlers(self)
        self._exact = {
            ("POST", "/v1/chat/completions"): self._handlers.chat,
            ("POST", "/v1/embeddings"): self._handlers.embeddings,
            ("GET", "/v1/models"): self._handlers.list_models,
        }
        self._other = Starlette(
            routes=[
                Route("/health", self._health),
                Route("/ready", self._ready),
                Route("/admin/deployments", guarded(self, self._deployments, Role.viewer)),
                Route("/metrics", self._metrics),
                *KeysAPI(self).routes(),
                *security_routes(self, lambda: self.gate),
                *ReportsAPI(self).routes(),
                *HealthAPI(self).routes(),  # before ModelsAPI: /admin/models/{alias}/test
                *ModelsAPI(self).routes(),
                *UsageAPI(self).routes(),
                *OpenAPIDoc(self).routes(),
                *console_routes(),
            ],
        )
        self._admin_cors = admin_cors(self._other, loaded.settings.admin.cors_origins)
        """/admin behind CORS when ``admin.cors_origins`` lists origins (read at start)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            handler = self._exact.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            path: str = scope["path"]
            if path.startswith("/v1/"):
                await self._api_miss(scope, receive, send, path)
                return
            if self._admin_cors is not None and path.startswith("/admin"):
                await self._admin_cors(scope, receive, send)
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._other(scope, receive, send)

    async def _api_miss(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if path.startswith("/v1/models/") and scope["method"] == "GET":
            await self._handlers.get_model(scope, receive, send, path[len("/v1/models/") :])
            return
        allowed = API_ROUTES.get(path)
        if allowed is not None:
            err: GatewayError = MethodNotAllowed(f"{scope['method']} is not allowed on {path}; use {allowed}")
            await send_error(send, err, [(b"allow", allowed.encode())])
            return
        await send_error(send, NotFound(f"unknown API route {scope['method']} {path}", code="unknown_route"))

    # --- what the handlers and admin routes use --------------------------------

    async def authenticate(self, scope: Scope) -> Principal:
        if self._auth is None:
            raise Starting()
        try:
            return await self._auth.authenticate(bearer_token(scope))
        except AuthenticationFailed as err:
            client = client_address(scope)
            audit_line("auth.failed", logging.WARNING, reason=err.code, client=client, path=scope["path"])
            raise

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor:
        """The actor behind an admin request, if its role is at least ``role``."""
        if self._auth is None:
            raise Starting()
        return await self.gate.require(scope, role)

    def _is_master(self, scope: Scope) -> bool:
        return self._auth is not None and self._auth.is_master(bearer_token(scope))

    @property
    def gate(self) -> AdminGate:
        if self._gate is None:
            raise Starting()
        return self._gate

    @property
    def secrets(self) -> SecretStore:
        """Encrypted secrets: ``put_secret(name, plaintext) -> ref``, ``get_secret(ref)``."""
        return self.gate.secrets

    async def audit(self, request: Request, action: str, target: str, *, before: Any = None, after: Any = None) -> None:
        """Append an audit record for an admin action (``request.state.actor`` is
        the actor; secret-named fields of ``before``/``after`` are masked):
        ``await host.audit(request, "models.create", f"models/{alias}", after=record)``."""
        actor, rid, client = request.state.actor, request_id(request), client_address(request.scope)
        audit_line(action, actor=actor.name, role=actor.role.name, client=client, target=target, request_id=rid)
        await self.gate.audit_log.write(
            request.state.actor, action, target, before=before, after=after, request_id=request_id(request)
        )

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            raise Starting()
        return self._keys

    def aliases(self) -> set[str]:
        return set(self.service.routes) if self.service is not None else set()

    def report_context(self) -> tuple[Settings, ReportSources]:
        """What the reports read: this process's statistics merged with the
        other replicas', spend (with this process's unwritten part), teams."""
        if self.stats is None:
            raise Starting()
        sources = ReportSources(self.stats, self._read_spend, self.keys.list_teams, self.aliases)
        return self._loaded.settings, sources

    async def _read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        assert self.backend is not None and self.ledger is not None
        totals = await self.backend.read_spend(keys)
        pending = self.ledger.pending()
        return {k: totals.get(k, 0.0) + pending.get(k, 0.0) for k in keys}

    # --- lifecycle ----------------------------------------------------------

    def _build(self, loaded: LoadedConfig, prices: PriceTable, previous: Service | None) -> Service:
        assert self.http is not None and self.backend is not None and self.ledger is not None
        traffic = TrafficControl(
            loaded.settings,
            self.backend,
            self.ledger,
            prices,
            self.unpriced,
            self.metrics,
            previous=previous.traffic if previous is not None else None,
        )
        return Service(loaded, self.http, self._presets, previous=previous, traffic=traffic)

    def _apply_logging(self, loaded: LoadedConfig) -> None:
        settings = loaded.settings.logging
        install_handlers(settings)
        self.access_log = AccessLog(settings) if settings.access_log else None

    async def startup(self) -> None:
        settings = self._loaded.settings
        if self._worker_ports is not None:
            self._worker_metrics = WorkerMetricsListener(self.render_metrics, *self._worker_ports)
            await self._worker_metrics.start()
        self._loop_lag.start()
        prices = load_price_table(self._loaded)
        self._apply_logging(self._loaded)
        if self._given_tracing is None:
            self.tracing = Tracing.from_env(os.environ)
        self.http = AiohttpClient(
            max_connections_per_host=settings.server.max_connections_per_upstream,
            inject=self.tracing.inject if self.tracing.enabled else None,
        )
        self.backend = create_backend(settings.state, cache_max_bytes=settings.cache.max_bytes)
        self.ledger = SpendLedger(
            self.backend,
            flush_interval_s=settings.state.flush_interval_s,
            refresh_interval_s=settings.state.refresh_interval_s,
        )
        await self.ledger.start()
        self.stats = StatsStore(
            self.backend,
            tz=ZoneInfo(settings.budgets.timezone),
            flush_interval_s=settings.reports.flush_interval_s,
            retention_days=settings.reports.retention_days,
        )
        await self.stats.start()
        self.request_sinks.append(self.stats.record)
        self._keys = KeyStore(self.backend, refresh_interval_s=settings.state.refresh_interval_s)
        self._prices = prices
        self._gate = build_gate(
            self._loaded.settings,
            self.backend,
            is_master=self._is_master,
            check_client_key=self.authenticate,
            env=os.environ,
        )
        self._models = ModelStore(self.backend, refresh_interval_s=settings.state.refresh_interval_s)
        self._loaded = await self._startup_models(self._models)
        self._auth = Authenticator(self._loaded.settings.auth, self._keys, settings.state.failure_mode.keys)
        self.service = self._build(self._loaded, prices, None)
        self._models.start(self._apply_models)
        self.health.start()
        self.metrics.live = self._live_counts
        if self._loaded.disabled_aliases:
            log.info(
                "model aliases left out (their required environment is not set): %s",
                ", ".join(self._loaded.disabled_aliases),
            )
        log.info("state backend: %s; prices: %s (%d models)", self.backend.kind, prices.version, len(prices))
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def shutdown(self) -> None:
        await self._loop_lag.stop()
        if self._worker_metrics is not None:
            await self._worker_metrics.aclose()
        await self.health.stop()
        if self._models is not None:
            await self._models.aclose()
        if self.stats is not None:
            await self.stats.close()  # logs what it could not write
        if self.ledger is not None:
            await self.ledger.close()  # logs what it could not write
        if self.backend is not None:
            await self.backend.aclose()
        if self.http is not None:
            await self.http.aclose()
        await asyncio.to_thread(self.tracing.shutdown)  # flushes the spans still queued
        flush_handlers()  # the access lines still buffered

    def _live_counts(self) -> LiveCounts:
        service, ledger = self.service, self.ledger
        if service is None or ledger is None:
            return LiveCounts.empty()
        return service.traffic.live_counts(ledger.flush_failures)

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load and apply the config file again; False (old config kept) if it is bad."""
        return not await self.reload_config()

    async def reload_config(self) -> list[str]:
        """Load the config file again and apply it with the stored models over it;
        its problems (the old config kept) or none (applied). The state backend,
        keys and spend carry over; its own settings need a restart."""
        if self.config_path is None or self.http is None:
            return ["the gateway was not started from a config file" if self.http else "the gateway is starting"]
        try:
            file = await asyncio.to_thread(load_config, self.config_path)
            prices = await asyncio.to_thread(load_price_table, file)
            loaded = await self.check_models(self._stored, file)
            service = self._build(loaded, prices, self.service)
        except (ConfigError, BackendUnavailable) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [f"the stored models cannot be read: {exc}"]
            log.error("config reload rejected; the previous config stays in force. %s", "; ".join(problems))
            self.metrics.config_reloads.labels("rejected").inc()
            return problems
        if loaded.settings.state != self._loaded.settings.state:
            log.warning("state settings changed in the config file: they apply at the next restart")
        self._file, self._prices = file, prices
        self._swap(loaded, service)
        if self._gate is not None:
            self._gate.configure(loaded.settings.admin)
        self._apply_logging(loaded)
        self.reloads += 1
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded from %s (%d model aliases)", self.config_path, len(loaded.settings.models))
        return []

    def _swap(self, loaded: LoadedConfig, service: Service) -> None:
        self.service = service
        self._auth = Authenticator(loaded.settings.auth, self._keys, loaded.settings.state.failure_mode.keys)
        self._loaded = loaded

    # --- runtime models (gateway/admin/model_store.py, gateway/admin/models.py) ----

    @property
    def file_config(self) -> LoadedConfig:
        return self._file

    @property
    def model_store(self) -> ModelStore:
        if self._models is None:
            raise Starting()
        return self._models

    @property
    def _stored(self) -> Stored:
        return self._models.applied if self._models is not None else {}

    async def check_models(self, stored: Stored, file: LoadedConfig | None = None) -> LoadedConfig:
        """The config ``file`` (the current one by default) with ``stored`` over it,
        their ``secret:`` references opened; ConfigError naming each problem."""
        opened = await open_secrets(stored, self.secrets.get_secret)
        return effective_config(file or self._file, opened, os.environ)

    async def refresh_models(self) -> None:
        await self.model_store.poll(self._apply_models)

    async def _apply_models(self, version: str | None, stored: Stored) -> None:
        """Put the stored models in force; a set that does not validate is logged, not applied."""
        try:
            loaded = await self.check_models(stored)
            service = self._build(loaded, self._prices, self.service)
        except ConfigError as exc:
            log.error("stored models (version %s) not applied; the previous models stay in force. %s", version, exc)
            self.metrics.config_reloads.labels("rejected").inc()
            return
        self.model_store.applied = stored
        self._swap(loaded, service)
        self.metrics.config_reloads.labels("applied").inc()
        log.info("stored models applied (version %s, %d model aliases)", version, len(loaded.settings.models))

    async def _startup_models(self, store: ModelStore) -> LoadedConfig:
        """The file with the stored models over it; the file alone (logged) when
        they cannot be read or do not validate, so a bad record never stops a start."""
        try:
            version, stored = await store.load()
            loaded = await self.check_models(stored)
        except (BackendUnavailable, ConfigError) as exc:
            log.error("stored models not applied at startup (retried when they change): %s", exc)
            return self._file
        store.seen, store.applied = version, stored
        if stored:
            log.info("stored models applied at startup: %s", ", ".join(sorted(stored)))
        return loaded

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _deployments(self, request: Request) -> Response:
        """Live routing state of every deployment (viewer)."""
        return json_response({"deployments": deployment_rows(self.service)})

    def render_metrics(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (breaker states, budget levels and upstream connections brought up to date first)."""
        if self.http is not None:
            self.metrics.set_upstream_connections(*self.http.connection_counts())
        service = self.service
        if service is not None:
            for route in service.routes.values():
                for dep in route.deployments:
                    self.metrics.set_breaker(dep.id, dep.breaker.state.value)
            service.traffic.budgets.publish_levels()
        return self.metrics.render(accept)

    async def _metrics(self, request: Request) -> Response:
        if self._worker_ports is not None:  # several workers share this port: see worker_metrics.py
            host, ports = self._worker_ports
            return error_response(
                NotFound(
                    f"this gateway runs several worker processes; each serves its own /metrics on "
                    f"http://{host}:{ports.start}-{ports.stop - 1}/metrics: scrape every one",
                    code="metrics_per_worker",
                )
            )
        body, content_type = self.render_metrics(request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        service = self.service
        if service is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return Response(
            orjson.dumps({"status": "ready", "models": len(service.routes), "reloads": self.reloads}),
            media_type="application/json",
        )


def create_app(
    loaded: LoadedConfig,
    *,
    config_path: str | Path | None = None,
    tracing: Tracing | None = None,
    worker_metrics: tuple[str, range] | None = None,
) -> GatewayApp:
    return GatewayApp(loaded, config_path=config_path, tracing=tracing, worker_metrics=worker_metrics)
