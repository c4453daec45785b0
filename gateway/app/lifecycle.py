"""Start-up, shutdown and reload of the app (:class:`Lifecycle`, a part of
:class:`gateway.app.gateway_app.GatewayApp`).

Start-up builds what needs a running loop (the HTTP client, the state backend, the spend
ledger, the statistics, the key store, the admin gate) and puts the configuration in force.
Reload: SIGHUP (or :meth:`Lifecycle.reload`) re-reads the config file in a thread, validates it
fully, and swaps in a new :class:`Service`. A bad file is rejected with its problems logged, and
the old config stays in force. Requests in flight keep the service they started with, so none is
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from zoneinfo import ZoneInfo

from gateway.admin.gate import build_gate
from gateway.admin.model_store import ModelStore, Stored
from gateway.app.background import Background
from gateway.app.detail_tier import DetailTier
from gateway.app.endpoints import OpsEndpoints
from gateway.app.reload import Reload, load_price_table
from gateway.config.loader import LoadedConfig
from gateway.health.monitor import HealthMonitor
from gateway.observability.live_counts import LiveCounts
from gateway.observability.logs import AccessLog, RequestSink, flush_handlers, install_handlers
from gateway.observability.loop_lag import LoopLagMonitor
from gateway.observability.postgres_metrics import watch_pool
from gateway.observability.tracing import Tracing
from gateway.observability.worker_metrics import MetricsExposure, WorkerMetricsListener, open_listener
from gateway.policies.auth import Authenticator, Principal
from gateway.policies.keys import KeyStore
from gateway.policies.pricing import PriceTable, UnpricedModels
from gateway.providers.registry import Preset
from gateway.reports.store import StatsStore
from gateway.server.asgi import Receive, Scope, Send
from gateway.server.rule_windows import RuleWindows
from gateway.server.service import Service
from gateway.server.shadow import ShadowLauncher
from gateway.server.traffic import TrafficControl
from gateway.state.base import StateBackend
from gateway.state.factory import create_backend, create_ledger
from gateway.state.ledger import SpendLedger
from gateway.upstream.http import AiohttpClient

log = logging.getLogger("gateway")


class Lifecycle(Reload, DetailTier, Background):
    """The app's start-up and shutdown (reload: :class:`Reload`); the attributes below are the app's own."""

    ops: OpsEndpoints
    health: HealthMonitor
    rule_windows: RuleWindows
    shadows: ShadowLauncher
    tracing: Tracing
    backend: StateBackend | None
    ledger: SpendLedger | None
    stats: StatsStore | None
    access_log: AccessLog | None
    request_sinks: list[RequestSink]
    unpriced: UnpricedModels
    _presets: dict[str, Preset]
    _given_tracing: Tracing | None
    _loop_lag: LoopLagMonitor
    _worker_ports: tuple[str, range] | None
    _worker_metrics: WorkerMetricsListener | None
    metrics_exposure: MetricsExposure = MetricsExposure()
    """Where /metrics is served and who may read it: set at start from ``metrics`` and the worker ports."""

    async def authenticate(self, scope: Scope) -> Principal:
        raise NotImplementedError

    def _is_master(self, scope: Scope) -> bool:
        raise NotImplementedError

    async def apply_models(self, version: str | None, stored: Stored) -> None:
        """Put the stored models in force (the model store calls this when they change)."""
        await self.models.apply(
            version, stored, lambda loaded: self._build(loaded, self._prices, self.service), self._swap
        )

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
        wake = traffic.queueing.queue.wake  # a deployment slot given back may let a waiter through
        return Service(loaded, self.http, self._presets, previous=previous, traffic=traffic, on_release=wake)

    def _apply_logging(self, loaded: LoadedConfig) -> None:
        settings = loaded.settings.logging
        install_handlers(settings)
        self.access_log = AccessLog(settings) if settings.access_log else None

    async def startup(self) -> None:
        settings = self._loaded.settings
        self.metrics_exposure = MetricsExposure.of(settings.metrics, settings.server.host, self._worker_ports)
        self._worker_metrics = await open_listener(
            self.metrics_exposure, self.ops.render_metrics, self.metrics.metrics_refusal
        )
        self._loop_lag.start()
        prices = load_price_table(self._loaded)
        self._apply_logging(self._loaded)
        if self._given_tracing is None:
            self.tracing = Tracing.from_env(os.environ)
        self.http = AiohttpClient(
            max_connections_per_host=settings.server.max_connections_per_upstream,
            inject=self.tracing.inject if self.tracing.enabled else None,
            settings=settings.upstream,
        )
        self.backend = create_backend(settings.state, cache_max_bytes=settings.cache.max_bytes)
        self.ledger = create_ledger(settings.state, self.backend)  # embedded: replays its spend journal at start
        self.metrics.sources.state_pool.read = await watch_pool(self.backend)  # PostgreSQL: its pool's facts
        await self.ledger.start()
        self.stats = StatsStore(
            self.backend,
            tz=ZoneInfo(settings.budgets.timezone),
            flush_interval_s=settings.reports.flush_interval_s,
            retention_days=settings.reports.retention_days,
        )
        await self.stats.start()
        self.request_sinks += [self.stats.record, *self.start_detail(settings.state, self.backend, self.metrics)]
        self.start_background(settings, self.backend, self.metrics)
        self._keys = KeyStore(self.backend, refresh_interval_s=settings.state.refresh_interval_s)
        self._prices = prices
        self._gate = build_gate(
            self._loaded.settings,
            self.backend,
            is_master=self._is_master,
            check_client_key=self.authenticate,
            env=os.environ,
            count_login=self.metrics.login_attempt,
        )
        store = ModelStore(self.backend, refresh_interval_s=settings.state.refresh_interval_s)
        self._loaded = await self.models.at_startup(store)
        self._auth = Authenticator(self._loaded.settings.auth, self._keys, settings.state.failure_mode.keys)
        self.service = self._build(self._loaded, prices, None)
        store.start(self.apply_models)
        self.health.start()
        self.rule_windows.start()
        self.metrics.live = self._live_counts
        if left_out := ", ".join(self._loaded.disabled_aliases):
            log.info("model aliases left out (their required environment is not set): %s", left_out)
        log.info("state backend: %s; prices: %s (%d models)", self.backend.kind, prices.version, len(prices))
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def shutdown(self) -> None:
        await self._loop_lag.stop()
        if self._worker_metrics is not None:
            await self._worker_metrics.aclose()
        await self.health.stop()
        await self.rule_windows.aclose()
        await self.shadows.aclose()  # before the HTTP client they use is closed
        if self.models.store is not None:
            await self.models.store.aclose()
        if self.stats is not None:
            await self.stats.close()  # logs what it could not write
        await self.stop_background()
        await self.close_detail()  # logs what it could not write
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

    async def lifespan(self, receive: Receive, send: Send) -> None:
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
