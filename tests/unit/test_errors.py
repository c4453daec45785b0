"""gateway.errors: statuses, types, codes and the OpenAI error envelope."""

from __future__ import annotations

import pytest

from gateway.errors import (
    AllDeploymentsFailed,
    AttemptFailure,
    AuthenticationFailed,
    ContextWindowExceeded,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NoDeploymentAvailable,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


@pytest.mark.parametrize(
    ("cls", "status", "type_", "code"),
    [
        (GatewayError, 500, "internal_error", "internal_error"),
        (InvalidRequest, 400, "invalid_request_error", "invalid_request"),
        (ContextWindowExceeded, 400, "invalid_request_error", "context_length_exceeded"),
        (AuthenticationFailed, 401, "authentication_error", "invalid_api_key"),
        (PermissionDenied, 403, "permission_error", "permission_denied"),
        (NotFound, 404, "invalid_request_error", "not_found"),
        (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
        (RequestTooLarge, 413, "invalid_request_error", "request_too_large"),
        (RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
        (NoDeploymentAvailable, 503, "api_error", "no_deployment_available"),
    ],
)
def test_simple_classes(cls: type[GatewayError], status: int, type_: str, code: str) -> None:
    err = cls("something went wrong")
    assert isinstance(err, GatewayError)
    assert err.status == status
    assert err.http_status == status
    assert err.code == code
    assert err.param is None
    assert err.headers == {}
    assert str(err) == "something went wrong"
    assert err.to_body() == {"error": {"message": "something went wrong", "type": type_, "param": None, "code": code}}


def test_code_and_param_override() -> None:
    err = InvalidRequest("bad", code="invalid_type", param="messages[0].content")
    assert err.to_body() == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "messages[0].content",
            "code": "invalid_type",
        }
    }
    assert NotFound("no such model", code="model_not_found").code == "model_not_found"


def test_context_window_exceeded_is_an_invalid_request() -> None:
    assert issubclass(ContextWindowExceeded, InvalidRequest)
    assert ContextWindowExceeded("x").status == 400


def test_headers_are_copied() -> None:
    src = {"x-a": "1"}
    err = GatewayError("x", headers=src)
    err.headers["x-b"] = "2"
    assert src == {"x-a": "1"}


@pytest.mark.parametrize(("retry_after", "header"), [(30.0, "30"), (0.4, "1"), (1.6, "2"), (0.0, "1")])
def test_rate_limited_retry_after_header(retry_after: float, header: str) -> None:
    err = RateLimited("slow down", retry_after=retry_after)
    assert err.retry_after == retry_after
    assert err.headers == {"retry-after": header}
    assert err.http_status == 429


def test_rate_limited_without_retry_after() -> None:
    err = RateLimited("slow down")
    assert err.retry_after is None
    assert err.headers == {}


# --- UpstreamError --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "client"),
    [
        (400, 400),
        (401, 502),
        (403, 502),
        (404, 502),
        (408, 408),
        (409, 409),
        (413, 413),
        (422, 422),
        (429, 429),
        (500, 500),
        (502, 502),
        (503, 503),
        (504, 504),
        (520, 503),
        (524, 503),
        (529, 503),
        (599, 503),
        (200, 502),
        (302, 502),
    ],
)
def test_upstream_http_status_mapping(upstream: int, client: int) -> None:
    assert UpstreamError("x", upstream_status=upstream).http_status == client


@pytest.mark.parametrize(
    ("status", "retryable", "fallback"),
    [
        (400, False, False),
        (401, False, True),
        (403, False, True),
        (404, False, True),
        (408, True, True),
        (409, True, True),
        (413, False, False),
        (422, False, False),
        (425, True, True),
        (429, True, True),
        (500, True, True),
        (502, True, True),
        (503, True, True),
        (504, True, True),
        (520, True, True),
        (529, True, True),
    ],
)
def test_upstream_retryable_and_fallback(status: int, retryable: bool, fallback: bool) -> None:
    err = UpstreamError("x", upstream_status=status)
    assert err.retryable is retryable
    assert err.fallback is fallback
    assert err.is_client_error is (not fallback)


@pytest.mark.parametrize("status", [501, 505, 507])
def test_upstream_5xx_is_never_a_client_error(status: int) -> None:
    # Any upstream 5xx is the upstream's fault: another deployment is tried, though
    # the same one is not retried for those outside RETRYABLE_STATUSES.
    err = UpstreamError("x", upstream_status=status)
    assert err.http_status == (status if status <= 504 else 503)
    assert not err.retryable
    assert not err.is_client_error
    assert err.fallback


def test_upstream_overrides() -> None:
    err = UpstreamError("x", upstream_status=400, retryable=True)
    assert err.retryable and err.fallback
    err = UpstreamError("x", upstream_status=503, retryable=False, fallback=False)
    assert not err.retryable and not err.fallback
    assert err.is_client_error


