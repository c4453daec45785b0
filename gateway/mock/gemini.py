"""Gemini wire format: ``/v1beta/models/{model}:{method}`` (also under ``/v1/``) and the model list.

Methods: ``generateContent``, ``streamGenerateContent`` (always SSE: each event a
whole response object, ``\\r\\n\\r\\n``-separated, no ``[DONE]``; the last one
carries ``finishReason``), ``countTokens``, ``embedContent`` and ``batchEmbedContents``.

A request naming ``cachedContent`` (``cachedContents/<id>``, any id) reports
``cachedContentTokenCount`` (:func:`gateway.mock.caching.gemini_cached_tokens`), included
in ``promptTokenCount``. ``countTokens`` (``contents`` or ``generateContentRequest``)
answers ``totalTokens`` = the ``promptTokenCount`` a generation with that body reports.

Thinking (Gemini 2.5 and 3 model names, :mod:`gateway.mock.gemini_thinking`): the
``thinkingConfig`` rules of each generation, ``thoughtsTokenCount``, ``thought: true``
parts with ``includeThoughts``, ``thoughtSignature`` on the first answer part, and the
Gemini 3 refusal of a replayed function call without its signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock.caching import gemini_cached_tokens
from gateway.mock.content import (
    Prompt,
    Reply,
    ToolMode,
    ToolSpec,
    as_dict,
    chunks,
    count_words,
    embedding,
    generate,
    random_id,
    text_of,
)
from gateway.mock.errors import BadRequest, error_response, json_response
from gateway.mock.gemini_thinking import ThoughtPlan, check_thinking, sign_parts, thought_parts, thought_plan
from gateway.mock.pipeline import Call, ModelRoute, guard_listing, handle, json_or_truncated, model_names, state_of
from gateway.mock.streaming import SSEResponse, StreamPlan, sse

DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-embedding-001")
_FINISH: Mapping[str, str] = MappingProxyType({"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"})
_TOOL_MODES: Mapping[str, ToolMode] = MappingProxyType({"ANY": "required", "NONE": "none"})
_SEP = b"\r\n\r\n"
_MAX_DIMS = 8192


def parse_generate(body: dict[str, Any], model: str) -> Prompt:
    """The :class:`Prompt` of a generateContent request."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    calling = as_dict(as_dict(body.get("toolConfig")).get("functionCallingConfig"))
    mode = _TOOL_MODES.get(str(calling.get("mode", "AUTO")).upper(), "auto")
    allowed = calling.get("allowedFunctionNames")
    tools = _tools(body.get("tools"))
    if isinstance(allowed, list) and allowed:
        tools = tuple(t for t in tools if t.name in allowed) or tools
    config = as_dict(body.get("generationConfig"))
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    limit = config.get("maxOutputTokens")
    words = count_words(text_of(body.get("systemInstruction"))) + count_words(text_of(contents))
    return Prompt(
        model=model,
        prompt_tokens=words + cached_content_tokens(body),
        last_user=_last_user_text(contents),
        tools=tools,
        tool_mode=mode,
        forced_tool=tools[0].name if mode == "required" and tools else None,
        after_tool_result=any("functionResponse" in as_dict(p) for p in _parts(contents[-1])),
        json_mode=config.get("responseMimeType") == "application/json",
        json_schema=schema if isinstance(schema, dict) else None,
        max_tokens=limit if isinstance(limit, int) else None,
    )


def cached_content_tokens(body: dict[str, Any]) -> int:
    """The cached tokens of the request's ``cachedContent`` (0 without one)."""
    name = body.get("cachedContent")
    if name is None:
        return 0
    if not isinstance(name, str) or not name.startswith("cachedContents/") or name == "cachedContents/":
        raise BadRequest(f"* GenerateContentRequest.cached_content: invalid cached content name {name!r}")
    return gemini_cached_tokens(name)


def _parts(content: Any) -> list[Any]:
    parts = as_dict(content).get("parts")
    return parts if isinstance(parts, list) else []


def _last_user_text(contents: list[Any]) -> str:
    for content in reversed(contents):
        if as_dict(content).get("role", "user") == "user":
            text = text_of([as_dict(p).get("text") for p in _parts(content)])
            if text:
                return text
    return ""


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    declarations = (
        [d for t in raw if isinstance(t, dict) for d in t.get("functionDeclarations") or []]
        if isinstance(raw, list)
        else []
    )
    return tuple(
        ToolSpec(
            d["name"], as_dict(d.get("parametersJsonSchema") or d.get("parameters_json_schema") or d.get("parameters"))
        )
        for d in declarations
        if isinstance(d, dict) and isinstance(d.get("name"), str)
    )


