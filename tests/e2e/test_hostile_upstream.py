"""Upstream answers are untrusted input (docs/security.md, "Upstreams"): a real
``gateway serve`` against the hostile upstream of tests/e2e/chaos.py on loopback.

- a redirect is a 502 naming the status, and the redirect's target never hears of
  the request (nor of the deployment's key);
- three concurrent 200 MB answers and three concurrent gzip bombs (1 MB -> 1 GiB)
  are cut at the caps: the gateway's peak resident memory (``VmHWM``) grows by far
  less than one answer;
- an event-stream line that never ends is cut at ``max_sse_line_bytes``, not at
  the deadline;
- an upstream quoting the credentials it received (error body, error page, stream
  error event) never gets them to the client, the connection-test reasons or the logs;
- a link-local, metadata or (when denied) loopback upstream is refused at connect
  time with ``upstream_address_refused``, also when its name only resolves to one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.chaos import HUGE_BYTES, PAGE_MARKER, ChaosUpstream
from tests.e2e.harness import GatewayProcess, wait_until

MiB = 1024 * 1024
OPENAI_KEY = "sk-chaos-openai-SECRET-0123456789"
ANTHROPIC_KEY = "sk-ant-chaos-SECRET-9876543210"
CUSTOM_KEY = "custom-chaos-SECRET-5555555555"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, CUSTOM_KEY)
HELLO = [{"role": "user", "content": "hello"}]
SSE_LINE_CAP = MiB
"""The config's own line cap (the other caps keep their defaults): the error names it."""
RSS_GROWTH_BOUND = 160 * MiB
"""Three 200 MB answers (600 MB) at once may grow the gateway by less than this."""


def config(url: str) -> str:
    v1 = f"{url}/v1"

    def oa(model: str) -> str:
        return f"{{deployments: [{{provider: openai, model: {model}, base_url: '{v1}', api_key: {OPENAI_KEY}}}]}}"

    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
upstream: {{max_sse_line_bytes: {SSE_LINE_CAP}}}
router:
  timeouts: {{connect_s: 2, first_byte_s: 60, idle_s: 60, total_s: 120}}
  retry: {{max_retries: 0}}
  breaker: {{consecutive_failures: 1000, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 1}}
models:
  redirect: {oa("redirect")}
  huge: {oa("huge")}
  bomb: {oa("bomb")}
  endless-line: {oa("endless-line")}
  echo-key: {oa("echo-key")}
  echo-page: {oa("echo-page")}
  echo-stream: {oa("echo-stream")}
  echo-key-anthropic:
    deployments: [{{provider: anthropic, model: echo-key, base_url: '{v1}', api_key: {ANTHROPIC_KEY}}}]
  echo-key-custom:
    deployments:
      - {{provider: openai_compatible, model: echo-key, base_url: '{v1}', api_key: {CUSTOM_KEY},
          auth_header: x-custom-auth, auth_scheme: ''}}
  fine: {oa("fine")}
  metadata:
    deployments: [{{provider: openai, model: m, base_url: 'http://169.254.169.254/v1', api_key: {OPENAI_KEY}}}]
  metadata-mapped:
    deployments: [{{provider: openai, model: m, base_url: 'http://[::ffff:169.254.169.254]/v1', api_key: k}}]
  metadata-name:
    deployments: [{{provider: openai, model: m, base_url: 'http://metadata.google.internal/v1', api_key: k}}]
"""


@pytest.fixture(scope="module")
def chaos() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gw(chaos: ChaosUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(config(chaos.url), Path(tmp_path_factory.mktemp("hostile")))
    yield gateway
    gateway.stop()


@pytest.fixture
def fresh(chaos: ChaosUpstream, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of its own, so that its peak memory is this test's alone."""
    gateway = GatewayProcess(config(chaos.url), tmp_path)
    yield gateway
    gateway.stop()


def chat(gw: GatewayProcess, model: str, *, stream: bool = False, timeout: float = 60) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": HELLO, "stream": stream}
    return gw.http.post("/v1/chat/completions", json=body, timeout=timeout)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    err = resp.json()["error"]
    assert isinstance(err, dict)
    return err


def vm_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field (``VmHWM``: peak resident set), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def refusals(gw: GatewayProcess, reason: str) -> float:
    text = gw.http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f'gateway_upstream_refusals_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no gateway_upstream_refusals_total series for {reason}")


