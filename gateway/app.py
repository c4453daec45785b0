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
import hashlib
import hmac
import logging
import signal
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.asgi import Receive, Scope, Send, header, send_error
from gateway.errors import AuthenticationFailed, GatewayError, MethodNotAllowed, NotFound, PermissionDenied
from gateway.handlers import Handlers
from gateway.providers.registry import presets
from gateway.service import Service
from gateway.settings import ConfigError, LoadedConfig, load_config
from gateway.upstream.http import AiohttpClient, HTTPClient

log = logging.getLogger("gateway")

API_ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}


class Principal:
    """Who is calling: the master key, or a static key with its allowed aliases."""

    __slots__ = ("models", "name")

    def __init__(self, name: str, models: frozenset[str] | None) -> None:
        self.name = name
        self.models = models

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models

    def check_model(self, alias: str) -> None:
        if not self.may_use(alias):
            raise PermissionDenied(f"this key may not use model '{alias}'", code="model_not_allowed", param="model")


class GatewayApp:
    def __init__(self, loaded: LoadedConfig, *, config_path: str | Path | None = None) -> None:
        self._loaded = loaded
        self.config_path = Path(config_path) if config_path else None
        self._presets = presets()
        self.service: Service | None = None
        self.http: HTTPClient | None = None
        self.reloads = 0
        self._keys: dict[bytes, Principal] = {}
        self._master: bytes | None = None
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

    # --- auth -------------------------------------------------------------

    def authenticate(self, scope: Scope) -> Principal:
        auth = header(scope, b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            token = auth[7:].strip()
        else:
            token = header(scope, b"x-api-key") or b""
        if not token:
            raise AuthenticationFailed("no API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        if self._master is not None and hmac.compare_digest(token, self._master):
            return MASTER
        principal = self._keys.get(hashlib.sha256(token).digest())
        if principal is None:
            raise AuthenticationFailed("the API key is not valid", code="invalid_api_key")
        return principal

    def _install_keys(self, loaded: LoadedConfig) -> None:
        auth = loaded.settings.auth
        self._master = auth.master_key.encode() if auth.master_key else None
        self._keys = {
            bytes.fromhex(k.sha256): Principal(k.name, frozenset(k.models) if k.models is not None else None)
            for k in auth.keys
        }

    # --- lifecycle ----------------------------------------------------------

    async def startup(self) -> None:
        settings = self._loaded.settings
        self.http = AiohttpClient(max_connections_per_host=settings.server.max_connections_per_upstream)
        self.service = Service(self._loaded, self.http, self._presets)
        self._install_keys(self._loaded)
        if self._loaded.disabled_aliases:
            log.info(
                "model aliases left out (their required environment is not set): %s",
                ", ".join(self._loaded.disabled_aliases),
            )
        if self._master is None and not self._keys:
            log.warning("no master key and no client keys are configured: every API request will be refused")
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def shutdown(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load and apply the config file again; False (old config kept) if it is bad."""
        if self.config_path is None or self.http is None:
            return False
        try:
            loaded = await asyncio.to_thread(load_config, self.config_path)
            service = Service(loaded, self.http, self._presets, previous=self.service)
        except ConfigError as exc:
            log.error("config reload rejected; the previous config stays in force. %s", exc)
            return False
        self.service = service
        self._loaded = loaded
        self._install_keys(loaded)
        self.reloads += 1
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
            if self.authenticate(request.scope) is not MASTER:
                raise PermissionDenied("the admin API needs the master key", code="admin_only")
        except GatewayError as err:
            return Response(orjson.dumps(err.to_body()), status_code=err.http_status, media_type="application/json")
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


MASTER = Principal("master", None)


def create_app(loaded: LoadedConfig, *, config_path: str | Path | None = None) -> GatewayApp:
    return GatewayApp(loaded, config_path=config_path)
