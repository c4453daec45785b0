"""Fallback between aliases: the aliases to try once a prompt is too long for
one (its ``context_window_fallbacks``), and the reason an alias was left, as
recorded in :attr:`RequestTrace.fallbacks` (``x-gateway-fallback``, metrics).
"""

from __future__ import annotations

from gateway.errors import (
    ContextWindowExceeded,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.routing.attempt import RequestTrace
from gateway.routing.deployment import Route


def context_chain(route: Route, trace: RequestTrace, reason: str, switched: set[str]) -> list[str]:
    """The aliases to try once a prompt is too long for ``route``; aliases
    already found too small (``switched``) are not tried again."""
    switched.add(route.alias)
    chain = [a for a in route.spec.context_window_fallbacks if a not in switched]
    if not chain:
        if trace.failures:
            raise trace.failures[-1].error
        raise ContextWindowExceeded(
            f"the prompt exceeds the context window of {route.alias!r} and it has no larger fallback",
            param="messages",
        )
    trace.fallbacks.append((route.alias, chain[0], reason))
    return chain


def leave_reason(trace: RequestTrace) -> str:
    """Why an alias was left: a bounded label value, never an upstream's own error text
    (an upstream's error code is whatever its body said)."""
    if not trace.failures:
        return "unavailable"
    err = trace.failures[-1].error
    if isinstance(err, (UpstreamTimeout, UpstreamUnavailable, UpstreamBadResponse)):
        return err.default_code
    if isinstance(err, UpstreamError):
        return f"http_{err.upstream_status}"
    return err.default_code
