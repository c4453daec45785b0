"""A deployment's credentials never leave through what its upstream says
(gateway/upstream/redact.py, used by gateway/server/service.py), and connection
tests report an error page by its status alone (gateway/health/runner.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import orjson
import pytest

from gateway.config.loader import parse_config
from gateway.errors import (
    AllDeploymentsFailed,
    AttemptFailure,
    UpstreamAddressRefused,
    UpstreamError,
    UpstreamErrorPage,
    UpstreamRedirect,
    UpstreamResponseTooLarge,
)
from gateway.health.runner import said
from gateway.providers.base import Target
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, build_routes
from gateway.routing.pacing import Pacer
from gateway.server.service import _error_from, upstream_failed
from gateway.upstream.redact import MASK, redact, redact_bytes, redact_error, secrets_of

KEY = "sk-proj-REDACTME-0123456789abcdef"
HEADER_TOKEN = "tok-HEADER-abcdef123456"


def test_secrets_of_a_target_cover_key_auth_value_credential_headers_and_url() -> None:
    target = Target(
        provider="openai_compatible",
        model="m",
        base_url="https://user:url-password-123@llm.internal/v1?api_key=query-secret-456&region=eu-west-1",
        api_key=KEY,
        auth_header="authorization",
        auth_scheme="Bearer",
        headers={"x-portkey-api-key": HEADER_TOKEN, "cf-aig-authorization": "Bearer cf-token-7890", "x-org": "acme"},
    )
    secrets = secrets_of(target)
    for secret in (KEY, f"Bearer {KEY}", HEADER_TOKEN, "cf-token-7890", "url-password-123", "query-secret-456"):
        assert secret in secrets
    assert "acme" not in secrets and "eu-west-1" not in secrets, "only credentials are searched for"
    assert list(secrets) == sorted(secrets, key=len, reverse=True)


def test_short_values_are_not_searched_for() -> None:
    assert secrets_of(Target(provider="openai", model="m", base_url="http://h/v1", api_key="k")) == ()


def test_redact_masks_every_occurrence() -> None:
    secrets = (f"Bearer {KEY}", KEY)
    text = f"bad key {KEY}; header was 'Bearer {KEY}' ({KEY})"
    assert redact(text, secrets) == f"bad key {MASK}; header was '{MASK}' ({MASK})"
    assert redact_bytes(text.encode(), secrets) == redact(text, secrets).encode()


def test_redact_error_covers_message_code_param_and_page_summary() -> None:
    err = UpstreamErrorPage(f"upstream said {KEY}", f"<p>{KEY}</p>", upstream_status=500)
    err.param = KEY
    err.code = f"code-{KEY}"
    redact_error(err, (KEY,))
    for text in (err.message, str(err), err.summary, err.param, err.code):
        assert KEY not in text and MASK in text


class Answer:
    """A finished upstream answer (the UpstreamResponse protocol, body in hand)."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status = status
        self.headers: Mapping[str, str] = {}
        self.content_type = content_type
        self._body = body

    async def read(self, timeout_s: float) -> bytes:
        return self._body

    def chunks(self, idle_s: float, deadline: float) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        return None


def deployment(provider: str = "openai") -> LiveDeployment:
    base = "http://127.0.0.1:9/v1beta" if provider == "gemini" else "http://127.0.0.1:9/v1"
    text = f"models:\n  m: {{deployments: [{{provider: {provider}, model: x, base_url: '{base}', api_key: {KEY}}}]}}\n"
    return build_routes(parse_config(text, env={}).settings, presets())["m"].deployments[0]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_an_error_quoting_the_key_is_masked_before_the_provider_reads_it(provider: str) -> None:
    dep = deployment(provider)
    envelope = {"error": {"type": "authentication_error", "message": f"Incorrect API key provided: {KEY}"}}
    err = await _error_from(dep, Answer(401, orjson.dumps(envelope)), deadline=1e12, pacer=Pacer())
    assert KEY not in err.message and MASK in err.message
    assert err.http_status == 502 and err.code == "upstream_deployment_error"


async def test_a_key_cut_by_the_excerpt_is_masked_whole_first() -> None:
    dep = deployment()
    page = b"<html>" + b"." * 180 + KEY.encode() + b"</html>"  # the 200-byte excerpt ends inside the key
    err = await _error_from(dep, Answer(503, page, "text/html"), deadline=1e12, pacer=Pacer())
    assert isinstance(err, UpstreamErrorPage)
    assert KEY[:8] not in err.message, "no part of the key survives the cut"
    assert err.summary == "upstream answered HTTP 503"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_502_naming_its_status(status: int) -> None:
    err = await _error_from(deployment(), Answer(status, b""), deadline=1e12, pacer=Pacer())
    assert isinstance(err, UpstreamRedirect)
    assert err.http_status == 502 and err.code == "upstream_redirect" and str(status) in err.message
    assert err.retryable is False and err.fallback is True


def test_upstream_failed_masks_and_counts_only_refusals() -> None:
    dep = deployment()
    counted: list[str] = []
    plain = UpstreamError(f"stream failed for Bearer {KEY}", upstream_status=502)
    upstream_failed(dep, plain, counted.append)
    assert KEY not in plain.message and counted == []
    for err in (
        UpstreamRedirect("redirect"),
        UpstreamResponseTooLarge("big", limit="max_sse_line_bytes"),
        UpstreamAddressRefused("refused"),
    ):
        upstream_failed(dep, err, counted.append)
    assert counted == ["redirect", "max_sse_line_bytes", "address"]


def test_connection_test_reasons_say_an_error_page_by_its_status_alone() -> None:
    page = UpstreamErrorPage("upstream answered HTTP 404", "<html>internal admin console</html>", upstream_status=404)
    assert said(page) == "upstream answered HTTP 404"
    envelope = UpstreamError("model not found", upstream_status=404)
    failed = AllDeploymentsFailed([AttemptFailure("m/0", page), AttemptFailure("m/1", envelope)])
    assert "internal admin console" in failed.message, "the client still gets the excerpt"
    assert said(failed) == "all 2 attempt(s) failed: m/0: upstream answered HTTP 404; m/1: model not found"
