"""The metrics catalog: every metric the gateway exports, declared here once
(docs/metrics.md lists each; tests/unit/test_metrics_catalog.py keeps the two in step).

Each app builds its own :class:`Metrics` (its own registry), so tests build
fresh apps without global state. Labels are bounded: configured aliases,
deployment ids, provider kinds, team ids, fixed enumerations. Never key ids,
user ids or client-supplied strings (an unknown model is counted as "unknown").

The OpenTelemetry GenAI metrics follow the semantic conventions' names, units
and recommended buckets, with attributes as labels (dots become underscores).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder

from gateway import __version__
from gateway.canonical import JSON
from gateway.errors import GatewayError
from gateway.observability.feedback_metrics import FeedbackMetrics
from gateway.observability.live_counts import LiveCollector, LiveCounts
from gateway.observability.metric_labels import (
    BREAKER_STATES,
    CACHE_RESULTS,
    GENAI_PROVIDER,
    LOGIN_OUTCOMES,
    METRICS_REFUSALS,
    RELOAD_RESULTS,
    REQUEST_REFUSALS,
    UPSTREAM_REFUSALS,
    error_type,
    operation_of,
)
from gateway.observability.scrape_sources import ScrapeSources
from gateway.observability.shaping_metrics import ShapingMetrics
from gateway.policies.budget import BudgetEvent, BudgetLimits
from gateway.routing.deployment import LiveDeployment

# GenAI semantic conventions: recommended bucket boundaries.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67108864
# The gateway's own added time: sub-millisecond is the normal case.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Every metric of one app, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)

        # --- what clients see ------------------------------------------------------
        self.requests = Counter(
            "gateway_requests",
            "Client API requests answered, by route, alias, provider and status class.",
            ["route", "alias", "provider", "status_class"],
            registry=r,
        )
        self.server_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from request received to response complete, as the client sees it (GenAI server metric).",
            ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.server_ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request received to the first streamed chunk sent to the client.",
            ["gen_ai_operation_name", "gen_ai_request_model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests", "Client requests being handled now, by route.", ["route"], registry=r
        )
        self.requests_refused = Counter(
            "gateway_requests_refused",
            "Requests refused before they were read or parsed (any route), by reason: "
            "request_too_large, json_too_deep, headers_too_large, too_many_headers, header_timeout.",
            ["reason"],
            registry=r,
        )
        for reason in REQUEST_REFUSALS:
            self.requests_refused.labels(reason)
        self.loop_lag = Histogram(
            "gateway_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 0.5 s): time it could not serve anyone.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.upstream_connections = Gauge(
            "gateway_upstream_connections",
            "Open connections to upstreams, by state (in_use, idle in the pool), at the scrape.",
            ["state"],
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_added_latency_seconds",
            "The gateway's own time per request: total minus the time spent waiting on upstreams.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )

        # --- upstream attempts --------------------------------------------------------
        self.client_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of each upstream attempt, to the response (streams: to the first chunk).",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request, as the upstream reported them.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "gateway_upstream_attempts",
            "Upstream attempts, by deployment and outcome.",
            ["deployment", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "gateway_retries", "Attempts retried on the same deployment.", ["deployment"], registry=r
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Switches to a fallback alias, by from, to and reason.",
            ["from_alias", "to_alias", "reason"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker state per deployment: 1 for the current state.",
            ["deployment", "state"],
            registry=r,
        )
        self.truncated_streams = Counter(
            "gateway_truncated_streams",
            "Streams that broke after their first byte reached the client.",
            ["alias"],
            registry=r,
        )
        self.upstream_refusals = Counter(
            "gateway_upstream_refusals",
            "Upstream answers refused: a redirect, a cap passed (the upstream.* key), a refused address.",
            ["reason"],
            registry=r,
        )
        for reason in UPSTREAM_REFUSALS:
            self.upstream_refusals.labels(reason)

        # --- health checks (connection tests; never charged to users) -----------------------
        self.probes = Counter(
            "gateway_probes",
            "Connection-test probes, by deployment, test and result (pass, fail).",
            ["deployment", "probe", "result"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "gateway_probe_duration_seconds",
            "Duration of each connection-test probe, by deployment and test.",
            ["deployment", "probe"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.probe_cost = Counter(
            "gateway_probe_cost_usd",
            "Cost in USD of connection-test probes (tracked apart: never charged to a key, team or budget).",
            ["deployment"],
            registry=r,
        )
        self.probe_tokens = Counter(
            "gateway_probe_tokens", "Tokens used by connection-test probes.", ["deployment", "type"], registry=r
        )
        self.health_score = Gauge(
            "gateway_deployment_health_score",
            "Health score 0-100 of each deployment from its last scheduled checks.",
            ["deployment"],
            registry=r,
        )
        self.degraded = Gauge(
            "gateway_deployment_degraded",
            "1 while the scheduled health checks route around the deployment, else 0.",
            ["deployment"],
            registry=r,
        )

        # --- traffic control ---------------------------------------------------------------
        self.cache_requests = Counter(
            "gateway_cache_requests", "Cache decisions: hit, miss, refresh or off.", ["result"], registry=r
        )
        for result in CACHE_RESULTS:
            self.cache_requests.labels(result)
        self.tokens = Counter(
            "gateway_tokens", "Tokens by alias, team and type (input, output).", ["alias", "team", "type"], registry=r
        )
        self.cost = Counter(
            "gateway_cost_usd", "Cost in USD of priced requests, by alias and team.", ["alias", "team"], registry=r
        )
        # Cost reconciliation: an upstream's own figure (usage.cost) and the gateway's, same requests.
        self.cost_reported = Counter(
            "gateway_cost_reported_usd",
            "Cost in USD that upstreams reported themselves (usage.cost) for priced requests, by provider and alias.",
            ["provider", "alias"],
            registry=r,
        )
        self.cost_compared = Counter(
            "gateway_cost_compared_usd",
            "The gateway's own cost in USD of the requests in gateway_cost_reported_usd_total, by provider and alias.",
            ["provider", "alias"],
            registry=r,
        )
        labels = ["scope", "team", "period"]
        self.budget_spent = Gauge(
            "gateway_budget_spent_usd",
            "Spend in the current budget period, USD (teams and the whole gateway; key budgets are not labelled).",
            labels,
            registry=r,
        )
        self.budget_limit = Gauge("gateway_budget_limit_usd", "Budget of the current period, USD.", labels, registry=r)
        self.budget_events = Counter(
            "gateway_budget_events",
            "Budget events: 'threshold' when spend crosses warn_ratio (default 80 %), 'exhausted' at 100 %.",
            ["scope", "period", "kind"],
            registry=r,
        )
        self.shaping = ShapingMetrics(r)  # the admission queue, pacing, routing rules, shadow traffic
        self.feedback = FeedbackMetrics(r)  # user satisfaction: POST /v1/feedback (feedback_metrics.py)
        self._budget_children: dict[tuple[str, str, str], tuple[Gauge, Gauge]] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._usage_children: dict[tuple[str, str, str, str, str], tuple[tuple[Any, Any], ...]] = {}
        self.live: Callable[[], LiveCounts] = LiveCounts.empty
        """Where the counts kept by the policies come from (set by the app)."""
        r.register(LiveCollector(self._read_live))  # self.live is set by the app after this
        self.sources = ScrapeSources(r)
        """The parts the app starts later: PostgreSQL, jobs, the state probe, the notifier (scrape_sources.py)."""
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        GCCollector(registry=r)  # python_gc_collections_total{generation}: read from gc.get_stats() at the scrape

        # --- the gateway itself ------------------------------------------------------------
        self.auth_failures = Counter(
            "gateway_auth_failures", "Refused credentials, by reason (the error code).", ["reason"], registry=r
        )
        self.config_reloads = Counter(
            "gateway_config_reloads", "Config reloads, by result (applied, rejected).", ["result"], registry=r
        )
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result)
        self.login_attempts = Counter(
            "gateway_admin_login_attempts",
            "Admin logins by outcome: success, invalid, totp_required, disabled (password checked), "
            "locked (refused unchecked).",
            ["outcome"],
            registry=r,
        )
        for outcome in LOGIN_OUTCOMES:
            self.login_attempts.labels(outcome)
        self.metrics_refused = Counter(
            "gateway_metrics_refused",
            "Requests for /metrics refused for their bearer token, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in METRICS_REFUSALS:
            self.metrics_refused.labels(reason)
        self.build_info = Gauge(
            "gateway_build_info", "Gateway version and Python version (always 1).", ["version", "python"], registry=r
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

    def _read_live(self) -> LiveCounts:
        return self.live()

    def login_attempt(self, outcome: str) -> None:
        self.login_attempts.labels(outcome).inc()

    def metrics_refusal(self, reason: str) -> None:
        self.metrics_refused.labels(reason).inc()

    # --- budgets ------------------------------------------------------------------------

    def budget_level(self, limits: BudgetLimits, period: str, spent: float, limit: float) -> None:
        if limits.scope == "key":  # key ids are unbounded: no per-key series
            return
        labels = (limits.scope, limits.id if limits.scope == "team" else "", period)
        children = self._budget_children.get(labels)
        if children is None:
            children = self._budget_children[labels] = (
                self.budget_spent.labels(*labels),
                self.budget_limit.labels(*labels),
            )
        children[0].set(spent)
        children[1].set(limit)

    def budget_event(self, event: BudgetEvent) -> None:
        self.budget_events.labels(event.scope, event.period, event.kind).inc()

    # --- requests and attempts ---------------------------------------------------------

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the library's lookup takes a lock and
        builds a tuple each time, and the hot path asks a dozen times a request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def attempt(
        self,
        dep: LiveDeployment,
        seconds: float,
        error: GatewayError | None,
        retry: bool,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """One upstream attempt (the router's observer); ``exemplar`` links the
        observation to its trace (OpenMetrics exposition only)."""
        code = error_type(error)
        provider = GENAI_PROVIDER.get(dep.target.provider, dep.target.provider)
        self.child(self.client_duration, dep.operation, provider, dep.target.model, code).observe(seconds, exemplar)
        self.child(self.attempts, dep.id, "ok" if error is None else code).inc()
        if retry:
            self.child(self.retries, dep.id).inc()

    def refused(self, reason: str) -> None:
        """A request refused for its size or shape (one of ``REQUEST_REFUSALS``)."""
        self.child(self.requests_refused, reason).inc()

    def request_done(
        self,
        route: str,
        alias: str,
        provider: str,
        status: int,
        seconds: float,
        error_code: str,
        upstream_s: float,
        streamed: bool,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """A client request answered (``alias`` already checked against the configured ones)."""
        operation = operation_of(route)
        self.child(self.requests, route, alias, provider, f"{status // 100}xx").inc()
        self.child(self.server_duration, operation, alias, error_code).observe(seconds, exemplar)
        if status in (400, 413) and error_code in REQUEST_REFUSALS:
            self.refused(error_code)
        if not streamed:  # a stream's upstream time goes on after its first chunk
            self.child(self.overhead, route).observe(max(0.0, seconds - upstream_s))

    def usage(self, dep: LiveDeployment, alias: str, team: str, usage: JSON) -> None:
        target = dep.target
        children = self._usage_children.get((target.provider, target.model, dep.operation, alias, team))
        if children is None:
            children = self._usage_of(dep, alias, team)
        for (histogram, counter), field in zip(children, ("prompt_tokens", "completion_tokens"), strict=True):
            count = usage.get(field)
            if isinstance(count, int) and count >= 0:
                histogram.observe(count)
                counter.inc(count)

    def _usage_of(self, dep: LiveDeployment, alias: str, team: str) -> tuple[tuple[Any, Any], ...]:
        """The token histogram and counter children of input and output, for one
        deployment, alias and team (four label lookups saved per request)."""
        provider = GENAI_PROVIDER.get(dep.target.provider, dep.target.provider)
        children = tuple(
            (
                self.child(self.token_usage, dep.operation, provider, dep.target.model, kind),
                self.child(self.tokens, alias, team, kind),
            )
            for kind in ("input", "output")
        )
        if len(self._usage_children) > 10_000:
            self._usage_children.clear()
        self._usage_children[(dep.target.provider, dep.target.model, dep.operation, alias, team)] = children
        return children

    def cost_reconciled(self, provider: str, alias: str, reported: float, ours: float) -> None:
        """A priced request whose upstream reported its own cost: both figures counted."""
        self.child(self.cost_reported, provider, alias).inc(reported)
        self.child(self.cost_compared, provider, alias).inc(ours)

    def upstream_refused(self, reason: str) -> None:
        """An upstream answer refused, by one of ``UPSTREAM_REFUSALS``."""
        self.child(self.upstream_refusals, reason).inc()

    # --- breakers ------------------------------------------------------------------------

    def set_upstream_connections(self, in_use: int, idle: int) -> None:
        self.upstream_connections.labels("in_use").set(in_use)
        self.upstream_connections.labels("idle").set(idle)

    def set_breaker(self, deployment: str, state: str) -> None:
        for s in BREAKER_STATES:
            self.breaker_state.labels(deployment, s).set(1.0 if s == state else 0.0)

    # --- health checks ---------------------------------------------------------------------

    def probe(self, deployment: str, probe: str, passed: bool, seconds: float) -> None:
        """One connection-test probe (``deployment`` "" when none answered)."""
        self.probes.labels(deployment, probe, "pass" if passed else "fail").inc()
        self.probe_duration.labels(deployment, probe).observe(seconds)

    def probe_usage(self, deployment: str, usage: JSON, cost: float | None) -> None:
        for kind, field in (("input", "prompt_tokens"), ("output", "completion_tokens")):
            count = usage.get(field)
            if isinstance(count, int) and count >= 0:
                self.probe_tokens.labels(deployment, kind).inc(count)
        if cost is not None:
            self.probe_cost.labels(deployment).inc(cost)

    def deployment_health(self, deployment: str, score: float, degraded: bool) -> None:
        self.health_score.labels(deployment).set(score)
        self.degraded.labels(deployment).set(1.0 if degraded else 0.0)

    def forget_deployment_health(self, deployment: str) -> None:
        """A deployment gone from the configuration: its health series go too."""
        for gauge in (self.health_score, self.degraded):
            with contextlib.suppress(KeyError):
                gauge.remove(deployment)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the scraper's ``Accept`` header asks for: OpenMetrics
        (which carries the latency histograms' trace exemplars) or, by default,
        the classic text format."""
        if "application/openmetrics-text" not in accept:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