# --- redirects --------------------------------------------------------------------------


def test_a_redirect_is_a_502_naming_the_status_and_is_never_followed(gw: GatewayProcess, chaos: ChaosUpstream) -> None:
    before = refusals(gw, "redirect")
    resp = chat(gw, "redirect")
    assert resp.status_code == 502, resp.text
    err = error_of(resp)
    assert err["code"] == "upstream_redirect"
    assert "302" in err["message"] and "never followed" in err["message"]
    assert chaos.received("redirect"), "the upstream itself was asked"
    assert chaos.witnessed == [], "the redirect's target got a request (and the deployment's key)"
    assert refusals(gw, "redirect") == before + 1


def test_a_streamed_request_is_not_redirected_either(gw: GatewayProcess, chaos: ChaosUpstream) -> None:
    resp = chat(gw, "redirect", stream=True)
    assert resp.status_code == 502 and error_of(resp)["code"] == "upstream_redirect"
    assert chaos.witnessed == []


# --- sizes --------------------------------------------------------------------------------


def _concurrently(gw: GatewayProcess, model: str, n: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: chat(gw, model, timeout=120), range(n)))


@pytest.mark.parametrize(
    ("model", "cap", "label"),
    [
        ("huge", "upstream.max_response_bytes", f"huge x3, {HUGE_BYTES // MiB} MB each"),
        ("bomb", "upstream.max_decompression_ratio", "gzip bomb x3, 1 MB -> 1 GiB each"),
    ],
    ids=["huge-answers", "gzip-bombs"],
)
def test_three_concurrent_oversized_answers_are_cut_and_memory_stays_bounded(
    fresh: GatewayProcess, capsys: Any, model: str, cap: str, label: str
) -> None:
    gw = fresh
    assert chat(gw, "fine").status_code == 200
    baseline = vm_kib(gw.proc.pid, "VmHWM")
    answers = _concurrently(gw, model, 3)
    peak = vm_kib(gw.proc.pid, "VmHWM")
    for resp in answers:
        assert resp.status_code == 502, resp.text[:300]
        err = error_of(resp)
        assert err["code"] == "upstream_response_too_large"
        assert cap in err["message"]
    growth = (peak - baseline) * 1024
    with capsys.disabled():
        print(f"\n[{label}] VmHWM {baseline // 1024} MiB -> {peak // 1024} MiB")
    assert growth < RSS_GROWTH_BOUND, f"peak RSS grew {growth // MiB} MiB"
    assert chat(gw, "fine").status_code == 200, "the gateway serves on"


def test_an_endless_event_stream_line_is_cut_at_the_line_cap(gw: GatewayProcess) -> None:
    before = refusals(gw, "max_sse_line_bytes")
    resp = chat(gw, "endless-line", stream=True)
    assert resp.status_code == 502, resp.text[:300]
    err = error_of(resp)
    # the deadlines are a minute and more: the line cap ended it, not a timeout
    assert err["code"] == "upstream_response_too_large", err
    assert f"upstream.max_sse_line_bytes ({SSE_LINE_CAP})" in err["message"], "the config's cap, not the default"
    assert refusals(gw, "max_sse_line_bytes") == before + 1


# --- credentials quoted by an upstream ----------------------------------------------------


@pytest.mark.parametrize("alias", ["echo-key", "echo-key-anthropic", "echo-key-custom"])
def test_an_upstream_quoting_the_key_never_gets_it_to_the_client(
    gw: GatewayProcess, chaos: ChaosUpstream, alias: str
) -> None:
    resp = chat(gw, alias)
    assert resp.status_code == 502, resp.text
    err = error_of(resp)
    assert err["code"] == "upstream_deployment_error"
    assert "[redacted]" in err["message"], "the upstream did quote a credential"
    for key in KEYS:
        assert key not in resp.text
    assert chaos.received("echo-key"), "the upstream was asked"


def test_an_error_page_quoting_the_key_is_masked_too(gw: GatewayProcess) -> None:
    resp = chat(gw, "echo-page")
    assert resp.status_code == 500, resp.text
    assert "[redacted]" in error_of(resp)["message"]
    assert OPENAI_KEY not in resp.text


