"""The operational endpoints: ``/health`` (alive), ``/ready`` (serving a config), ``/metrics``
(the exposition, brought up to date first; behind ``metrics.bearer_token`` when set, and a 404
naming the listener when ``metrics.port`` or per-worker ports serve it), ``/admin/deployments``
(live routing state), ``POST /admin/jobs/{name}/run`` (a scheduled job now) and
``/admin/status`` (the state backend's reachability, the admin API's read-only mode and the
scheduled jobs' last runs: what the console's banner reads)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.deployments import deployment_rows
from gateway.admin.keys import error_response, json_response
from gateway.errors import AuthenticationFailed, NotFound
from gateway.jobs.scheduler import Scheduler
from gateway.observability.metrics import Metrics
from gateway.observability.state_probe import StateProbe
from gateway.observability.worker_metrics import MetricsExposure
from gateway.server.records import RecordBatch
from gateway.server.service import Service
from gateway.upstream.http import HTTPClient


class OpsHost(Protocol):
    """What the endpoints read of the app."""

    metrics: Metrics
    http: HTTPClient | None
    service: Service | None
    reloads: int
    metrics_exposure: MetricsExposure
    scheduler: Scheduler | None
    state_probe: StateProbe | None
    records: RecordBatch


class OpsEndpoints:
    def __init__(self, host: OpsHost) -> None:
        self._host = host

    async def status(self, request: Request) -> Response:
        """The state backend (up? the admin API is read-only while it is not) and the jobs (viewer)."""
        probe, scheduler = self._host.state_probe, self._host.scheduler
        state = probe.facts() if probe is not None else None
        body = {
            "state_backend": None
            if state is None
            else {"kind": state.backend, "up": state.up, "since": _iso(state.since), "read_only": not state.up},
            "jobs": []
            if scheduler is None
            else [_job(name, scheduler.records.get(name)) for name in scheduler.names()],
        }
        return json_response(body)

    async def run_job(self, request: Request) -> Response:
        """``POST /admin/jobs/{name}/run`` (admin): one scheduled job run now, here, as the
        scheduler would (recorded the same way); its record. 404 for a job not configured."""
        name, scheduler = request.path_params["name"], self._host.scheduler
        if scheduler is None or name not in scheduler.names():
            known = ", ".join(scheduler.names()) if scheduler is not None else ""
            message = f"no scheduled job {name!r} (the jobs here: {known or 'none'})"
            raise NotFound(message, param="name", code="job_not_found")
        record = await scheduler.run_now(name)
        return json_response(_job(name, record) | {"last_summary": record.get("last_summary")})

    async def deployments(self, request: Request) -> Response:
        """Live routing state of every deployment (viewer)."""
        return json_response({"deployments": deployment_rows(self._host.service)})

    def render_metrics(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (every ended request recorded, breaker states, budget levels and upstream
        connections brought up to date first): on the main port and the listeners of ``--workers``
        and ``metrics.port`` alike."""
        host = self._host
        host.records.drain()
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


def _iso(epoch: float | None) -> str | None:
    return None if not epoch else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job(name: str, record: dict[str, Any] | None) -> dict[str, Any]:
    rec = record or {}
    return {
        "name": name,
        "last_outcome": rec.get("last_outcome"),
        "last_run": _iso(rec.get("last_run")),
        "last_success": _iso(rec.get("last_success")),
        "last_error": rec.get("last_error"),
    }
