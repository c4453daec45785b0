"""The metrics catalog (gateway/observability/metrics.py) and its reference
(docs/metrics.md) name the same metrics with the same types and buckets, and
what the catalog renders passes ``promtool check metrics``."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import Histogram

from gateway.config.loader import parse_config
from gateway.errors import UpstreamTimeout
from gateway.observability.jobs_metrics import JobFacts
from gateway.observability.metrics import Metrics
from gateway.observability.state_probe import StateFacts
from gateway.policies.budget import BudgetEvent, BudgetLimits
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, build_routes
from gateway.state.postgres_client import PoolFacts
from gateway.state.retention import TierFacts

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"})
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
# A table row whose first cell is one backticked name: (name, second cell).
ROW = re.compile(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*([^|]*?)\s*\|", re.M)
NUMBERS = re.compile(r"^\d[\d.e+-]*(\s*,\s*\d[\d.e+-]*)*$")
BUCKET = re.compile(r'^(\S+)_bucket\{(?:[^}]*,)?le="([^"]+)"', re.M)
PROMTOOL_HINT = "promtool is not installed (`make test` installs it: scripts/install-os-deps.sh, Debian's prometheus)"

CONFIG = """
models:
  chat:
    deployments: [{provider: openai, model: mock-gpt, base_url: 'http://127.0.0.1:9/v1', api_key: k}]
  gem:
    deployments: [{provider: gemini, model: mock-gemini, base_url: 'http://127.0.0.1:9/v1beta', api_key: k}]
  embed:
    kind: embedding
    deployments: [{provider: openai, model: mock-embed, base_url: 'http://127.0.0.1:9/v1', api_key: k}]
