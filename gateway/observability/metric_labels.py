"""What the metrics' bounded labels may hold: the fixed sets of label values (so that their
counters start with every series at zero) and the functions that map an error or a route onto
a label value. The metrics themselves are declared in metrics.py."""

from __future__ import annotations

from gateway.errors import (
    AllDeploymentsFailed,
    GatewayError,
    UpstreamAddressRefused,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

BREAKER_STATES = ("closed", "half_open", "open")
# Counters whose label values are a fixed set start with every series at zero, so that rate()
# and increase() count their first event too (a series born at 1 shows no increase).
CACHE_RESULTS = ("hit", "miss", "refresh", "off")
RELOAD_RESULTS = ("applied", "rejected")
# Requests refused for their size or shape before they were read or parsed (docs/security.md,
# "Request limits"): body, JSON depth (any route), head size, header count, head timeout (server).
REQUEST_REFUSALS = ("request_too_large", "json_too_deep", "headers_too_large", "too_many_headers", "header_timeout")
# /admin/login: checked and right (success, or refused after: totp_required, disabled), checked and
# wrong (invalid), or refused unchecked, with no place left in the lock-out window (locked).
LOGIN_OUTCOMES = ("success", "invalid", "locked", "totp_required", "disabled")
METRICS_REFUSALS = ("missing_metrics_token", "invalid_metrics_token")
# Upstream answers refused (gateway/upstream/http.py, providers/sse.py): a redirect, a cap
# passed (named by its upstream.* key), or an address on a refused network.
UPSTREAM_REFUSALS = (
    "redirect",
    "max_response_bytes",
    "max_decompressed_bytes",
    "max_decompression_ratio",
    "max_sse_line_bytes",
    "max_sse_event_bytes",
    "max_header_bytes",
    "max_headers",
    "address",
)
# gen_ai.provider.name values of the conventions, by provider kind.
GENAI_PROVIDER = {"gemini": "gcp.gemini"}


def error_type(err: GatewayError | None) -> str:
    """A bounded error label: the gateway's own codes, never an upstream's free text."""
    if err is None:
        return ""
    if isinstance(err, AllDeploymentsFailed):
        err = err.last
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamUnavailable):
        return "connect_error"
    if isinstance(err, UpstreamAddressRefused):
        return "address_refused"
    if isinstance(err, UpstreamBadResponse):
        return "bad_response"
    if isinstance(err, UpstreamError):
        return f"http_{err.upstream_status}"
    return err.code


EMBEDDING_ROUTES = frozenset({"embeddings", "gemini_embed"})


def operation_of(route: str) -> str:
    """The GenAI operation of a client route (fixed labels): ``embeddings`` or ``chat``."""
    return "embeddings" if route in EMBEDDING_ROUTES else "chat"
