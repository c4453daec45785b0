"""Same-format pass-through to an Anthropic upstream: a client's own Messages
body (model and deployment policy already applied by the server) sent as is,
with the client's ``anthropic-version`` and ``anthropic-beta`` forwarded."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.canonical import JSON
from gateway.providers.base import Target, WireRequest, auth_headers, join_url

DEFAULT_API_VERSION = "2023-06-01"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Client headers a same-format request forwards (the client's version and betas win)."""


def native_request(body: JSON, target: Target, *, stream: bool, headers: Mapping[str, str]) -> WireRequest:
    body = {**body, "model": target.model}
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return WireRequest("POST", join_url(target.base_url, "/messages"), _headers(target, headers), orjson.dumps(body))


def count_request(body: JSON, target: Target, headers: Mapping[str, str]) -> WireRequest:
    url = join_url(target.base_url, "/messages/count_tokens")
    return WireRequest("POST", url, _headers(target, headers), orjson.dumps({**body, "model": target.model}))


def _headers(target: Target, client: Mapping[str, str]) -> dict[str, str]:
    headers = auth_headers(target)
    headers.setdefault("anthropic-version", target.api_version or DEFAULT_API_VERSION)
    for name in FORWARDED_HEADERS:
        value = client.get(name)
        if value:
            headers[name] = value
    return headers
