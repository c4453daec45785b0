"""The traffic-shaping metrics (gateway/observability/shaping_metrics.py): each method moves its
series as docs/metrics.md says, read back from the app's registry; fixed-set labels refuse other
values and start their siblings at zero; the output passes ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from gateway.observability import shaping_metrics
from gateway.observability.metrics import DURATION_BUCKETS, Metrics
from gateway.observability.shaping_metrics import (
    PACING_SOURCES,
    SHADOW_OUTCOMES,
    SHED_REASONS,
    ShapingMetrics,
)

PROMTOOL_HINT = "promtool is not installed (`make test` installs it: scripts/install-os-deps.sh, Debian's prometheus)"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_the_app_builds_them_in_its_own_registry(metrics: Metrics) -> None:
    metrics.shaping.shed("chat", "batch", "queue_full")
    labels = {"alias": "chat", "priority": "batch", "reason": "queue_full"}
    assert value(metrics.registry, "gateway_queue_shed_total", **labels) == 1
    assert value(Metrics().registry, "gateway_queue_shed_total", **labels) is None, "each app its own registry"
    body = metrics.render()[0].decode()
    assert 'gateway_queue_shed_total{alias="chat",priority="batch",reason="queue_full"} 1.0' in body


def test_waiting_moves_the_depth_up_and_down(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.waiting("chat", "interactive", 1)
    shaping.waiting("chat", "interactive", 1)
    shaping.waiting("chat", "batch", 3)
    shaping.waiting("chat", "interactive", -1)
    assert value(r, "gateway_queue_depth", alias="chat", priority="interactive") == 1
    assert value(r, "gateway_queue_depth", alias="chat", priority="batch") == 3
    shaping.waiting("chat", "batch", -3)
    assert value(r, "gateway_queue_depth", alias="chat", priority="batch") == 0, "the series stays, at 0"


def test_waited_observes_the_wait_in_its_buckets(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    for seconds in (0.003, 0.4, 0.9, 2.0):
        shaping.waited("chat", "interactive", seconds)
    labels = {"alias": "chat", "priority": "interactive"}
    assert value(r, "gateway_queue_wait_seconds_count", **labels) == 4
    assert value(r, "gateway_queue_wait_seconds_sum", **labels) == pytest.approx(3.303)
    assert value(r, "gateway_queue_wait_seconds_bucket", le="0.005", **labels) == 1
    assert value(r, "gateway_queue_wait_seconds_bucket", le="1.0", **labels) == 3, "the objective's bound is a bucket"
    assert value(r, "gateway_queue_wait_seconds_bucket", le="30.0", **labels) == 4


def test_shed_counts_by_reason_and_starts_the_others_at_zero(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.shed("chat", "batch", "deadline")
    shaping.shed("chat", "batch", "deadline")
    shaping.shed("chat", "batch", "disconnected")
    counts = {
        reason: value(r, "gateway_queue_shed_total", alias="chat", priority="batch", reason=reason)
        for reason in SHED_REASONS
    }
    assert counts == {"queue_full": 0, "deadline": 2, "timeout": 0, "disconnected": 1}
    assert value(r, "gateway_queue_shed_total", alias="chat", priority="interactive", reason="deadline") is None


def test_an_unknown_shed_reason_is_refused_and_makes_no_series(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="reason 'overloaded' is not one of queue_full, deadline"):
        metrics.shaping.shed("chat", "batch", "overloaded")
    assert "gateway_queue_shed_total{" not in metrics.render()[0].decode()


def test_pacing_counts_its_start_and_holds_the_gauge(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.paced_upstream("chat/0", "retry_after", True)
    assert value(r, "gateway_deployment_paced", deployment="chat/0") == 1
    assert value(r, "gateway_upstream_paced_total", deployment="chat/0", source="retry_after") == 1
    assert value(r, "gateway_upstream_paced_total", deployment="chat/0", source="ratelimit_headers") == 0
    shaping.paced_upstream("chat/0", "retry_after", False)
    assert value(r, "gateway_deployment_paced", deployment="chat/0") == 0
    assert value(r, "gateway_upstream_paced_total", deployment="chat/0", source="retry_after") == 1, "end not counted"
    shaping.paced_upstream("chat/0", "ratelimit_headers", True)
    assert value(r, "gateway_deployment_paced", deployment="chat/0") == 1
    counts = {s: value(r, "gateway_upstream_paced_total", deployment="chat/0", source=s) for s in PACING_SOURCES}
    assert counts == {"retry_after": 1, "ratelimit_headers": 1}


def test_an_unknown_pacing_source_is_refused_only_where_it_is_a_label(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    with pytest.raises(ValueError, match="source 'x-ratelimit' is not one of retry_after, ratelimit_headers"):
        shaping.paced_upstream("chat/0", "x-ratelimit", True)
    assert value(r, "gateway_deployment_paced", deployment="chat/0") is None, "nothing set before the refusal"
    shaping.paced_upstream("chat/0", "", False)  # the end of a pacing carries no source
    assert value(r, "gateway_deployment_paced", deployment="chat/0") == 0


def test_rules_count_by_rule_and_kind(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.rule("night-batch", "time_window")
    shaping.rule("night-batch", "time_window")
    shaping.rule("cheap-when-over-budget", "budget_downgrade")
    assert value(r, "gateway_routing_rule_applied_total", rule="night-batch", kind="time_window") == 2
    assert value(r, "gateway_routing_rule_applied_total", rule="cheap-when-over-budget", kind="budget_downgrade") == 1
    assert value(r, "gateway_routing_rule_applied_total", rule="night-batch", kind="match") is None
    with pytest.raises(ValueError, match="kind 'weight' is not one of time_window, budget_downgrade, match, shadow"):
        shaping.rule("night-batch", "weight")


def test_a_shadow_request_counts_its_outcome_time_tokens_and_cost(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.shadow("chat", "chat-next", "ok", 0.5, 12, 30, 0.0021)
    shaping.shadow("chat", "chat-next", "error", 0.1, 0, 0, None)
    pair = {"alias": "chat", "candidate": "chat-next"}
    outcomes = {o: value(r, "gateway_shadow_requests_total", outcome=o, **pair) for o in SHADOW_OUTCOMES}
    assert outcomes == {"ok": 1, "error": 1, "dropped": 0}
    assert value(r, "gateway_shadow_duration_seconds_count", **pair) == 2
    assert value(r, "gateway_shadow_duration_seconds_sum", **pair) == pytest.approx(0.6)
    assert value(r, "gateway_shadow_tokens_total", candidate="chat-next", type="input") == 12
    assert value(r, "gateway_shadow_tokens_total", candidate="chat-next", type="output") == 30
    assert value(r, "gateway_shadow_cost_usd_total", candidate="chat-next") == pytest.approx(0.0021)


def test_a_dropped_or_unpriced_shadow_adds_no_time_tokens_or_cost(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    shaping.shadow("chat", "chat-next", "dropped", None, 0, 0, None)
    shaping.shadow("chat", "chat-next", "ok", 0.2, -5, 0, None)  # a nonsense count from an upstream
    assert value(r, "gateway_shadow_requests_total", alias="chat", candidate="chat-next", outcome="dropped") == 1
    assert value(r, "gateway_shadow_duration_seconds_count", alias="chat", candidate="chat-next") == 1
    assert value(r, "gateway_shadow_tokens_total", candidate="chat-next", type="input") is None
    assert value(r, "gateway_shadow_cost_usd_total", candidate="chat-next") is None
    shaping.shadow("chat", "chat-next", "ok", 0.2, 0, 0, -1.0)
    assert value(r, "gateway_shadow_cost_usd_total", candidate="chat-next") is None
    shaping.shadow("chat", "free-model", "ok", 0.2, 3, 0, 0.0)  # priced at zero: a series at zero
    assert value(r, "gateway_shadow_cost_usd_total", candidate="free-model") == 0


def test_an_unknown_shadow_outcome_is_refused_before_anything_is_counted(metrics: Metrics) -> None:
    shaping, r = metrics.shaping, metrics.registry
    with pytest.raises(ValueError, match="outcome 'timeout' is not one of ok, error, dropped"):
        shaping.shadow("chat", "chat-next", "timeout", 1.0, 10, 10, 0.5)
    assert value(r, "gateway_shadow_duration_seconds_count", alias="chat", candidate="chat-next") is None
    assert value(r, "gateway_shadow_tokens_total", candidate="chat-next", type="input") is None
    assert value(r, "gateway_shadow_cost_usd_total", candidate="chat-next") is None


def test_children_are_cached_and_the_cache_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry(auto_describe=True)
    shaping = ShapingMetrics(registry)
    monkeypatch.setattr(shaping_metrics, "_MAX_CACHED", 2)
    shaping.waiting("a", "p", 1)
    first = shaping._depth("a", "p")
    assert shaping._depth("a", "p") is first
    for alias in ("b", "c", "d"):  # past the bound: the cache is cleared, the series are not
        shaping.waiting(alias, "p", 1)
    shaping.waiting("a", "p", 1)
    assert value(registry, "gateway_queue_depth", alias="a", priority="p") == 2
    shaping.shed("a", "p", "timeout")  # a fixed set bigger than the bound is still made whole
    shaping.shed("a", "p", "timeout")
    assert value(registry, "gateway_queue_shed_total", alias="a", priority="p", reason="timeout") == 2
    assert value(registry, "gateway_queue_shed_total", alias="a", priority="p", reason="queue_full") == 0


def test_the_shadow_buckets_are_the_genai_duration_buckets() -> None:
    assert shaping_metrics.SHADOW_DURATION_BUCKETS == DURATION_BUCKETS


def test_promtool_accepts_the_shaping_metrics(metrics: Metrics) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_HINT)
    shaping = metrics.shaping
    shaping.waiting("chat", "interactive", 2)
    shaping.waited("chat", "interactive", 0.2)
    shaping.shed("chat", "batch", "queue_full")
    shaping.paced_upstream("chat/0", "retry_after", True)
    shaping.rule("night-batch", "time_window")
    shaping.shadow("chat", "chat-next", "ok", 0.5, 12, 30, 0.002)
    text = metrics.render()[0].decode()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")
