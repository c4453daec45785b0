"""The ASGI application: ``create_app(loaded_config) -> GatewayApp``.

Everything the app uses is built here or in its lifespan (app/lifecycle.py: the HTTP client
needs a running loop) and hangs off the instance: no module state, so tests build as many
independent apps as they like.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from gateway.admin.gate import AdminGate, admin_cors
from gateway.admin.health import HealthAPI
from gateway.admin.keys import KeysAPI, guarded
from gateway.admin.live import LiveAPI, LiveWindow
from gateway.admin.model_store import ModelStore, Stored, StoredRules
from gateway.admin.models import ModelsAPI
from gateway.admin.openapi import OpenAPIDoc
from gateway.admin.reports import ReportsAPI
from gateway.admin.routing_rules import RoutingRulesAPI
from gateway.admin.usage import UsageAPI
from gateway.admin.users import security_routes
from gateway.app.client_api import API_PREFIXES, ClientAPI
from gateway.app.endpoints import OpsEndpoints
from gateway.app.host import AdminHostAPI
from gateway.app.lifecycle import Lifecycle
from gateway.app.runtime_models import RuntimeModels
from gateway.config.loader import LoadedConfig
from gateway.console import console_routes
from gateway.errors import Starting
from gateway.health.monitor import HealthMonitor
from gateway.observability.logs import AccessLog, RequestSink
from gateway.observability.loop_lag import LoopLagMonitor
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import Tracing
from gateway.observability.worker_metrics import WorkerMetricsListener
from gateway.policies.auth import Authenticator
from gateway.policies.keys import KeyStore
from gateway.policies.pricing import PriceTable, UnpricedModels
from gateway.providers.registry import presets
from gateway.reports.store import StatsStore
from gateway.security.roles import Role
from gateway.server.asgi import REFUSED_KEY, BoundedRequests, Receive, RequestLimits, Scope, Send
from gateway.server.records import RecordBatch
from gateway.server.rule_windows import RuleWindows
from gateway.server.service import Service
from gateway.server.shadow import ShadowLauncher
from gateway.state.base import StateBackend
from gateway.state.ledger import SpendLedger
from gateway.state.response_store import ResponseStore
from gateway.upstream.http import HTTPClient

log = logging.getLogger("gateway")


class GatewayApp(AdminHostAPI, Lifecycle):
    """The gateway as one ASGI app: client API routes dispatched by (method, path), the rest
    (operational, admin, console) through Starlette; start-up, shutdown and reload in
    :class:`Lifecycle`."""

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
        self.models = RuntimeModels(loaded, self.metrics, lambda: self.secrets)
        self._prices = PriceTable.empty()
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
        self.records = RecordBatch(loaded.settings.server.record_batch_ms / 1000)
        """Finished requests recorded together (gateway/server/records.py): drained before
        anything that reads what they feed is served."""
        self.reloads = 0
        self.health = HealthMonitor(lambda: self.service, self.metrics)
        """Scheduled health checks (gateway/health/); started with the app."""
        self.rule_windows = RuleWindows(lambda: self.service)
        """The routing rules' time windows, kept in force (gateway/server/rule_windows.py)."""
        self.shadows = ShadowLauncher(self.metrics.shaping)
        """Shadow traffic of the routing rules, in flight in the background (gateway/server/shadow.py)."""
        self.ops = OpsEndpoints(self)
        self._api = ClientAPI(self, self.response_store)
        self.feedback_owners = self._api.feedback.owners
        """Who made each finished request, for POST /v1/feedback (gateway/server/feedback_owners.py)."""
        self.request_sinks.append(self.feedback_owners.record)
        self.live = LiveWindow()
        """The last minutes of this replica's traffic, for GET /admin/live (the console's live view)."""
        self.request_sinks.append(self.live.record)
        self._other = Starlette(
            routes=[
                Route("/health", self.ops.health),
                Route("/ready", self.ops.ready),
                Route("/admin/deployments", guarded(self, self.ops.deployments, Role.viewer)),
                Route("/admin/status", guarded(self, self.ops.status, Role.viewer)),
                Route("/admin/jobs/{name}/run", guarded(self, self.ops.run_job), methods=["POST"]),
                Route("/metrics", self.ops.metrics),
                *KeysAPI(self).routes(),
                *security_routes(self, lambda: self.gate, on_user_created=self.on_user_created),
                *ReportsAPI(self).routes(),
                *HealthAPI(self).routes(),  # before ModelsAPI: /admin/models/{alias}/test
                *ModelsAPI(self).routes(),
                *RoutingRulesAPI(self).routes(),
                *UsageAPI(self).routes(),
                *LiveAPI(self).routes(),
                *OpenAPIDoc(self).routes(),
                *console_routes(),
            ],
        )
        self._bounded = BoundedRequests(self._other, self._request_limits)
        """Every route outside /v1, its body bounded before it is read (server/asgi.py)."""
        self._admin_cors = admin_cors(self._bounded, loaded.settings.admin.cors_origins)
        """/admin behind CORS when ``admin.cors_origins`` lists origins (read at start)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            handler = self._api.exact.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            path: str = scope["path"]
            if path.startswith(API_PREFIXES):
                await self._api.other(scope, receive, send, path)
                return
            self.records.drain()  # /metrics, the admin API and console, health: they read what records feed
            if self._admin_cors is not None and path.startswith("/admin"):
                await self._admin_cors(scope, receive, send)
                return
        elif kind == "lifespan":
            scope.get("state", {})[REFUSED_KEY] = self.metrics.refused  # for the server's head limits
            await self.lifespan(receive, send)
            return
        await self._bounded(scope, receive, send)

    async def shutdown(self) -> None:
        self.records.close()  # every ended request's record, before the sinks close; later ones at once
        await self.feedback_owners.close()  # first, while the state backend is open; logs what it could not write
        await super().shutdown()

    def response_store(self) -> ResponseStore:
        """Stored Responses, on the state backend with the settings in force."""
        if self.backend is None:
            raise Starting()
        settings = self._loaded.settings.responses
        return ResponseStore(self.backend, settings.store_ttl_s, settings.max_stored_bytes)

    def _request_limits(self) -> RequestLimits:
        return RequestLimits.of(self._loaded.settings.server, self.metrics.refused)

    # --- runtime models (app/runtime_models.py), for the admin API ----------------

    @property
    def file_config(self) -> LoadedConfig:
        return self.models.file

    @property
    def model_store(self) -> ModelStore:
        return self.models.model_store

    async def check_models(self, stored: Stored, file: LoadedConfig | None = None) -> LoadedConfig:
        return await self.models.check(stored, file)

    async def check_rules(self, rules: StoredRules | None) -> LoadedConfig:
        return await self.models.check_rules(rules)

    async def refresh_models(self) -> None:
        await self.models.model_store.poll(self.apply_models)

    def render_metrics(self, accept: str = "") -> tuple[bytes, str]:
        return self.ops.render_metrics(accept)


def create_app(
    loaded: LoadedConfig,
    *,
    config_path: str | Path | None = None,
    tracing: Tracing | None = None,
    worker_metrics: tuple[str, range] | None = None,
) -> GatewayApp:
    return GatewayApp(loaded, config_path=config_path, tracing=tracing, worker_metrics=worker_metrics)
