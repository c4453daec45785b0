"""The gateway's one exception tree.

Every error that can reach a client is a :class:`GatewayError`. It knows its HTTP
status, the OpenAI error ``type`` and a stable ``code``, so rendering it in any
ingress dialect is mechanical and nothing escapes as a bare 500::

    GatewayError                      (500 internal_error)
    ├── InvalidRequest                (400 invalid_request_error / <code>)
    │   ├── Untranslatable            (400 unsupported_value: only to another wire format)
    │   └── ContextWindowExceeded     (400 context_length_exceeded)
    ├── AuthenticationFailed          (401 authentication_error)
    ├── PermissionDenied              (403 permission_error)
    ├── NotFound                      (404 not_found / model_not_found)
    ├── MethodNotAllowed              (405 method_not_allowed)
    ├── RequestTooLarge               (413 request_too_large)
    ├── ClientDisconnected            (499 client_disconnected: recorded, never answered)
    ├── RateLimited                   (429 rate_limit_exceeded, Retry-After)
    ├── BudgetExceeded                (429 insufficient_quota, Retry-After: period end)
    ├── BackendDegraded               (503 state_backend_unavailable: a fail-closed policy)
    ├── UpstreamError                 (status mapped from the upstream's answer)
    │   ├── UpstreamTimeout           (504 upstream_timeout)
    │   ├── UpstreamUnavailable       (502 upstream_connect_error)
    │   ├── UpstreamAddressRefused    (502 upstream_address_refused: a network the config refuses)
    │   ├── UpstreamErrorPage         (the upstream's status; an error answer with no error envelope)
    │   └── UpstreamBadResponse       (502 upstream_bad_response)
    │       ├── UpstreamRedirect      (502 upstream_redirect: a 3xx, never followed)
    │       └── UpstreamResponseTooLarge (502 upstream_response_too_large: over a cap)
    ├── NoDeploymentAvailable         (503 no_deployment_available, Retry-After)
    └── AllDeploymentsFailed          (status of the last attempt's error)

Upstream errors carry ``retryable`` (connect errors, timeouts, 408, 409, 429,
5xx, Anthropic 529) which is what the router uses to decide between retrying,
falling back, and giving the client's own mistake straight back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def http_status(self) -> int:
        return self.status

    def to_body(self) -> dict[str, Any]:
        """OpenAI's error envelope: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class Untranslatable(InvalidRequest):
    """A client's field that exists in its dialect but cannot be carried to another
    wire format (a server tool, a file reference): refused only when the request is
    not going to a deployment of the client's own format (same-format pass-through)."""

    default_code = "unsupported_value"


class ContextWindowExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class ClientDisconnected(GatewayError):
    """The client went away before its request body was whole (an ASGI ``http.disconnect``
    while it was read). Nobody is left to answer: the request is recorded as 499, as one
    whose client leaves later is (gateway/server/exchange.py ``Guard``)."""

    status = 499
    type = "invalid_request_error"
    default_code = "client_disconnected"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(1, round(retry_after))))


class BudgetExceeded(RateLimited):
    """A key's, team's or the gateway's budget for the period is spent."""

    type = "insufficient_quota"
    default_code = "insufficient_quota"


class BackendDegraded(GatewayError):
    """The state backend is unreachable and the policy is configured fail-closed (or an admin
    write: the admin API is read-only meanwhile). ``Retry-After`` says when to try again."""

    status = 503
    type = "api_error"
    default_code = "state_backend_unavailable"
    RETRY_AFTER_S = 5

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("retry-after", str(self.RETRY_AFTER_S))


class Starting(GatewayError):
    """The gateway is still starting (its lifespan has not finished): try again in a moment."""

    status = 503
    type = "api_error"
    default_code = "starting"

    def __init__(self, message: str = "the gateway is still starting; try again in a moment") -> None:
        super().__init__(message, headers={"retry-after": "1"})


# Status codes of an upstream answer on which another attempt may succeed.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

_OPENAI_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


# An upstream's 401/403/404 means *our* deployment is misconfigured (bad key, no
# access, wrong model name): another deployment may work, and the client must
# not be told its own key is wrong.
DEPLOYMENT_FAULT_STATUSES = frozenset({401, 403, 404})


