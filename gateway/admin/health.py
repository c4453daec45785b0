"""Admin API for connection tests and the health of deployments.

- ``POST /admin/models/{alias}/test`` (operator): the four connection tests
  (basic, korean, evaluation, analysis) through the alias, as a client request
  to it would go, but without its fallback aliases; ``?deployment=ID`` tests
  that one deployment of the alias directly. Answers
  ``{"alias", "deployment", "health_score", "tests": [{name, passed,
  latency_ms, reason, deployment, cost_usd}], "probe_cost_usd"}``.
- ``POST /admin/models/test-all`` (operator): the four tests on every chat
  deployment, streamed as NDJSON (``application/x-ndjson``), one line per
  event as it happens: ``start``, ``test`` (each test), ``deployment`` (its
  score), ``done``.
- ``GET /admin/health`` (viewer): the scheduled checks' view of every
  deployment (degraded or not, health score, recent checks, last results).

What is sent and where is fixed: the alias and deployment must be configured
ones, the requests are the gateway's own, and nothing else is read from the
caller (no body, no other query parameter): no provider, URL, key, file path
or environment variable can be supplied. Probes bypass traffic control and are
never charged to a key, team or budget (gateway/health/runner.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.admin.keys import AdminHost, Handler, guarded, json_response
from gateway.canonical import JSON
from gateway.errors import InvalidRequest, NotFound, Starting
from gateway.health.monitor import HealthMonitor
from gateway.health.probes import PROBE_NAMES, PROBES, health_score
from gateway.health.runner import ProbeResult, ProbeRunner
from gateway.observability.metrics import Metrics
from gateway.routing.deployment import LiveDeployment
from gateway.routing.deployment import Route as ModelRoute
from gateway.security.roles import Role
from gateway.server.service import Service

NDJSON = "application/x-ndjson"
_EMPTY_BODIES = (b"", b"{}")


class HealthHost(AdminHost, Protocol):
    """What the health routes need from the app."""

    service: Service | None
    metrics: Metrics
    health: HealthMonitor


class HealthAPI:
    def __init__(self, host: HealthHost) -> None:
        self._host = host

    def routes(self) -> list[Route]:
        """``test-all`` comes first: it must not be read as an alias named so."""
        return [
            Route("/admin/models/test-all", self._guard(self.test_all, Role.operator), methods=["POST"]),
            Route("/admin/models/{alias:path}/test", self._guard(self.test_model, Role.operator), methods=["POST"]),
            Route("/admin/health", self._guard(self.status, Role.viewer), methods=["GET"]),
        ]

    def _guard(self, work: Handler, role: Role) -> Handler:
        return guarded(self._host, work, role=role)

    def _service(self) -> Service:
        service = self._host.service
        if service is None:
            raise Starting()
        return service

    # --- POST /admin/models/{alias}/test ---------------------------------------------

    async def test_model(self, request: Request) -> Response:
        await _no_input(request, allowed=("deployment",))
        service = self._service()
        route = _chat_route(service, request.path_params["alias"])
        wanted = request.query_params.get("deployment")
        dep = _deployment(route, wanted) if wanted is not None else None
        runner = ProbeRunner(service, self._host.metrics, service.settings.health_checks.timeout_s)
        results: list[ProbeResult] = []

        async def run_tests() -> AsyncIterator[ProbeResult]:
            for name in PROBE_NAMES:
                probe = PROBES[name]
                results.append(await (runner.on_deployment(dep, probe) if dep else runner.on_alias(route, probe)))
                yield results[-1]

        async def summary() -> JSON:
            score = health_score([r.passed for r in results])
            outcome = {"deployment": dep.id if dep else None, "health_score": score}
            await self._host.audit(request, "models.test", f"models/{route.alias}", after=outcome)
            costs = [r.cost_usd for r in results if r.cost_usd is not None]
            return {
                "alias": route.alias,
                "deployment": dep.id if dep else None,
                "health_score": score,
                "tests": [r.to_json() for r in results],
                "probe_cost_usd": round(sum(costs), 9) if costs else None,
            }

        if NDJSON in request.headers.get("accept", ""):  # each test's line as it finishes (the console)

            async def stream() -> AsyncIterator[bytes]:
                async for result in run_tests():
                    yield _line({"event": "test", "alias": route.alias, **result.to_json()})
                yield _line({"event": "done", **(await summary())})

            return StreamingResponse(stream(), media_type=NDJSON)
        async for _ in run_tests():
            pass
        return json_response(await summary())

    # --- POST /admin/models/test-all -----------------------------------------------------

    async def test_all(self, request: Request) -> Response:
        await _no_input(request, allowed=())
        service = self._service()
        deps = [d for route in service.routes.values() for d in route.deployments if d.operation == "chat"]
        await self._host.audit(request, "models.test_all", "models", after={"deployments": [d.id for d in deps]})
        return StreamingResponse(self._stream(service, deps), media_type=NDJSON)

    async def _stream(self, service: Service, deps: list[LiveDeployment]) -> AsyncIterator[bytes]:
        policy = service.settings.health_checks
        runner = ProbeRunner(service, self._host.metrics, policy.timeout_s)
        slots = asyncio.Semaphore(policy.max_concurrent)
        events: asyncio.Queue[JSON | None] = asyncio.Queue()
        scores: list[int] = []

        async def one(dep: LiveDeployment) -> None:
            async with slots:
                passed = []
                for name in PROBE_NAMES:
                    result = await runner.on_deployment(dep, PROBES[name])
                    passed.append(result.passed)
                    await events.put({"event": "test", "alias": dep.alias, **result.to_json()})
            scores.append(health_score(passed))
            await events.put(
                {"event": "deployment", "alias": dep.alias, "deployment": dep.id, "health_score": scores[-1]}
            )

        async def produce() -> None:
            try:
                await asyncio.gather(*(one(d) for d in deps))
            finally:
                await events.put(None)

        yield _line({"event": "start", "deployments": len(deps), "tests": len(deps) * len(PROBE_NAMES)})
        producer = asyncio.create_task(produce())
        try:
            while (event := await events.get()) is not None:
                yield _line(event)
            await asyncio.wait({producer})
            failed = None if producer.cancelled() else producer.exception()
            yield _line(
                {
                    "event": "done",
                    "deployments": len(deps),
                    "healthy": sum(1 for s in scores if s == 100),
                    "health_score": round(sum(scores) / len(scores)) if scores else None,
                    **({"error": f"the run stopped early: {type(failed).__name__}"} if failed else {}),
                }
            )
        finally:
            producer.cancel()  # the client went away: stop probing

    # --- GET /admin/health -----------------------------------------------------------

    async def status(self, request: Request) -> Response:
        service = self._service()
        policy = service.settings.health_checks
        return json_response(
            {
                "enabled": policy.enabled,
                "interval_s": policy.interval_s,
                "probes": policy.probes,
                "window": policy.window,
                "failures": policy.failures,
                "recover_after": policy.recover_after,
                "rounds": self._host.health.rounds,
                "deployments": self._host.health.snapshot(service),
            }
        )


def _line(event: JSON) -> bytes:
    return orjson.dumps(event) + b"\n"


async def _no_input(request: Request, *, allowed: tuple[str, ...]) -> None:
    """Refuse anything a caller might use to steer a test: only ``allowed`` query
    parameters, and no body (``{}`` is tolerated, as clients send it by default)."""
    for name in request.query_params:
        if name not in allowed:
            hint = f"; only {', '.join(allowed)} is accepted" if allowed else ""
            raise InvalidRequest(f"unknown query parameter {name!r}{hint}", param=name, code="unknown_parameter")
    body = (await request.body()).strip()
    if body not in _EMPTY_BODIES:
        raise InvalidRequest(
            "connection tests take no request body: what they send is fixed, and where it goes "
            "comes from the configuration",
            param="body",
            code="unexpected_body",
        )


def _chat_route(service: Service, alias: str) -> ModelRoute:
    route = service.routes.get(alias)
    if route is None:
        raise NotFound(f"no model alias {alias!r} is configured", param="alias", code="model_not_found")
    if route.spec.kind != "chat":
        raise InvalidRequest(
            f"connection tests are for chat aliases; {alias!r} is an {route.spec.kind} alias",
            param="alias",
            code="wrong_model_kind",
        )
    return route


def _deployment(route: ModelRoute, wanted: str) -> LiveDeployment:
    for dep in route.deployments:
        if dep.id == wanted:
            return dep
    ids = ", ".join(d.id for d in route.deployments)
    raise NotFound(
        f"{route.alias!r} has no deployment {wanted!r} (its deployments: {ids})",
        param="deployment",
        code="deployment_not_found",
    )