def test_upstream_400_passes_through_as_client_error() -> None:
    err = UpstreamError("bad param", upstream_status=400, code="invalid_value", param="temperature",
                        error_type="invalid_request_error")  # fmt: skip
    assert err.http_status == 400
    assert err.is_client_error
    assert not err.retryable
    assert err.to_body() == {
        "error": {
            "message": "bad param",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }


@pytest.mark.parametrize("status", [401, 403, 404])
def test_upstream_deployment_fault_hides_upstream_code(status: int) -> None:
    err = UpstreamError("Incorrect API key", upstream_status=status, code="invalid_api_key",
                        error_type="invalid_request_error")  # fmt: skip
    assert err.code == "upstream_deployment_error"
    assert err.http_status == 502
    assert not err.is_client_error
    body = err.to_body()["error"]
    assert body["code"] == "upstream_deployment_error"
    assert body["type"] == "api_error"  # the upstream's type is not shown for a 5xx


def test_upstream_429_keeps_retry_after_header() -> None:
    err = UpstreamError("slow", upstream_status=429, retry_after=12.2, error_type="rate_limit_error")
    assert err.headers == {"retry-after": "12"}
    assert err.retry_after == 12.2
    assert err.http_status == 429
    assert err.to_body()["error"]["type"] == "rate_limit_error"


def test_upstream_retry_after_header_only_for_429() -> None:
    err = UpstreamError("busy", upstream_status=503, retry_after=5.0)
    assert err.retry_after == 5.0
    assert err.headers == {}


def test_upstream_429_small_retry_after_rounds_up_to_one() -> None:
    assert UpstreamError("x", upstream_status=429, retry_after=0.2).headers == {"retry-after": "1"}


@pytest.mark.parametrize(
    ("status", "type_"),
    [(400, "invalid_request_error"), (409, "conflict_error"), (422, "invalid_request_error"), (429, "rate_limit_error"),
     (408, "api_error"), (500, "api_error"), (503, "api_error"), (404, "api_error")],
)  # fmt: skip
def test_upstream_type_by_status_without_upstream_type(status: int, type_: str) -> None:
    assert UpstreamError("x", upstream_status=status).to_body()["error"]["type"] == type_


def test_upstream_type_kept_for_4xx_only() -> None:
    assert UpstreamError("x", upstream_status=429, error_type="tokens").to_body()["error"]["type"] == "tokens"
    assert UpstreamError("x", upstream_status=500, error_type="server_error").to_body()["error"]["type"] == "api_error"


def test_upstream_default_code() -> None:
    assert UpstreamError("x", upstream_status=500).code == "upstream_error"


def test_upstream_timeout() -> None:
    err = UpstreamTimeout("no answer in 30s")
    assert isinstance(err, UpstreamError)
    assert err.upstream_status == 504
    assert err.http_status == 504
    assert err.retryable and err.fallback
    assert err.code == "upstream_timeout"
    assert err.to_body()["error"] == {
        "message": "no answer in 30s",
        "type": "api_error",
        "param": None,
        "code": "upstream_timeout",
    }


def test_upstream_unavailable() -> None:
    err = UpstreamUnavailable("connection refused")
    assert err.upstream_status == 502
    assert err.http_status == 502
    assert err.retryable and err.fallback
    assert err.code == "upstream_connect_error"
    assert err.to_body()["error"]["type"] == "api_error"


def test_upstream_bad_response() -> None:
    err = UpstreamBadResponse("garbage")
    assert err.http_status == 502
    assert not err.retryable
    assert err.fallback
    assert not err.is_client_error
    assert err.code == "upstream_bad_response"
    assert UpstreamBadResponse("garbage", retryable=True).retryable


# --- AllDeploymentsFailed -----------------------------------------------------------------


def test_all_deployments_failed_body() -> None:
    failures = [
        AttemptFailure("a/0", UpstreamError("overloaded", upstream_status=503)),
        AttemptFailure("a/1", UpstreamTimeout("timed out")),
        AttemptFailure("b/0", UpstreamError("slow down", upstream_status=429, retry_after=3, error_type="tokens")),
    ]
    err = AllDeploymentsFailed(failures)
    assert err.failures == failures
    assert err.last is failures[-1].error
    assert err.http_status == 429
    assert err.code == "upstream_error"
    assert err.headers == {"retry-after": "3"}
    expected_message = "all 3 attempt(s) failed: a/0: overloaded; a/1: timed out; b/0: slow down"
    assert err.message == expected_message
    assert err.to_body() == {
        "error": {"message": expected_message, "type": "tokens", "param": None, "code": "upstream_error"}
    }


def test_all_deployments_failed_status_of_last_error() -> None:
    err = AllDeploymentsFailed(
        [
            AttemptFailure("a/0", UpstreamError("rate", upstream_status=429, retry_after=1)),
            AttemptFailure("a/1", UpstreamError("bad key", upstream_status=401, code="invalid_api_key")),
        ]
    )
    assert err.http_status == 502
    assert err.code == "upstream_deployment_error"
    assert err.headers == {}
    assert err.to_body()["error"]["type"] == "api_error"


def test_all_deployments_failed_with_invalid_request_last() -> None:
    err = AllDeploymentsFailed(
        [
            AttemptFailure("a/0", UpstreamUnavailable("refused")),
            AttemptFailure("b/0", InvalidRequest("cannot send audio", param="messages[0].content[1]")),
        ]
    )
    assert err.http_status == 400
    body = err.to_body()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "messages[0].content[1]"
    assert body["message"] == "all 2 attempt(s) failed: a/0: refused; b/0: cannot send audio"


def test_all_deployments_failed_to_body_does_not_mutate_last() -> None:
    last = UpstreamError("down", upstream_status=503)
    err = AllDeploymentsFailed(
        [AttemptFailure("x", UpstreamError("down", upstream_status=500)), AttemptFailure("y", last)]
    )
    err.to_body()
    assert last.to_body()["error"]["message"] == "down"