def test_a_stream_error_event_quoting_the_key_is_masked(gw: GatewayProcess) -> None:
    with gw.http.stream(
        "POST", "/v1/chat/completions", json={"model": "echo-stream", "messages": HELLO, "stream": True}
    ) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    assert "first" in text and "[redacted]" in text, text
    assert OPENAI_KEY not in text


def test_connection_tests_echo_no_body_and_no_key(gw: GatewayProcess) -> None:
    for alias in ("echo-page", "echo-key", "echo-key-custom"):
        for params in ({}, {"deployment": f"{alias}/0"}):  # through the router, and the deployment itself
            body = gw.http.post(f"/admin/models/{alias}/test", params=params).json()
            assert len(body["tests"]) == 4, body
            for test in body["tests"]:
                assert test["passed"] is False
                reason = test["reason"]
                assert PAGE_MARKER not in reason and "<html>" not in reason, reason
                for key in KEYS:
                    assert key not in reason
    for params in ({}, {"deployment": "echo-page/0"}):
        page = gw.http.post("/admin/models/echo-page/test", params=params).json()
        assert page["tests"][0]["reason"] == "upstream_error: upstream answered HTTP 500", page


def test_the_logs_never_hold_a_key(gw: GatewayProcess) -> None:
    for alias in ("echo-key", "echo-key-anthropic", "echo-key-custom", "echo-page"):
        chat(gw, alias)
    with gw.http.stream(
        "POST", "/v1/chat/completions", json={"model": "echo-stream", "messages": HELLO, "stream": True}
    ) as resp:
        resp.read()
    assert wait_until(lambda: "broke after its first byte" in gw.log(), timeout=10), "the broken stream was logged"
    time.sleep(0.3)  # the access lines are written at most 0.1 s late
    log = gw.log()
    for key in KEYS:
        assert key not in log


# --- private networks ---------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["metadata", "metadata-mapped", "metadata-name"])
def test_a_metadata_upstream_is_refused_at_connect_time(gw: GatewayProcess, alias: str) -> None:
    resp = chat(gw, alias)
    assert resp.status_code == 502, resp.text
    err = error_of(resp)
    assert err["code"] == "upstream_address_refused"
    assert "upstream.allow_link_local" in err["message"]


def test_the_admin_api_refuses_a_metadata_upstream_early(gw: GatewayProcess) -> None:
    spec = {"deployments": [{"provider": "openai", "model": "m", "base_url": "http://169.254.169.254/v1"}]}
    resp = gw.http.post("/admin/models", json={"name": "sneaky", **spec})
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["code"] == "upstream_address_refused"
    assert err["param"] == "deployments[0].base_url"
    assert "169.254" not in err["message"], "the message names the field, not the value"
    assert gw.http.get("/admin/models/sneaky").status_code == 404


def _loopback_name() -> str | None:
    """A host name of this machine that resolves to a loopback address (not ``localhost``,
    which is refused by name): the address check then happens on the lookup's answer."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return name if name != "localhost" and all(str(i[4][0]).startswith("127.") for i in infos) else None


def test_loopback_upstreams_are_refused_when_private_networks_are_denied(chaos: ChaosUpstream, tmp_path: Path) -> None:
    port = chaos.url.rsplit(":", 1)[1]
    name = _loopback_name()
    text = config(chaos.url).replace("upstream: {", "upstream: {allow_private: false, ", 1)
    text += f"""  by-name:
    deployments: [{{provider: openai, model: fine, base_url: 'http://localhost:{port}/v1', api_key: k}}]
"""
    if name is not None:
        text += f"""  by-lookup:
    deployments: [{{provider: openai, model: fine, base_url: 'http://{name}:{port}/v1', api_key: k}}]
"""
    asked = len(chaos.received("fine"))
    gateway = GatewayProcess(text, tmp_path)
    try:
        for alias in ["fine", "by-name"] + (["by-lookup"] if name else []):
            resp = chat(gateway, alias)
            assert resp.status_code == 502, resp.text
            err = error_of(resp)
            assert err["code"] == "upstream_address_refused", err
            assert "upstream.allow_private" in err["message"]
    finally:
        gateway.stop()
    assert len(chaos.received("fine")) == asked, "a refused upstream was sent the request"
