"""The operational endpoints: ``/health`` (alive), ``/ready`` (serving a config), ``/metrics``
(the exposition, brought up to date first; behind ``metrics.bearer_token`` when set, and a 404
naming the listener when ``metrics.port`` or per-worker ports serve it) and ``/admin/deployments``
(live routing state)."""

from __future__ import annotations

from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.deployments import deployment_rows
from gateway.admin.keys import error_response, json_response
from gateway.errors import AuthenticationFailed, NotFound
from gateway.observability.metrics import Metrics
from gateway.observability.worker_metrics import MetricsExposure
from gateway.server.service import Service
from gateway.upstream.http import HTTPClient


class OpsHost(Protocol):
    """What the endpoints read of the app."""

    metrics: Metrics
    http: HTTPClient | None
    service: Service | None
    reloads: int
    metrics_exposure: MetricsExposure


class OpsEndpoints:
    def __init__(self, host: OpsHost) -> None:
        self._host = host

    async def deployments(self, request: Request) -> Response:
        """Live routing state of every deployment (viewer)."""
        return json_response({"deployments": deployment_rows(self._host.service)})

    def render_metrics(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (breaker states, budget levels and upstream connections brought up to date first)."""
        host = self._host
        if host.http is not None:
            host.metrics.set_upstream_connections(*host.http.connection_counts())
        service = host.service
        if service is not None:
            for route in service.routes.values():
                for dep in route.deployments:
                    host.metrics.set_breaker(dep.id, dep.breaker.state.value)
            service.traffic.budgets.publish_levels()
        return host.metrics.render(accept)

    async def metrics(self, request: Request) -> Response:
        exposure = self._host.metrics_exposure
        if exposure.per_worker:  # several workers share this port: see worker_metrics.py
            return error_response(
                NotFound(
                    f"this gateway runs several worker processes; each serves its own /metrics on "
                    f"{exposure.where()}: scrape every one",
                    code="metrics_per_worker",
                )
            )
        if exposure.ports is not None:  # metrics.port: a listener of its own
            return error_response(
                NotFound(f"/metrics is not served on this port: it is on {exposure.where()}", code="metrics_elsewhere")
            )
        refusal = exposure.refusal(request.headers.get("authorization"))
        if refusal is not None:
            self._host.metrics.metrics_refused.labels(refusal).inc()
            return error_response(
                AuthenticationFailed(
                    "/metrics needs the metrics token: send 'Authorization: Bearer <metrics.bearer_token>'",
                    code=refusal,
                    headers={"www-authenticate": 'Bearer realm="metrics"'},
                )
            )
        body, content_type = self.render_metrics(request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        service = self._host.service
        if service is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return Response(
            orjson.dumps({"status": "ready", "models": len(service.routes), "reloads": self._host.reloads}),
            media_type="application/json",
        )
