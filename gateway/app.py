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
import signal
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.access import MASTER_ACTOR, Actor, Role
from gateway.admin.keys import KeysAPI, error_response
from gateway.asgi import Receive, Scope, Send, send_error
from gateway.errors import GatewayError, MethodNotAllowed, NotFound, PermissionDenied
from gateway.handlers import Handlers
from gateway.observability.metrics import LiveCounts, Metrics
from gateway.policies.auth import Authenticator, Principal
from gateway.policies.keys import KeyStore
from gateway.policies.pricing import PriceTable, UnpricedModels, load_prices
from gateway.providers.registry import presets
from gateway.service import Service
from gateway.settings import ConfigError, LoadedConfig, load_config
from gateway.state.base import StateBackend
from gateway.state.factory import create_backend
from gateway.state.ledger import SpendLedger
from gateway.traffic import TrafficControl
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
    def __init__(self, loaded: LoadedConfig, *, config_path: str | Path | None = None) -> None:
        self._loaded = loaded
        self.config_path = Path(config_path) if config_path else None
        self._presets = presets()
        self.service: Service | None = None
        self.http: HTTPClient | None = None
        self.backend: StateBackend | None = None
        self.ledger: SpendLedger | None = None
        self._keys: KeyStore | None = None
        self._auth: Authenticator | None = None
        self.unpriced = UnpricedModels()
        self.metrics = Metrics()
        self.reloads = 0
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
                Route("/admin/deployments", self._deployments),
                Route("/metrics", self._metrics),
                *KeysAPI(self).routes(),
            ],
        )

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
            raise GatewayError("the gateway is still starting", code="starting")
        return await self._auth.authenticate(scope)

    async def require_admin(self, scope: Scope, role: Role = Role.admin) -> Actor:
        """The actor behind an admin request, if its role is at least ``role``."""
        if self._auth is None:
            raise GatewayError("the gateway is still starting", code="starting")
        if not self._auth.is_master(scope):
            await self._auth.authenticate(scope)  # 401 for a bad key, then:
            raise PermissionDenied("the admin API needs the master key", code="admin_only")
        return MASTER_ACTOR

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            raise GatewayError("the gateway is still starting", code="starting")
        return self._keys

    def aliases(self) -> set[str]:
        return set(self.service.routes) if self.service is not None else set()

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

    async def startup(self) -> None:
        settings = self._loaded.settings
        prices = load_price_table(self._loaded)
        self.http = AiohttpClient(max_connections_per_host=settings.server.max_connections_per_upstream)
        self.backend = create_backend(settings.state, cache_max_bytes=settings.cache.max_bytes)
        self.ledger = SpendLedger(
            self.backend,
            flush_interval_s=settings.state.flush_interval_s,
            refresh_interval_s=settings.state.refresh_interval_s,
        )
        await self.ledger.start()
        self._keys = KeyStore(self.backend, refresh_interval_s=settings.state.refresh_interval_s)
        self._auth = Authenticator(settings.auth, self._keys, settings.state.failure_mode.keys)
        self.service = self._build(self._loaded, prices, None)
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
        if self.ledger is not None:
            await self.ledger.close()  # logs what it could not write
        if self.backend is not None:
            await self.backend.aclose()
        if self.http is not None:
            await self.http.aclose()

    def _live_counts(self) -> LiveCounts:
        service, ledger = self.service, self.ledger
        if service is None or ledger is None:
            return LiveCounts.empty()
        return service.traffic.live_counts(ledger.flush_failures)

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load and apply the config file again; False (old config kept) if it is bad.
        The state backend, keys and spend carry over; its own settings need a restart."""
        if self.config_path is None or self.http is None:
            return False
        try:
            loaded = await asyncio.to_thread(load_config, self.config_path)
            prices = await asyncio.to_thread(load_price_table, loaded)
            service = self._build(loaded, prices, self.service)
        except ConfigError as exc:
            log.error("config reload rejected; the previous config stays in force. %s", exc)
            self.metrics.config_reloads.labels("rejected").inc()
            return False
        if loaded.settings.state != self._loaded.settings.state:
            log.warning("state settings changed in the config file: they apply at the next restart")
        assert self.backend is not None
        self.service = service
        self._auth = Authenticator(loaded.settings.auth, self._keys, loaded.settings.state.failure_mode.keys)
        self._loaded = loaded
        self.reloads += 1
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded from %s (%d model aliases)", self.config_path, len(loaded.settings.models))
        return True

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
        """Live routing state of every deployment (master key only)."""
        try:
            await self.require_admin(request.scope)
        except GatewayError as err:
            return error_response(err)
        service = self.service
        rows = (
            []
            if service is None
            else [
                {
                    "id": dep.id,
                    "alias": dep.alias,
                    "provider": dep.target.provider,
                    "model": dep.target.model,
                    "breaker": dep.breaker.state.value,
                    "inflight": dep.inflight,
                    "latency_ewma_ms": None if dep.latency_ewma_s is None else round(dep.latency_ewma_s * 1000, 3),
                }
                for route in service.routes.values()
                for dep in route.deployments
            ]
        )
        return Response(orjson.dumps({"deployments": rows}), media_type="application/json")

    async def _metrics(self, request: Request) -> Response:
        service = self.service
        if service is not None:
            for route in service.routes.values():
                for dep in route.deployments:
                    self.metrics.set_breaker(dep.id, dep.breaker.state.value)
        body, content_type = self.metrics.render()
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


def create_app(loaded: LoadedConfig, *, config_path: str | Path | None = None) -> GatewayApp:
    return GatewayApp(loaded, config_path=config_path)
