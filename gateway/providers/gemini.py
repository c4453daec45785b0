"""Google Gemini (``generateContent`` / ``streamGenerateContent`` / ``batchEmbedContents``).

Requests (canonical OpenAI chat -> Gemini) are translated in
:mod:`gateway.providers.gemini_request`; answers, streams and errors (Gemini ->
canonical) in :mod:`gateway.providers.gemini_stream`. This module is the
:class:`~gateway.providers.base.Provider` over the two, and the embeddings.

Responses: text parts joined, thought parts (``thought: true``) joined apart into
``reasoning_content``, calls -> ``tool_calls``, ``logprobsResult`` -> ``logprobs``; every
candidate becomes a choice (``n``) but streams carry candidate 0 only.

Embeddings: Gemini reports no token counts for embeddings, so ``usage`` is an
estimate: ceil(total input characters / 4). ``encoding_format: "base64"`` gets
the floats packed as little-endian float32 in base64, as OpenAI sends them.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.canonical import JSON, WIRE_GEMINI
from gateway.errors import InvalidRequest, UpstreamBadResponse, UpstreamError
from gateway.providers.base import Target, WireRequest, auth_headers, join_url
from gateway.providers.gemini_request import generate_body, model_path
from gateway.providers.gemini_stream import GeminiStreamDecoder, completion_from_response, gemini_error


class GeminiProvider:
    kind = "gemini"
    wire = WIRE_GEMINI

    def native_request(self, body: JSON, target: Target, *, stream: bool, headers: Mapping[str, str]) -> WireRequest:
        action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        url = join_url(target.base_url, f"/{model_path(target.model)}{action}")
        return WireRequest("POST", url, auth_headers(target), orjson.dumps(body))

    def count_request(self, body: JSON, target: Target, headers: Mapping[str, str]) -> WireRequest:
        model = model_path(target.model)
        inner = body.get("generateContentRequest")
        if isinstance(inner, dict):
            body = {**body, "generateContentRequest": {**inner, "model": model}}
        url = join_url(target.base_url, f"/{model}:countTokens")
        return WireRequest("POST", url, auth_headers(target), orjson.dumps(body))

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        params = {k: v for k, v in req.items() if k not in target.drop_params and v is not None}
        body = generate_body(params, target.model, target.reasoning_style)
        action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        url = join_url(target.base_url, f"/{model_path(target.model)}{action}")
        return WireRequest("POST", url, auth_headers(target), orjson.dumps(body))

    def chat_response(self, body: JSON, target: Target) -> JSON:
        return completion_from_response(body, target.model)

    def stream_decoder(self, target: Target) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(target.model)

    def embed_request(self, req: JSON, target: Target) -> WireRequest:
        texts = _embed_texts(req.get("input"))
        model = model_path(target.model)
        dims = None if "dimensions" in target.drop_params else req.get("dimensions")
        extra: JSON = {"outputDimensionality": dims} if dims is not None else {}
        requests = [{"model": model, "content": {"parts": [{"text": t}]}, **extra} for t in texts]
        url = join_url(target.base_url, f"/{model}:batchEmbedContents")
        return WireRequest("POST", url, auth_headers(target), orjson.dumps({"requests": requests}))

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        embeddings = body.get("embeddings")
        if not isinstance(embeddings, list) or not all(
            isinstance(e, dict) and isinstance(e.get("values"), list) for e in embeddings
        ):
            raise UpstreamBadResponse("gemini embeddings response has no embeddings[].values")
        if len(embeddings) != len(_texts_of(req.get("input"))):
            raise UpstreamBadResponse("gemini returned a different number of embeddings than inputs")
        as_base64 = req.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _embedding(e["values"], as_base64)}
            for i, e in enumerate(embeddings)
        ]
        tokens = -(-sum(len(t) for t in _texts_of(req.get("input"))) // 4)
        return {
            "object": "list",
            "data": data,
            "model": req.get("model", target.model),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return gemini_error(status, headers, body)


# --- embeddings ----------------------------------------------------------------


def _embed_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise InvalidRequest(
        "Gemini embeddings take a string or a list of strings (token arrays are not supported)",
        param="input",
    )


def _texts_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _embedding(values: list[Any], as_base64: bool) -> list[float] | str:
    floats = [float(v) for v in values]
    if not as_base64:
        return floats
    return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