"""


def rendered(metrics: Metrics) -> str:
    body, _ = metrics.render()
    return body.decode()


def rendered_types(text: str) -> dict[str, str]:
    """``# TYPE`` lines, less the ``NAME_created`` gauges the client library adds beside each
    counter and histogram series (docs/metrics.md, naming)."""
    return {name: kind for name, kind in TYPE_LINE.findall(text) if not name.endswith("_created")}


def documented() -> tuple[dict[str, str], dict[str, list[float]]]:
    """The catalog tables of docs/metrics.md (name -> type) and its bucket table
    (histogram -> upper bounds)."""
    types: dict[str, str] = {}
    buckets: dict[str, list[float]] = {}
    for name, second in ROW.findall(DOC.read_text()):
        if second in TYPES:
            assert name not in types, f"docs/metrics.md lists `{name}` twice"
            types[name] = second
        elif NUMBERS.match(second):
            assert name not in buckets, f"docs/metrics.md lists the buckets of `{name}` twice"
            buckets[name] = [float(x) for x in second.split(",")]
    return types, buckets


def deployments() -> dict[str, LiveDeployment]:
    routes = build_routes(parse_config(CONFIG, env={}).settings, presets())
    return {d.id: d for route in routes.values() for d in route.deployments}


def observed_metrics() -> Metrics:
    """A Metrics with series in most families, through its public methods."""
    m = Metrics()
    deps = deployments()
    chat, gem, embed = deps["chat/0"], deps["gem/0"], deps["embed/0"]
    m.attempt(chat, 0.3, UpstreamTimeout("timed out"), retry=False)
    m.attempt(chat, 0.12, None, retry=True)
    m.attempt(gem, 0.5, None, retry=False)
    m.attempt(embed, 0.02, None, retry=False)
    m.request_done("chat", "chat", "openai", 200, 0.45, "", 0.42, streamed=False)
    m.request_done("chat", "gem", "gemini", 200, 0.6, "", 0.5, streamed=True)
    m.request_done("chat", "unknown", "", 404, 0.001, "model_not_found", 0.0, streamed=False)
    m.request_done("embeddings", "embed", "openai", 200, 0.03, "", 0.02, streamed=False)
    m.usage(chat, "chat", "", {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42})
    m.usage(gem, "gem", "search", {"prompt_tokens": 7, "completion_tokens": 3})
    m.usage(embed, "embed", "", {"prompt_tokens": 5, "total_tokens": 5})
    m.budget_level(BudgetLimits("team", "search", 10.0), "daily", 2.5, 10.0)
    m.budget_level(BudgetLimits("global", "", 100.0), "daily", 2.5, 100.0)
    m.budget_level(BudgetLimits("key", "key_secret", 1.0), "daily", 0.5, 1.0)
    m.budget_event(BudgetEvent("threshold", "team", "search", "daily", 8.1, 10.0))
    m.set_breaker("chat/0", "closed")
    m.set_breaker("gem/0", "open")
    m.sources.state_pool.read = lambda: PoolFacts(True, 2, 5, 20, 0, 1, replica_up=True, replica_lag_s=0.5)  # postgres
    m.sources.detail_tier.read = lambda: TierFacts(10, 0, 2, 0, 1, 0, 1, 0, 1.7e9)
    m.sources.jobs.read = lambda: [JobFacts("backup", 86400.0, 1.7e9, 1.7e9, 1.69e9, 2.5, False, 1, 0)]
    m.sources.state.read = lambda: StateFacts("redis", True, 1.7e9)
    return m


# --- the reference and the registry ---------------------------------------------------


def on_postgres() -> Metrics:
    """A fresh Metrics as the app sets it up on the postgres backend (its pool's metrics
    are exported on that backend only)."""
    m = Metrics()
    m.sources.state_pool.read = lambda: PoolFacts(True, 0, 1, 20, 0, 0, replica_up=True, replica_lag_s=0.0)
    m.sources.detail_tier.read = lambda: TierFacts(0, 0, 0, 0, 0, 0, 0, 0, 0.0)
    m.sources.jobs.read = lambda: [JobFacts("backup", 86400.0, 0.0, 0.0, 1.7e9, 0.0, False, 0, 0)]
    m.sources.state.read = lambda: StateFacts("postgres", True, 1.7e9)
    return m


def test_every_rendered_metric_is_documented_with_its_type() -> None:
    types = rendered_types(rendered(on_postgres()))
    assert types, "Metrics() rendered no # TYPE lines"
    documented_types, _ = documented()
    missing = sorted(name for name in types if name not in documented_types)
    assert not missing, f"metrics not documented in docs/metrics.md: {missing}"
    wrong = {name: (documented_types[name], kind) for name, kind in types.items() if documented_types[name] != kind}
    assert not wrong, f"documented type differs from the registry's (documented, registry): {wrong}"


def test_every_documented_metric_exists() -> None:
    types = rendered_types(rendered(on_postgres()))
    documented_types, _ = documented()
    assert documented_types, "docs/metrics.md has no catalog table rows"
    extra = sorted(name for name in documented_types if name not in types)
    assert not extra, f"docs/metrics.md documents metrics the registry does not have: {extra}"


def test_every_histogram_documents_its_buckets() -> None:
    m = Metrics()
    histograms = [h for part in (m, m.shaping, m.feedback) for h in vars(part).values() if isinstance(h, Histogram)]
    for h in histograms:  # one series each, so that its buckets are rendered
        (h.labels(*("x" for _ in h._labelnames)) if h._labelnames else h).observe(1.0)
    text = rendered(m)
    actual: dict[str, list[float]] = {}
    for name, le in BUCKET.findall(text):
        if le != "+Inf":
            bounds = actual.setdefault(name, [])
            if float(le) not in bounds:
                bounds.append(float(le))
    kinds = rendered_types(text)
    assert sorted(actual) == sorted(n for n, k in kinds.items() if k == "histogram")
    _, doc_buckets = documented()
    assert sorted(doc_buckets) == sorted(actual), "docs/metrics.md's bucket table lists other histograms"
    for name, bounds in actual.items():
        assert len(doc_buckets[name]) == len(bounds), name
        assert all(math.isclose(a, b) for a, b in zip(doc_buckets[name], bounds, strict=True)), (
            f"{name}: documented buckets {doc_buckets[name]}, registry {bounds}"
        )


def test_labels_carry_no_key_ids() -> None:
    text = rendered(observed_metrics())
    assert "key_secret" not in text
    gauges = [line for line in text.splitlines() if line.startswith(("gateway_budget_spent", "gateway_budget_limit"))]
    assert gauges and not [line for line in gauges if 'scope="key"' in line]


# --- promtool ---------------------------------------------------------------------------


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_HINT)
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_catalog() -> None:
    text = rendered(observed_metrics())
    # The observations above reached the families they were meant to.
    for series in (
        'gateway_upstream_attempts_total{deployment="chat/0",outcome="timeout"} 1.0',
        'gateway_retries_total{deployment="chat/0"} 1.0',
        'gen_ai_client_operation_duration_seconds_count{error_type="",gen_ai_operation_name="chat",'
        'gen_ai_provider_name="gcp.gemini",gen_ai_request_model="mock-gemini"} 1.0',
        'gen_ai_client_token_usage_sum{gen_ai_operation_name="embeddings",gen_ai_provider_name="openai",'
        'gen_ai_request_model="mock-embed",gen_ai_token_type="input"} 5.0',
        'gateway_requests_total{alias="unknown",provider="",route="chat",status_class="4xx"} 1.0',
        'gateway_tokens_total{alias="gem",team="search",type="output"} 3.0',
        'gateway_budget_spent_usd{period="daily",scope="team",team="search"} 2.5',
        'gateway_budget_events_total{kind="threshold",period="daily",scope="team"} 1.0',
        'gateway_breaker_state{deployment="gem/0",state="open"} 1.0',
        'gateway_breaker_state{deployment="gem/0",state="closed"} 0.0',
    ):
        assert series in text, series
    result = promtool_check(text)
    assert result.returncode == 0, f"promtool exit {result.returncode}: {result.stdout}{result.stderr}"
    assert result.stdout.strip() == "" and result.stderr.strip() == "", (
        f"promtool complained:\n{result.stdout}{result.stderr}"
    )


def test_promtool_accepts_an_empty_catalog() -> None:
    result = promtool_check(rendered(Metrics()))
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


def test_error_labels_are_bounded() -> None:
    from gateway.errors import (
        AllDeploymentsFailed,
        AttemptFailure,
        InvalidRequest,
        UpstreamBadResponse,
        UpstreamError,
        UpstreamTimeout,
        UpstreamUnavailable,
    )
    from gateway.observability.metric_labels import error_type

    upstream = UpstreamError("x", upstream_status=400, code="tool_use_failed-from-the-provider")
    assert error_type(upstream) == "http_400", "an upstream's own code never becomes a label"
    assert error_type(UpstreamTimeout("t")) == "timeout"
    assert error_type(UpstreamUnavailable("c")) == "connect_error"
    assert error_type(UpstreamBadResponse("b")) == "bad_response"
    assert (
        error_type(AllDeploymentsFailed([AttemptFailure("d", UpstreamError("y", upstream_status=503))])) == "http_503"
    )
    assert error_type(InvalidRequest("bad", code="invalid_value")) == "invalid_value"
    assert error_type(None) == ""
