"""The calls the non-OpenAI dialects add to a :class:`~gateway.server.service.Service`:
a non-streaming chat request that may go to an upstream of the client's own format
(same-format pass-through), and token counting.

Token counts come from the upstream's count endpoint when the model's first
deployment speaks the client's format and has one (Anthropic
``/messages/count_tokens``, Gemini ``:countTokens``, OpenAI Responses
``/responses/input_tokens``); otherwise (or when that upstream is unreachable) from
the gateway's own estimate, which the answer marks as one (``"estimated": true``
and ``x-gateway-token-count: estimated``). No model is called either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects.base import Native
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import InvalidRequest, UpstreamError
from gateway.providers.base import json_object
from gateway.routing.deployment import LiveDeployment, Route
from gateway.routing.router import CapacityWait, Gate, Lease, RequestTrace
from gateway.server.service import Service, native_body, native_provider

COUNT_FIELDS = ("input_tokens", "totalTokens", "total_tokens")
COUNT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Relayed:
    """A non-streaming answer: canonical always; with pass-through also the upstream's own."""

    completion: JSON
    answer: JSON | None = None
    """The upstream's answer as parsed (same format as the client's)."""
    raw: bytes | None = None
    """... and as it came, byte for byte."""


async def relay(
    service: Service,
    req: JSON,
    native: Native,
    trace: RequestTrace,
    gate: Gate | None = None,
    wait: CapacityWait | None = None,
) -> Relayed:
    """A non-streaming chat request of another dialect: the client's own body to a
    deployment of its format (the upstream's answer kept as it came), else translated."""
    route = service.route_for(req["model"], "chat")

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> Relayed:
        provider = native_provider(dep, native)
        if provider is None:
            if native.untranslatable is not None:
                raise native.untranslatable
            return Relayed(await service.chat_attempt(dep, req, deadline))
        with service.upstream_errors(dep):
            body = native_body(dep, native.prepare(dep.target.model, dep.spec.params, dep.target.drop_params))
            wire = provider.native_request(body, dep.target, stream=False, headers=native.headers)
            raw = await service.exchange(dep, wire, deadline)
            answer = json_object(raw, "the upstream's answer")
            completion = provider.chat_response(json_object(raw, "the upstream's answer"), dep.target)
            return Relayed(completion, answer, raw)

    tokens = service.tokens(route, req)
    run = service.router.run
    return await run(route.alias, attempt, trace, prompt_tokens=tokens, gate=gate, wait_for_capacity=wait)


async def count_tokens(service: Service, route: Route, req: JSON, native: Native) -> tuple[int, bool]:
    """(input tokens, estimated?) of a canonical request; ``native`` is the client's
    count body in its format (see the module docstring)."""
    dep = next((d for d in route.deployments if not d.degraded), route.deployments[0] if route.deployments else None)
    provider = native_provider(dep, native) if dep is not None else None
    if dep is not None and provider is not None:
        # No parameter policy on a count: defaults and caps (max_tokens...) are for generation.
        body = native.prepare(dep.target.model, Params(), dep.target.drop_params)
        wire = provider.count_request(body, dep.target, native.headers)
        try:
            with service.upstream_errors(dep):
                raw = await service.exchange(dep, wire, time.monotonic() + COUNT_TIMEOUT_S)
        except UpstreamError as err:
            if err.http_status < 500 and err.http_status != 404:
                raise  # the client's own mistake, as the upstream says
        else:
            answer = json_object(raw, "the upstream's token count")
            for name in COUNT_FIELDS:
                value = answer.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    return value, False
    if native.untranslatable is not None:
        raise native.untranslatable
    if not req.get("messages"):
        raise InvalidRequest("there is nothing to count: the request has no input", param="messages")
    return estimate_prompt_tokens(req), True
