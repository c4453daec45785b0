"""Shadow traffic: a copy of a client's chat request sent to a candidate alias in the
background (a ``shadow`` routing rule, :meth:`gateway.routing.rules.RuleBook.shadow_for`).

The client never sees it: it gets its own answer whatever the shadow does, and the shadow
is launched beside the request (:meth:`ShadowLauncher.launch`), never awaited by it.

A shadow is the canonical request without ``stream``/``stream_options`` (so always a
non-streaming call), with ``model`` the candidate, sent through a router over the
candidate's deployments minus its ``fallbacks`` (a candidate must answer for itself:
strategy, retries, breakers and degraded deployments as for a client request; a
deployment over its own rpm/tpm is skipped, since that quota is the provider account's).
It does **not** pass through traffic control: no rate limit of a key, team, alias or the
gateway is taken, the cache is neither read nor written, no budget is checked, reserved
or charged, and nothing reaches the spend ledger, the usage counters or the reports. What
it costs is recorded only by ``metrics.shaping.shadow(alias, candidate, outcome, seconds,
input_tokens, output_tokens, cost_usd)`` (priced with the settlement's price table).
Its attempts do tell the candidate's deployments' breakers and latency averages, like
client traffic: they are verdicts on the same upstreams.

At most ``shadow_traffic.max_concurrent`` shadows are in flight in a process; a request
sampled beyond that is not shadowed (outcome ``dropped``), and so is one that the
gateway could not translate (a same-format pass-through of an untranslatable body).
Errors never leave a shadow: they are its outcome ``error``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from gateway.canonical import JSON
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import GatewayError
from gateway.observability.shaping_metrics import ShapingMetrics
from gateway.policies.pricing import cost_usd
from gateway.routing.deployment import LiveDeployment, Route
from gateway.routing.router import Gate, Lease, RequestTrace, Router
from gateway.routing.rules import Choice
from gateway.server.service import Service

log = logging.getLogger("gateway.shadow")

DROPPED_FIELDS = ("stream", "stream_options")
UNTRANSLATED = "native_body"
"""The key of a canonical stand-in for a body only a same-format deployment could take."""


def shadow_request(req: JSON, candidate: str) -> JSON | None:
    """The copy of ``req`` a shadow sends (None: this request cannot be shadowed)."""
    if UNTRANSLATED in req:
        return None
    body = {k: v for k, v in req.items() if k not in DROPPED_FIELDS}
    body["model"] = candidate
    return body


def _tokens(usage: Any, field: str) -> int:
    value = usage.get(field) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _price(service: Service, dep: LiveDeployment | None, usage: Any) -> float | None:
    if dep is None or not isinstance(usage, dict) or not usage:
        return None
    target = dep.target
    price = service.traffic.prices.price_for(target.provider, target.model, dep.spec.price)
    return None if price is None else cost_usd(usage, price)


def _deployment_gate(service: Service, route: Route, body: JSON) -> Gate | None:
    """The deployments' own rpm/tpm (the provider account's quota), as for client traffic."""
    if not any(d.spec.limits for d in route.deployments):
        return None
    limiter = service.traffic.limiter
    asked = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    tokens = estimate_prompt_tokens(body) + (asked if isinstance(asked, int) else 0)

    async def allowed(dep: LiveDeployment) -> bool:
        spec = dep.spec.limits
        return spec is None or await limiter.try_deployment(dep.id, spec, tokens)

    return allowed


async def run_shadow(service: Service, req: JSON, alias: str, candidate: str, metrics: ShapingMetrics) -> str:
    """Send the shadow of ``req`` (a request to ``alias``) to ``candidate`` and record it;
    its outcome (``ok``, ``error`` or ``dropped``). Never raises but on cancellation."""
    body = shadow_request(req, candidate)
    route = service.routes.get(candidate)
    if body is None or route is None or route.spec.kind != "chat":
        metrics.shadow(alias, candidate, "dropped", None, 0, 0, None)
        return "dropped"
    alone = dataclasses.replace(route, fallbacks=[])
    total = service.settings.router.timeouts.total_s
    router = Router({**service.routes, candidate: alone}, total_timeout_s=total, on_release=service.on_release)
    trace = RequestTrace()

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> JSON:
        return await service.chat_attempt(dep, body, deadline)

    started = time.monotonic()
    try:
        async with asyncio.timeout(total + 1.0):  # the router's own deadline comes first
            answer = await router.run(
                candidate,
                attempt,
                trace,
                prompt_tokens=service.tokens(alone, body),
                gate=_deployment_gate(service, alone, body),
            )
    except (GatewayError, TimeoutError) as err:
        log.debug("shadow of %r to %r failed: %s", alias, candidate, err)
        metrics.shadow(alias, candidate, "error", time.monotonic() - started, 0, 0, None)
        return "error"
    except Exception:  # a shadow must never take anything down with it
        log.exception("shadow of %r to %r failed unexpectedly", alias, candidate)
        metrics.shadow(alias, candidate, "error", time.monotonic() - started, 0, 0, None)
        return "error"
    usage = answer.get("usage")
    cost = _price(service, trace.deployment, usage)
    inputs, outputs = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
    metrics.shadow(alias, candidate, "ok", time.monotonic() - started, inputs, outputs, cost)
    return "ok"


class ShadowLauncher:
    """Starts shadows in the background and keeps each task until it ends (one per app;
    :meth:`aclose` at shutdown cancels those still running)."""

    def __init__(self, metrics: ShapingMetrics) -> None:
        self._metrics = metrics
        self._tasks: set[asyncio.Task[str]] = set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def launch(self, service: Service, req: JSON, choice: Choice) -> asyncio.Task[str] | None:
        """Shadow ``req`` (a request to ``choice.origin``) to ``choice.alias`` in the
        background; None (counted ``dropped``) when ``shadow_traffic.max_concurrent``
        shadows are already in flight. The request is copied here: the caller may go on
        changing its own."""
        if len(self._tasks) >= service.settings.shadow_traffic.max_concurrent:
            self._metrics.shadow(choice.origin, choice.alias, "dropped", None, 0, 0, None)
            return None
        self._metrics.rule(choice.rule, choice.kind)
        work = run_shadow(service, dict(req), choice.origin, choice.alias, self._metrics)
        task = asyncio.get_running_loop().create_task(work, name=f"shadow:{choice.rule}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the shadows still in flight and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
