"""The Gemini ingress dialect: clients of the ``google-genai`` SDK (or Gemini's REST API).

Routes the server maps here (``{model}`` as sent, ``models/`` removed; the SDK puts
``/v1/`` in the path unless asked for ``v1beta``)::

    POST /v1beta/models/{model}:generateContent          parse_generate / render_generate
    POST /v1beta/models/{model}:streamGenerateContent    parse_generate(stream=True) / GenerateStream
    POST /v1beta/models/{model}:countTokens              parse_count_tokens / count_tokens_body
    POST /v1beta/models/{model}:embedContent             parse_embed / render_embed
    POST /v1beta/models/{model}:batchEmbedContents       parse_batch_embed / render_batch_embed
    GET  /v1beta/models[/{model}]                        model_list / model_card

Requests become the canonical chat request (gateway/canonical.py) or the canonical
embeddings request, so any provider can serve them. The translation, field by
field, is in gemini_contents.py (contents, parts, function calls), gemini_tools.py
(tools, toolConfig, schemas) and gemini_config.py (generationConfig); top level:

| field | canonical |
|---|---|
| contents, systemInstruction | messages |
| tools, toolConfig | tools, tool_choice |
| generationConfig | sampling, limits, response_format, reasoning_effort / _budget, include_reasoning, thinking_config |
| cachedContent | ``cached_content``, kept: only a Gemini deployment can use it (the server decides) |
| serviceTier | service_tier (standard -> default, flex, priority) |
| safetySettings, labels, store | dropped: Google's own policy, billing labels and logging |
| model | ignored: the URL names the model |

Field names are accepted in camelCase and snake_case; unknown fields are refused,
as Google refuses them. Errors: Google's envelope (:func:`render_error`); a bad key is
``401 UNAUTHENTICATED`` (Google answers 400 INVALID_ARGUMENT there, with reason
API_KEY_INVALID, which the details carry too): the SDK raises a ClientError either
way, and 401 keeps one status for one failure across the gateway's dialects.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.dialects.checks import bad
from gateway.dialects.gemini_config import apply_native, parse_generation_config
from gateway.dialects.gemini_contents import Transcript, read_part, system_message
from gateway.dialects.gemini_fields import array, at, fields, integer, missing, model_name, string, text_of
from gateway.dialects.gemini_render import candidate, error_envelope, usage_metadata
from gateway.dialects.gemini_stream import GenerateStream
from gateway.dialects.gemini_tools import parse_tools, tool_choice
from gateway.errors import GatewayError, InvalidRequest, UpstreamBadResponse

__all__ = [
    "GenerateStream",
    "apply_native",
    "count_tokens_body",
    "model_card",
    "model_list",
    "parse_batch_embed",
    "parse_count_tokens",
    "parse_embed",
    "parse_generate",
    "render_batch_embed",
    "render_embed",
    "render_error",
    "render_generate",
]

_REQUEST_FIELDS = (
    "providerOptions",  # the gateway's provider_options (gateway/providers/options.py)
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
    "serviceTier",
    "store",
)
_EMBED_FIELDS = ("model", "content", "taskType", "title", "outputDimensionality")
_SERVICE_TIERS = {"standard": "default", "flex": "flex", "priority": "priority"}
CHAT_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
EMBEDDING_METHODS = ("embedContent", "batchEmbedContents")


# --- requests ------------------------------------------------------------------


def parse_generate(body: JSON, model: str, *, stream: bool) -> JSON:
    """A ``GenerateContentRequest`` -> the canonical chat request for ``model``."""
    req = _chat_request(body, model_name(model, "model"), stream=stream)
    req["stream"] = stream
    if stream:
        req["stream_options"] = {"include_usage": True}
    return req


def parse_count_tokens(body: JSON, model: str) -> JSON:
    """``{contents}`` or ``{generateContentRequest}`` -> a canonical chat request
    (what would be sent; the server counts or estimates its tokens)."""
    request = fields(body, "", ("contents", "generateContentRequest"))
    if "contents" in request and "generateContentRequest" in request:
        raise bad("set contents or generateContentRequest, not both", "generateContentRequest")
    name = model_name(model, "model")
    if "generateContentRequest" not in request:
        req = _chat_request({"contents": request.get("contents")}, name, stream=False)
    else:
        try:
            req = _chat_request(request["generateContentRequest"], name, stream=False)
        except InvalidRequest as err:
            inner = err.param if err.param and err.param != "body" else ""
            err.param = at("generateContentRequest", inner) if inner else "generateContentRequest"
            raise
    req["stream"] = False
    return req


def _chat_request(body: Any, model: str, *, stream: bool) -> JSON:
    request = fields(body, "", _REQUEST_FIELDS)
    if "contents" not in request:
        raise missing("contents")
    transcript = Transcript()
    for i, content in enumerate(array(request["contents"], "contents")):
        transcript.add(content, i)
    messages = transcript.finish()
    if not messages:
        raise bad("contents holds nothing to send (only empty or thought parts)", "contents")
    if "systemInstruction" in request:
        system = system_message(request["systemInstruction"], "systemInstruction")
        messages = [system, *messages] if system else messages
    req: JSON = {"model": model, "messages": messages}
    tools = parse_tools(request["tools"]) if "tools" in request else []
    choice = None
    if "toolConfig" in request:
        choice, tools = tool_choice(request["toolConfig"], tools)
    if tools:
        req["tools"] = tools
    if choice is not None:
        req["tool_choice"] = choice
    if "generationConfig" in request:
        req.update(parse_generation_config(request["generationConfig"], stream=stream))
    _top_level(request, req)
    return req


def _top_level(request: JSON, req: JSON) -> None:
    if "providerOptions" in request:
        req["provider_options"] = request["providerOptions"]
    if "safetySettings" in request:
        array(request["safetySettings"], "safetySettings")
    if "cachedContent" in request:
        req["cached_content"] = string(request["cachedContent"], "cachedContent", empty=False)
    tier = text_of(request.get("serviceTier"), "serviceTier")
    if tier is not None and tier.lower() != "unspecified":
        if tier.lower() not in _SERVICE_TIERS:
            raise bad(
                f"serviceTier must be standard, flex or priority, got {tier!r}", "serviceTier", "unsupported_value"
            )
        req["service_tier"] = _SERVICE_TIERS[tier.lower()]


def parse_embed(body: JSON, model: str) -> JSON:
    """An ``EmbedContentRequest`` -> ``{"model", "input": str}`` (+ ``dimensions``)."""
    name = model_name(model, "model")
    text, dims = _embed_request(body, name, "")
    req: JSON = {"model": name, "input": text}
    if dims is not None:
        req["dimensions"] = dims
    return req


def parse_batch_embed(body: JSON, model: str) -> JSON:
    """``{"requests": [EmbedContentRequest...]}`` -> ``{"model", "input": [str...]}``.
    Every request must name the URL's model and ask for the same dimensions."""
    name = model_name(model, "model")
    request = fields(body, "", ("requests",))
    if "requests" not in request:
        raise missing("requests")
    items = array(request["requests"], "requests")
    if not items:
        raise bad("requests must hold at least one request", "requests")
    texts: list[str] = []
    dims: list[int | None] = []
    for i, item in enumerate(items):
        text, dim = _embed_request(item, name, at("requests", i))
        if i and dim != dims[0]:
            raise bad(
                "every request must ask for the same outputDimensionality", at("requests", i, "outputDimensionality")
            )
        texts.append(text)
        dims.append(dim)
    req: JSON = {"model": name, "input": texts}
    if dims[0] is not None:
        req["dimensions"] = dims[0]
    return req


