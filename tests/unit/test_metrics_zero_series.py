"""Counters whose label values are a fixed set are exported at zero from the start, so that
rate() and increase() see their first event (a series born at 1 shows no increase): the
dashboards' cache hit ratio and config reloads panels depend on it
(tests/e2e/test_observability_live.py checks those panels against a real Prometheus)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metric_labels import CACHE_RESULTS, LOGIN_OUTCOMES, METRICS_REFUSALS, RELOAD_RESULTS
from gateway.observability.metrics import Metrics
from gateway.policies.cache import CacheMode


def exported(metrics: Metrics) -> dict[tuple[str, str], float]:
    """(sample name, result label) -> value, for the samples that have a ``result`` label."""
    text = metrics.render()[0].decode()
    return {
        (s.name, s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "result" in s.labels
    }


def test_cache_results_and_reloads_start_at_zero() -> None:
    samples = exported(Metrics())
    for result in CACHE_RESULTS:
        assert samples[("gateway_cache_requests_total", result)] == 0
    for result in RELOAD_RESULTS:
        assert samples[("gateway_config_reloads_total", result)] == 0


def test_counting_goes_on_from_zero() -> None:
    metrics = Metrics()
    metrics.cache_requests.labels("hit").inc()
    metrics.config_reloads.labels("applied").inc()
    samples = exported(metrics)
    assert samples[("gateway_cache_requests_total", "hit")] == 1
    assert samples[("gateway_cache_requests_total", "miss")] == 0
    assert samples[("gateway_config_reloads_total", "applied")] == 1
    assert samples[("gateway_config_reloads_total", "rejected")] == 0


def test_cache_results_are_every_value_the_cache_reports() -> None:
    reported = {mode.header(hit=hit) for mode in CacheMode for hit in (False, True)}
    assert reported == set(CACHE_RESULTS)


def test_login_outcomes_and_metrics_refusals_start_at_zero() -> None:
    metrics = Metrics()
    metrics.login_attempt("locked")
    metrics.metrics_refusal("invalid_metrics_token")
    text = metrics.render()[0].decode()
    samples = {
        (s.name, s.labels.get("outcome") or s.labels.get("reason")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("gateway_admin_login_attempts_total", "gateway_metrics_refused_total")
    }
    assert samples == {
        **{("gateway_admin_login_attempts_total", o): float(o == "locked") for o in LOGIN_OUTCOMES},
        **{("gateway_metrics_refused_total", r): float(r == "invalid_metrics_token") for r in METRICS_REFUSALS},
    }