class UpstreamError(GatewayError):
    """An upstream answered with an error, or could not be used at all.

    ``upstream_status`` is what the upstream said; ``http_status`` is what the
    client gets: 4xx passed through, except 401/403/404 (a deployment fault,
    502) and 5xx passed through, except 529 and other non-standard ones (503).
    ``retryable``: the same deployment may succeed if asked again.
    ``fallback``: another deployment may succeed (always true when retryable).
    """

    default_code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        retryable: bool | None = None,
        fallback: bool | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.retryable = upstream_status in RETRYABLE_STATUSES if retryable is None else retryable
        if fallback is None:
            fallback = self.retryable or upstream_status in DEPLOYMENT_FAULT_STATUSES or upstream_status >= 500
        self.fallback = fallback
        self.retry_after = retry_after
        self._type = error_type
        if upstream_status in DEPLOYMENT_FAULT_STATUSES:
            # The upstream's own code ("invalid_api_key") would mislead the client.
            self.code = "upstream_deployment_error"
        if retry_after is not None and upstream_status == 429:
            self.headers.setdefault("retry-after", str(max(1, round(retry_after))))

    @property
    def http_status(self) -> int:
        s = self.upstream_status
        if s in DEPLOYMENT_FAULT_STATUSES:
            return 502
        if s == 529 or s > 504:
            return 503
        if 400 <= s <= 504:
            return s
        return 502

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        status = self.http_status
        body["error"]["type"] = (
            self._type if self._type and status < 500 else _OPENAI_TYPE_BY_STATUS.get(status, "api_error")
        )
        return body

    @property
    def is_client_error(self) -> bool:
        """The client's own mistake: retrying or falling back would not help."""
        return not self.fallback


class UpstreamTimeout(UpstreamError):
    default_code = "upstream_timeout"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, upstream_status=504, retryable=True, error_type="timeout_error", **kw)


class UpstreamUnavailable(UpstreamError):
    default_code = "upstream_connect_error"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, upstream_status=502, retryable=True, error_type="api_error", **kw)


class UpstreamBadResponse(UpstreamError):
    """The upstream answered something that is not its protocol (garbage JSON,
    wrong content type, a stream cut short). Not retried on the same deployment
    by default (garbage tends to repeat) but another deployment is tried."""

    default_code = "upstream_bad_response"

    def __init__(self, message: str, *, retryable: bool = False, **kw: Any) -> None:
        super().__init__(message, upstream_status=502, retryable=retryable, fallback=True, error_type="api_error", **kw)


class UpstreamRedirect(UpstreamBadResponse):
    """The upstream answered a redirect. Redirects are never followed: the request
    (its prompt and the deployment's credentials) would go to another origin."""

    default_code = "upstream_redirect"
    reason: ClassVar[str] = "redirect"


class UpstreamResponseTooLarge(UpstreamBadResponse):
    """An upstream answer passed one of the ``upstream`` caps; ``limit`` names it
    (``max_response_bytes``, ``max_sse_line_bytes``, ...) and labels the metric."""

    default_code = "upstream_response_too_large"

    def __init__(self, message: str, *, limit: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = limit


class UpstreamAddressRefused(UpstreamError):
    """The upstream's address is on a network the config refuses (link-local and
    cloud metadata by default; private ones when ``upstream.allow_private`` is off).
    Not retried on the deployment: the address will not change by asking again."""

    default_code = "upstream_address_refused"
    reason: ClassVar[str] = "address"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, upstream_status=502, retryable=False, fallback=True, error_type="api_error", **kw)


class UpstreamErrorPage(UpstreamError):
    """An error answer without a recognisable error envelope (a proxy's HTML page):
    ``summary`` is what the upstream said without its body; the message adds an
    excerpt of the body for operators. Connection tests report only the summary."""

    def __init__(self, summary: str, excerpt: str, **kw: Any) -> None:
        super().__init__(summary + (f": {excerpt}" if excerpt else ""), **kw)
        self.summary = summary


class NoDeploymentAvailable(GatewayError):
    """Nothing could be tried: every deployment's breaker open, at its cap, over its own
    limits or paced by its upstream. ``retry_after`` (seconds, rounded up) becomes
    ``Retry-After``."""

    status = 503
    type = "api_error"
    default_code = "no_deployment_available"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None and math.isfinite(retry_after):
            self.headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))


@dataclass(frozen=True)
class AttemptFailure:
    deployment: str
    error: GatewayError


class AllDeploymentsFailed(GatewayError):
    """Every attempt of every deployment (and fallback alias) failed.

    The client sees the last error's status and code, and a message listing
    each attempt so an operator can read the whole story from one response.
    """

    def __init__(self, failures: Sequence[AttemptFailure]) -> None:
        last = failures[-1].error
        story = "; ".join(f"{f.deployment}: {f.error.message}" for f in failures)
        super().__init__(f"all {len(failures)} attempt(s) failed: {story}", code=last.code, headers=last.headers)
        self.failures = list(failures)
        self.last = last

    @property
    def http_status(self) -> int:
        return self.last.http_status

    def to_body(self) -> dict[str, Any]:
        body = self.last.to_body()
        body["error"]["message"] = self.message
        return body