def _embed_request(body: Any, model: str, param: str) -> tuple[str, int | None]:
    request = fields(body, param, _EMBED_FIELDS)
    if "model" in request and model_name(request["model"], at(param, "model")) != model:
        where = at(param, "model")
        raise bad(f"{where} is {request['model']!r}, but the URL names models/{model}", where)
    if "content" not in request:
        raise missing(at(param, "content"))
    where = at(param, "content")
    content = fields(request["content"], where, ("role", "parts"))
    texts: list[str] = []
    for j, raw in enumerate(array(content.get("parts", []), at(where, "parts"))):
        kind, text, _ = read_part(raw, at(where, "parts", j))
        if kind != "text":
            raise bad("only text can be embedded by another provider", at(where, "parts", j, kind), "unsupported_value")
        texts.append(text)
    if not "".join(texts):
        raise bad(f"{where} holds no text to embed", at(where, "parts"), "missing_required_parameter")
    text_of(request.get("taskType"), at(param, "taskType"))
    text_of(request.get("title"), at(param, "title"))
    dims = request.get("outputDimensionality")
    return "\n".join(texts), None if dims is None else integer(dims, at(param, "outputDimensionality"), 1)


# --- answers -------------------------------------------------------------------


def render_generate(completion: JSON, model: str) -> JSON:
    """A canonical ``chat.completion`` -> a ``GenerateContentResponse``."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise UpstreamBadResponse("the completion to render has no choices")
    body: JSON = {"candidates": [candidate(choice, i) for i, choice in enumerate(choices)]}
    meta = usage_metadata(completion.get("usage"))
    if meta is not None:
        body["usageMetadata"] = meta
    body["modelVersion"] = model
    if isinstance(completion.get("id"), str):
        body["responseId"] = completion["id"]
    return body


def render_embed(result: JSON) -> JSON:
    """A canonical embeddings list (one input) -> ``EmbedContentResponse``."""
    return {"embedding": {"values": _vectors(result)[0]}}


def render_batch_embed(result: JSON) -> JSON:
    """A canonical embeddings list -> ``BatchEmbedContentsResponse``."""
    return {"embeddings": [{"values": v} for v in _vectors(result)]}


def _vectors(result: JSON) -> list[list[float]]:
    data = result.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise UpstreamBadResponse("the embeddings to render have no data")
    ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
    return [_floats(d.get("embedding")) for d in ordered]


def _floats(embedding: Any) -> list[float]:
    if isinstance(embedding, str):  # base64 little-endian float32, as OpenAI sends it
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
    if isinstance(embedding, list) and all(isinstance(x, int | float) for x in embedding):
        return [float(x) for x in embedding]
    raise UpstreamBadResponse("an embedding to render is not a list of numbers")


def render_error(err: GatewayError) -> tuple[int, bytes]:
    """(HTTP status, body) of ``err`` in Google's error envelope."""
    return err.http_status, orjson.dumps(error_envelope(err))


def count_tokens_body(total: int, *, estimated: bool) -> JSON:
    """A ``CountTokensResponse``; ``"estimated": true`` marks a count the gateway
    guessed (an extension: the SDK ignores the field)."""
    body: JSON = {"totalTokens": total}
    if estimated:
        body["estimated"] = True
    return body


def model_card(alias: str, kind: str) -> JSON:
    """One alias as Gemini's ``Model`` (kind ``chat`` or ``embedding``)."""
    if kind not in ("chat", "embedding"):
        raise ValueError(f"unknown model kind {kind!r}")
    return {
        "name": f"models/{alias}",
        "baseModelId": alias,
        "version": "gateway",
        "displayName": alias,
        "description": f"{alias}, served by the gateway",
        "supportedGenerationMethods": list(CHAT_METHODS if kind == "chat" else EMBEDDING_METHODS),
    }


def model_list(models: list[tuple[str, str]]) -> JSON:
    """``GET /v1beta/models``: every (alias, kind) as a ``Model``."""
    return {"models": [model_card(alias, kind) for alias, kind in models]}
