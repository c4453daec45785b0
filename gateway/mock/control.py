"""Control routes under ``/_mock/``: statistics, reset, runtime behaviours, health.

- ``GET /_mock/stats`` -> ``{"total", "by_model", "by_route"}`` (model routes only;
  model listings are not counted)
- ``POST /_mock/reset`` -> forget stats, runtime behaviours, ``fail_times`` countdowns and
  the prompt-cache prefixes
- ``GET /_mock/behaviours`` -> the runtime overrides
- ``PUT /_mock/behaviours/{model}`` (body: a Behaviour) -> replace ``model``'s
  override (``*`` = every model); 422 with the problems when invalid
- ``DELETE /_mock/behaviours/{model}`` -> ``{"deleted": bool}``
- ``GET /_mock/health`` -> ``{"status": "ok"}``
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock.behaviour import Behaviour, describe, layer
from gateway.mock.errors import json_response
from gateway.mock.pipeline import read_object, state_of


async def stats(request: Request) -> Response:
    return json_response(state_of(request).stats.snapshot())


async def reset(request: Request) -> Response:
    state_of(request).reset()
    return json_response({"status": "reset"})


async def list_behaviours(request: Request) -> Response:
    runtime = state_of(request).runtime
    return json_response({model: layer(b) for model, b in runtime.items()})


async def put_behaviour(request: Request) -> Response:
    model = str(request.path_params["model"])
    body = await read_object(request)
    if body is None:
        return json_response({"error": "the body must be a JSON object (a Behaviour)"}, 422)
    try:
        behaviour = Behaviour.model_validate(body)
    except ValidationError as exc:
        return json_response({"error": describe(exc)}, 422)
    state_of(request).set_override(model, behaviour)
    return json_response({"model": model, "behaviour": layer(behaviour)})


async def delete_behaviour(request: Request) -> Response:
    deleted = state_of(request).clear_override(str(request.path_params["model"]))
    return json_response({"deleted": deleted})


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def routes() -> list[Route]:
    return [
        Route("/_mock/stats", stats, methods=["GET"]),
        Route("/_mock/reset", reset, methods=["POST"]),
        Route("/_mock/behaviours", list_behaviours, methods=["GET"]),
        Route("/_mock/behaviours/{model:path}", put_behaviour, methods=["PUT"]),
        Route("/_mock/behaviours/{model:path}", delete_behaviour, methods=["DELETE"]),
        Route("/_mock/health", health, methods=["GET"]),
    ]
