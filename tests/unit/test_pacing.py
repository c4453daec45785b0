"""gateway.routing.pacing: upstream rate-limit signals -> a pause of the deployment.

No recorded answer in ``shared/fixtures`` keeps its rate-limit headers (the cassettes
drop them); the header values below follow the providers' documented formats (OpenAI
durations such as ``6m0s``, Anthropic RFC 3339 times, Retry-After as in the OpenAI spec's
``TooManyRequests`` response). The error bodies are the recorded ones.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime

import pytest

from gateway.config.loader import parse_config
from gateway.config.pacing import PacingSettings
from gateway.errors import GatewayError
from gateway.observability.metrics import Metrics
from gateway.observability.router_observer import RouterObserver
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, build_routes
from gateway.routing.pacing import (
    RATELIMIT_HEADERS,
    RETRY_AFTER,
    Pacer,
    is_spent,
    parse_duration,
    parse_retry_after,
    parse_time,
    spent_reset,
)
from tests.unit.fixtures import load_json

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


class Seen:
    """An observer recording pacing events (attempts are not the subject here)."""

    def __init__(self) -> None:
        self.began: list[tuple[str, float, str]] = []
        self.ended: list[str] = []

    def attempt(
        self,
        dep: LiveDeployment,
        seconds: float,
        error: GatewayError | None,
        retry: bool,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        raise AssertionError("no attempt is made here")

    def paced(self, dep: LiveDeployment, seconds: float, source: str) -> None:
        self.began.append((dep.id, seconds, source))

    def pacing_ended(self, dep: LiveDeployment) -> None:
        self.ended.append(dep.id)


def deployment(provider: str = "openai") -> LiveDeployment:
    extra = ", base_url: 'http://127.0.0.1:9/v1'" if provider == "openai_compatible" else ""
    text = f"models:\n  a: {{deployments: [{{provider: {provider}, model: m, api_key: k{extra}}}]}}\n"
    return build_routes(parse_config(text, env={}).settings, presets())["a"].deployments[0]


def left(dep: LiveDeployment) -> float:
    return dep.paced_until - time.monotonic()


# --- header values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("1h30m", 5400.0),
        ("500us", 0.0005),
        ("0s", 0.0),
        ("2.5", 2.5),
        (" 7s ", 7.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "1x", "1s2", "-1s", "-3", "nan", "inf", "1 s", "m1s"])
def test_bad_durations_are_none(text: str) -> None:
    assert parse_duration(text) is None


def test_rfc3339_times() -> None:
    assert parse_time("2026-01-01T00:00:05Z", NEW_YEAR) == pytest.approx(5.0)
    assert parse_time("2026-01-01T00:00:01.5+00:00", NEW_YEAR) == pytest.approx(1.5)
    assert parse_time("2026-01-01T01:00:10+01:00", NEW_YEAR) == pytest.approx(10.0)
    assert parse_time("2026-01-01T00:00:07", NEW_YEAR) == pytest.approx(7.0), "no offset: UTC"
    assert parse_time("2025-12-31T23:59:00Z", NEW_YEAR) == 0.0, "a time past is no wait"
    assert parse_time("soon", NEW_YEAR) is None
    assert parse_time("", NEW_YEAR) is None


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5, "ms first"
    assert parse_retry_after({"retry-after-ms": "later", "retry-after": "9"}) == 9.0
    date = {"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}
    assert parse_retry_after(date, now=NEW_YEAR) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 00:00:30 -0000"}, now=NEW_YEAR) == pytest.approx(30.0)
    assert parse_retry_after(date, now=NEW_YEAR + 60) == 0.0
    assert parse_retry_after({"retry-after": "-4"}) == 0.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-inf", "Thu, 99 Jan 2026 00:00:30 GMT", ""])
def test_bad_retry_after_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value}) is None


def test_spent_counts() -> None:
    assert is_spent("0") and is_spent("0.0") and is_spent(" 0")
    assert not any(is_spent(v) for v in ("1", "4999", "0.5", "-1", "none", ""))


def test_spent_reset_per_family() -> None:
    openai = {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert spent_reset("openai", openai) == 360.0, "the latest reset of the spent budgets"
    assert spent_reset("openai_compatible", {**openai, "x-ratelimit-remaining-tokens": "159976"}) == 0.012
    assert (
        spent_reset("openai", {**openai, "x-ratelimit-remaining-requests": "1", "x-ratelimit-remaining-tokens": "1"})
        is None
    )
    anthropic = {
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:01Z",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:20Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2026-01-01T00:00:12Z",
    }
    assert spent_reset("anthropic", anthropic, NEW_YEAR) == pytest.approx(20.0)
    only_input = {
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:03Z",
    }
    assert spent_reset("anthropic", only_input, NEW_YEAR) == pytest.approx(3.0)
    assert spent_reset("anthropic", openai, NEW_YEAR) is None, "another family's headers are not read"
    assert spent_reset("gemini", openai) is None, "Gemini sends no rate-limit headers"
    missing = spent_reset("openai", {"x-ratelimit-remaining-requests": "0"})
    assert missing is not None and math.isnan(missing), "spent, reset unknown"
    bogus = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "whenever"}
    assert math.isnan(spent_reset("openai", bogus) or 0.0)
    mixed = {**bogus, "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"}
    assert spent_reset("openai", mixed) == 2.0, "a readable reset wins over an unreadable one"


# --- the pacer ---------------------------------------------------------------------------


def pacer(observer: Seen | RouterObserver | None = None, **settings: float) -> Pacer:
    return Pacer(PacingSettings.model_validate(settings), observer)


def test_429_with_retry_after_paces_for_it() -> None:
    seen, dep = Seen(), deployment()
    pacer(seen).on_error(dep, 429, {"retry-after": "2"})
    assert dep.paced and 1.9 < left(dep) <= 2.0
    assert seen.began == [(dep.id, 2.0, RETRY_AFTER)]


def test_429_retry_after_from_the_provider_body() -> None:
    """Gemini says when in its body (RetryInfo 34.4s, a recorded 429), not in a header."""
    dep = deployment("gemini")
    body = json.dumps(load_json("gemini/error_429_resource_exhausted_vercel.json")).encode()
    err = dep.provider.error(429, {}, body)
    assert err.retry_after == pytest.approx(34.4)
    pacer().on_error(dep, 429, {}, err.retry_after)
    assert 34.0 < left(dep) <= 34.4


def test_recorded_openai_429_without_headers_gets_the_default() -> None:
    seen, dep = Seen(), deployment()
    entry = next(e for e in load_json("openai/reported_error_bodies.json")["entries"] if e["http_status"] == 429)
    err = dep.provider.error(429, {}, json.dumps(entry["body"]).encode())
    pacer(seen, default_s=1.5).on_error(dep, 429, {}, err.retry_after)
    assert 1.4 < left(dep) <= 1.5
    assert seen.began == [(dep.id, 1.5, RETRY_AFTER)]


def test_recorded_anthropic_429_waits_for_its_spent_budget() -> None:
    seen, dep = Seen(), deployment("anthropic")
    entry = next(e for e in load_json("anthropic/reported_error_bodies.json")["entries"] if e["http_status"] == 429)
    reset = datetime.fromtimestamp(time.time() + 8, UTC).isoformat().replace("+00:00", "Z")
    headers = {"anthropic-ratelimit-tokens-remaining": "0", "anthropic-ratelimit-tokens-reset": reset}
    err = dep.provider.error(429, headers, json.dumps(entry["body"]).encode())
    assert err.retry_after is None
    pacer(seen).on_error(dep, 429, headers, err.retry_after)
    assert 7.5 < left(dep) <= 8.0
    assert seen.began[0][2] == RATELIMIT_HEADERS


def test_retry_after_ms_and_http_date_on_errors() -> None:
    dep = deployment()
    pacer().on_error(dep, 429, {"retry-after-ms": "250"})
    assert 0.2 < left(dep) <= 0.25
    other = deployment()
    when = datetime.fromtimestamp(time.time() + 5, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    pacer().on_error(other, 429, {"retry-after": when})
    assert 3.5 < left(other) <= 5.0


@pytest.mark.parametrize("status", [503, 529])
def test_overload_paces_only_with_retry_after(status: int) -> None:
    with_header, without = deployment(), deployment()
    pacer().on_error(with_header, status, {"retry-after": "3"})
    pacer().on_error(without, status, {})
    assert 2.9 < left(with_header) <= 3.0
    assert not without.paced


@pytest.mark.parametrize("status", [400, 401, 404, 500, 502, 504])
def test_other_errors_never_pace(status: int) -> None:
    dep = deployment()
    pacer().on_error(dep, status, {"retry-after": "3", "x-ratelimit-remaining-requests": "0"}, 3.0)
    assert not dep.paced and dep.paced_until == 0.0


def test_every_pause_is_capped() -> None:
    seen, dep = Seen(), deployment()
    pacer(seen, max_s=60).on_error(dep, 429, {"retry-after": "86400"})
    assert 59 < left(dep) <= 60
    assert seen.began == [(dep.id, 60.0, RETRY_AFTER)]
    later = deployment()
    pacer(max_s=5).on_answer(later, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h"})
    assert 4.9 < left(later) <= 5


def test_bad_values_are_ignored() -> None:
    dep = deployment()
    p = pacer(default_s=0.5)
    p.on_error(dep, 429, {"retry-after": "soon", "x-ratelimit-remaining-requests": "lots"})
    assert 0.4 < left(dep) <= 0.5, "a 429 that says nothing readable: the default"
    ok = deployment()
    p.on_answer(ok, {"x-ratelimit-remaining-requests": "n/a", "x-ratelimit-reset-requests": "1s"})
    p.on_answer(ok, {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "-1s"})
    assert not ok.paced
    p.on_error(ok, 503, {"retry-after": "nan"})
    assert not ok.paced
    p.on_error(ok, 429, {"retry-after": "0"})
    assert not ok.paced, "Retry-After 0: come back now"
    odd = deployment()
    p.on_error(odd, 429, {"retry-after": "inf"}, math.inf)  # what a provider's float() makes of it
    assert 0.4 < left(odd) <= 0.5, "an infinite Retry-After is unreadable: the default, not max_s"


def test_success_with_a_spent_budget_paces_until_its_reset() -> None:
    seen, dep = Seen(), deployment()
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    pacer(seen).on_answer(dep, headers)
    assert 0.9 < left(dep) <= 1.0
    assert seen.began == [(dep.id, 1.0, RATELIMIT_HEADERS)]
    fine = deployment()
    pacer().on_answer(fine, {"x-ratelimit-remaining-requests": "4999", "x-ratelimit-reset-requests": "12ms"})
    pacer().on_answer(fine, {})
    assert not fine.paced


def test_success_spent_without_a_reset_gets_the_default() -> None:
    dep = deployment("anthropic")
    pacer(default_s=2).on_answer(dep, {"anthropic-ratelimit-requests-remaining": "0"})
    assert 1.9 < left(dep) <= 2.0


def test_gemini_answers_are_not_read() -> None:
    dep = deployment("gemini")
    pacer().on_answer(dep, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    assert not dep.paced


def test_pacing_off_or_absent_does_nothing() -> None:
    headers = {"retry-after": "5", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    for off in (pacer(enabled=False), Pacer()):
        dep = deployment()
        off.on_error(dep, 429, headers, 5.0)
        off.on_answer(dep, headers)
        assert dep.paced_until == 0.0


def test_a_longer_signal_extends_a_pause_and_is_told_once() -> None:
    seen, dep = Seen(), deployment()
    p = pacer(seen)
    p.on_error(dep, 429, {"retry-after": "1"})
    p.on_error(dep, 429, {"retry-after": "3"})
    p.on_error(dep, 429, {"retry-after": "2"})
    assert 2.9 < left(dep) <= 3.0, "extended, never shortened"
    assert seen.began == [(dep.id, 1.0, RETRY_AFTER)], "one pause began"


async def test_the_end_of_a_pause_is_told() -> None:
    seen, dep = Seen(), deployment()
    p = pacer(seen)
    p.on_error(dep, 429, {"retry-after-ms": "100"})
    p.on_error(dep, 429, {"retry-after-ms": "600"})  # made longer meanwhile: told at its new end
    await asyncio.sleep(0.2)  # past the first end, well before the second (a loaded loop wakes late)
    assert seen.ended == []
    await asyncio.sleep(0.6)
    assert seen.ended == [dep.id]
    assert not dep.paced


def available(dep: LiveDeployment) -> bool:
    return dep.available


def paced(dep: LiveDeployment) -> bool:
    return dep.paced


def test_deployment_state() -> None:
    dep = deployment()
    now = time.monotonic()
    assert available(dep) and not paced(dep)
    assert dep.pace(2.0, now) is True
    assert paced(dep) and not available(dep)
    assert dep.pace(1.0, now) is False and dep.paced_until == now + 2.0
    dep.paced_until = 0.0
    dep.breaker.record(False, now)
    assert available(dep), "one failure does not open the default breaker"
    for _ in range(5):
        dep.breaker.record(False, now)
    assert not dep.breaker.ready(now) and not available(dep)
    assert dep.breaker.ready(now + dep.breaker.policy.cooldown_s)
    assert dep.breaker.allow(now + dep.breaker.policy.cooldown_s), "half-open: the trial"
    assert not dep.breaker.ready(now + dep.breaker.policy.cooldown_s), "the trial is taken"


async def test_the_router_observer_feeds_the_shaping_metrics() -> None:
    """The app's observer (observability/router_observer.py) over a real catalog, fed by a
    real pacer: the counter counts the pause, the gauge is 1 while it lasts, then 0."""
    metrics = Metrics()
    dep = deployment()
    p = pacer(RouterObserver(metrics))
    labels = {"deployment": dep.id, "source": "retry_after"}
    p.on_error(dep, 429, {"retry-after-ms": "40"})
    p.on_error(dep, 429, {"retry-after-ms": "60"})
    assert metrics.registry.get_sample_value("gateway_upstream_paced_total", labels) == 1.0
    assert metrics.registry.get_sample_value("gateway_deployment_paced", {"deployment": dep.id}) == 1.0
    await asyncio.sleep(0.12)
    assert metrics.registry.get_sample_value("gateway_deployment_paced", {"deployment": dep.id}) == 0.0
    p.on_answer(dep, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"})
    spent = {"deployment": dep.id, "source": "ratelimit_headers"}
    assert metrics.registry.get_sample_value("gateway_upstream_paced_total", spent) == 1.0