def _usage(reply: Reply, final: bool, cached: int, thoughts: int = 0) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    usage: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt + thoughts}
    if final:
        usage["candidatesTokenCount"] = reply.completion_tokens
        usage["totalTokenCount"] = reply.total_tokens + thoughts
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def response(
    reply: Reply, model: str, response_id: str, parts: list[Any], final: bool, cached: int = 0, thoughts: int = 0
) -> dict[str, Any]:
    """A ``GenerateContentResponse``; only a ``final`` one has ``finishReason`` and output usage."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if final:
        candidate["finishReason"] = _FINISH[reply.finish]
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(reply, final, cached, thoughts),
        "modelVersion": model,
        "responseId": response_id,
    }


def _reply_parts(reply: Reply, plan: ThoughtPlan) -> list[Any]:
    parts: list[dict[str, Any]]
    if reply.tool_call is not None:
        parts = [{"functionCall": {"name": reply.tool_call.name, "args": reply.tool_call.arguments}}]
    else:
        parts = [{"text": reply.text}]
    return sign_parts(parts, plan)


def stream_plan(
    reply: Reply, model: str, complete: bool, cached: int = 0, plan: ThoughtPlan | None = None
) -> StreamPlan:
    """One event per word (a function call arrives whole), thought words first; the last
    event is final when ``complete``, otherwise no event has a ``finishReason``."""
    plan = plan or ThoughtPlan()
    response_id = random_id("", 22)
    pieces: list[list[Any]] = [[{"text": p, "thought": True}] for p in chunks(plan.text or "")]
    if reply.tool_call is not None:
        pieces.append(_reply_parts(reply, plan))
    else:
        words = [[{"text": piece}] for piece in chunks(reply.text)] or [[{"text": ""}]]
        pieces += [sign_parts(words[0], plan), *words[1:]]
    last = len(pieces) - 1
    events = [
        sse(
            orjson.dumps(response(reply, model, response_id, parts, complete and i == last, cached, plan.tokens)),
            sep=_SEP,
        )
        for i, parts in enumerate(pieces)
    ]
    return StreamPlan([], events, [])


def _answer(call: Call) -> tuple[Reply, ThoughtPlan]:
    prompt = parse_generate(call.body, call.model)
    check_thinking(call.body, call.model)
    plan = thought_plan(call.body, call.model, call.behaviour.thinking_tokens, prompt.last_user)
    return generate(prompt, call.behaviour), plan


def respond_generate(call: Call) -> Response:
    reply, plan = _answer(call)
    cached = cached_content_tokens(call.body)
    parts = [*thought_parts(plan), *_reply_parts(reply, plan)]
    return json_or_truncated(call, response(reply, call.model, random_id("", 22), parts, True, cached, plan.tokens))


def respond_stream(call: Call) -> Response:
    reply, plan = _answer(call)
    complete = call.behaviour.garbage != "truncate"
    cached = cached_content_tokens(call.body)
    return SSEResponse(stream_plan(reply, call.model, complete, cached, plan), call.behaviour)


def respond_count_tokens(call: Call) -> Response:
    """``{"totalTokens", "promptTokensDetails"[, "cachedContentTokenCount", "cacheTokensDetails"]}``."""
    request = as_dict(call.body.get("generateContentRequest")) or call.body
    total = parse_generate(request, call.model).prompt_tokens
    body: dict[str, Any] = {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}
    cached = cached_content_tokens(request)
    if cached:
        body["cachedContentTokenCount"] = cached
        body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return json_or_truncated(call, body)


def _values(request: dict[str, Any], default_dims: int) -> dict[str, Any]:
    content = request.get("content")
    if not isinstance(content, dict):
        raise BadRequest("* EmbedContentRequest.content: content is not specified")
    dims = request.get("outputDimensionality") or default_dims
    if not isinstance(dims, int) or not 1 <= dims <= _MAX_DIMS:
        raise BadRequest(f"outputDimensionality must be from 1 to {_MAX_DIMS}.")
    return {"values": embedding(text_of(content), dims)}


def respond_embed(call: Call) -> Response:
    return json_or_truncated(call, {"embedding": _values(call.body, call.config.embedding_dims)})


def respond_batch_embed(call: Call) -> Response:
    requests = call.body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
    values = [_values(as_dict(r), call.config.embedding_dims) for r in requests]
    return json_or_truncated(call, {"embeddings": values})


def _always(body: dict[str, Any]) -> bool:
    return True


_METHODS: Mapping[str, ModelRoute] = MappingProxyType(
    {
        "generateContent": ModelRoute("gemini", "gemini.generateContent", respond_generate),
        "streamGenerateContent": ModelRoute("gemini", "gemini.streamGenerateContent", respond_stream, _always),
        "countTokens": ModelRoute("gemini", "gemini.countTokens", respond_count_tokens),
        "embedContent": ModelRoute("gemini", "gemini.embedContent", respond_embed),
        "batchEmbedContents": ModelRoute("gemini", "gemini.batchEmbedContents", respond_batch_embed),
    }
)


async def model_method(request: Request) -> Response:
    """``POST .../models/{model}:{method}``: split the segment at its last colon and dispatch."""
    model, _, method = str(request.path_params["target"]).rpartition(":")
    route = _METHODS.get(method)
    if not model or route is None:
        return error_response("gemini", 404, f"Method not found: {method or request.url.path}.")
    return await handle(request, route, model.removeprefix("models/"))


async def list_models(request: Request) -> Response:
    refusal = guard_listing(request, "gemini")
    if refusal is not None:
        return refusal
    names = model_names(state_of(request).config, DEFAULT_MODELS)
    return json_response({"models": [_model_info(n) for n in names]})


def _model_info(name: str) -> dict[str, Any]:
    embeds = "embedding" in name
    methods = (
        ["embedContent", "batchEmbedContents"]
        if embeds
        else ["generateContent", "streamGenerateContent", "countTokens"]
    )
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": "A mock model.",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": methods,
    }


def routes() -> list[Route]:
    return [
        Route("/v1beta/models", list_models, methods=["GET"]),
        Route("/v1beta/models/{target:path}", model_method, methods=["POST"]),
        Route("/v1/models/{target:path}", model_method, methods=["POST"]),
    ]
