"""The configuration schema: strict pydantic models of the config file.

Unknown keys and wrong types are rejected; :class:`Settings` also checks the
references between aliases (fallbacks, deployment ids, key models). The
operating sections live in :mod:`gateway.config.operations`, the shared field
types in :mod:`gateway.config.fields`, and reading a file into these models
(``${ENV}``, error paths) in :mod:`gateway.config.loader`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from gateway.config.backup import BackupSettings
from gateway.config.feedback import FeedbackSettings
from gateway.config.fields import Flag, PositiveFloat, PositiveInt, Text
from gateway.config.fields import Strict as _Strict
from gateway.config.governance import DataRetention
from gateway.config.jobs import JobsSettings
from gateway.config.notify import NotificationsSettings
from gateway.config.operations import (
    AdminSettings,
    HealthCheckSettings,
    LoggingSettings,
    MetricsSettings,
    ReportsSettings,
)
from gateway.config.pacing import PacingSettings
from gateway.config.price_rates import Rate, Tiers, TimeWindows
from gateway.config.queue import QueueSettings
from gateway.config.rules import AliasFacts, Rule, ShadowTraffic, rule_problems
from gateway.config.security_review import SecurityReviewSettings
from gateway.config.state import StateSettings
from gateway.config.upstream import UpstreamSettings

ProviderKind = Literal["openai", "anthropic", "gemini", "novita", "openai_compatible"]
Strategy = Literal["priority", "weighted", "round_robin", "least_inflight", "lowest_latency", "lowest_cost"]


class LimitSpec(_Strict):
    """Rate limits of one scope; absent means unlimited."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None


class LimitsSettings(_Strict):
    strategy: Literal["fixed_window", "moving_window", "sliding_window_counter"] = "fixed_window"
    """fixed_window: one atomic increment per window (fastest; refunds on memory and Redis)."""
    max_concurrent: PositiveInt | None = 1000
    """Gateway-wide concurrent requests (the operations manual's 1000)."""
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None


class CacheSettings(_Strict):
    enabled: Flag = True
    ttl_s: PositiveFloat = 3600.0
    max_bytes: PositiveInt = 64 * 1024 * 1024
    """Memory bound of the embedded cache."""
    max_entry_bytes: PositiveInt = 1024 * 1024
    scope: Literal["team", "global"] = "team"
    cache_sampled: Flag = False
    """Also cache requests with temperature > 0 (aliases may override)."""


class BudgetSettings(_Strict):
    timezone: str = "UTC"
    warn_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.8
    daily_usd: Annotated[float, Field(gt=0)] | None = None
    monthly_usd: Annotated[float, Field(gt=0)] | None = None
    estimate_output_tokens: Annotated[int, Field(ge=0)] = 1024
    """Output tokens reserved for a request with no max_tokens whose deployments have no max_tokens_cap."""

    @model_validator(mode="after")
    def _zone(self) -> BudgetSettings:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("timezone is not a known IANA time zone name (Europe/Paris, America/New_York)") from None
        return self


class PricingSettings(_Strict):
    file: str | None = "config/prices.yaml"
    """Price table per upstream model; a deployment's own ``price`` wins."""
    drift_alert_share: Annotated[float, Field(gt=0, le=1)] = 0.05
    """How far an upstream's own cost (``usage.cost``) may drift from the gateway's before the
    report's cost reconciliation flags it (the GatewayCostDrift alert uses the same 0.05)."""


class Timeouts(_Strict):
    connect_s: PositiveFloat = 5.0
    first_byte_s: PositiveFloat = 30.0
    idle_s: PositiveFloat = 30.0
    total_s: PositiveFloat = 30.0


class TimeoutOverrides(_Strict):
    connect_s: PositiveFloat | None = None
    first_byte_s: PositiveFloat | None = None
    idle_s: PositiveFloat | None = None
    total_s: PositiveFloat | None = None

    def over(self, base: Timeouts) -> Timeouts:
        return base.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


class RetryPolicy(_Strict):
    max_retries: Annotated[int, Field(ge=0, le=10)] = 1
    """Extra attempts on the same deployment for a retryable error."""
    backoff_initial_s: Annotated[float, Field(ge=0)] = 0.1
    backoff_max_s: Annotated[float, Field(ge=0)] = 4.0
    max_retry_after_s: Annotated[float, Field(ge=0)] = 10.0
    """A Retry-After longer than this moves on to the next deployment instead of waiting."""
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    """Upper bound on attempts per request, across deployments and fallbacks."""


class BreakerPolicy(_Strict):
    consecutive_failures: Annotated[int, Field(ge=1)] = 5
    error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    window_s: PositiveFloat = 30.0
    min_requests: Annotated[int, Field(ge=1)] = 20
    cooldown_s: PositiveFloat = 30.0


class Price(_Strict):
    """USD per million tokens (docs/configuration.md, "Prices"); how a request is
    priced: gateway.policies.pricing.cost_usd."""

    input_per_1m: Rate
    output_per_1m: Rate
    cached_input_per_1m: Rate | None = None
    """Cache reads; absent: the input rate."""
    cache_write_per_1m: Rate | None = None
    """5-minute cache writes; absent: the input rate."""
    cache_write_1h_per_1m: Rate | None = None
    """1-hour cache writes; absent: the 5-minute write rate."""
    reasoning_per_1m: Rate | None = None
    """Reasoning tokens (part of completion_tokens, charged once); absent: the output rate."""
    tiers: Tiers = ()
    """Long-context tiers: the highest one the prompt exceeds replaces the rates for the whole request."""
    time_of_day: TimeWindows = ()
    """UTC windows; the first that holds the time of pricing multiplies the whole cost."""


class Params(_Strict):
    defaults: dict[str, Any] = Field(default_factory=dict)
    """Parameters added to a request that does not set them."""
    ranges: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(default_factory=dict)
    """Numeric parameters clamped into [low, high] for this deployment."""
    max_tokens_cap: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Params:
        for name, (low, high) in self.ranges.items():
            if low > high:
                raise ValueError(f"range of {name!r} is empty: its low bound is above its high bound")
        return self


class Deployment(_Strict):
    id: str | None = None
    provider: ProviderKind
    model: Annotated[Text, Field(min_length=1)]
    base_url: str | None = None
    api_key: Text | None = None
    auth_header: str | None = None
    auth_scheme: str | None = None
    api_version: Text | None = None
    headers: dict[str, Text] = Field(default_factory=dict)
    drop_params: list[str] = Field(default_factory=list)
    api: Literal["chat", "responses"] = "chat"
    """OpenAI-format deployments: the upstream API spoken (``responses``: ``POST /responses``)."""
    weight: PositiveFloat = 1.0
    priority: int = 0
    timeouts: TimeoutOverrides = TimeoutOverrides()
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    params: Params = Params()
    price: Price | None = None
    limits: LimitSpec | None = None
    """Stay under the provider account's quota: a deployment over its rpm/tpm is skipped."""
    provider_options: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Provider-only top-level fields a client may set for this deployment through
    ``provider_options.<provider>`` (gateway/providers/options.py); none by default."""
    reasoning_style: Literal["auto", "adaptive", "budget"] = "auto"
    """Anthropic deployments: how ``reasoning_effort`` becomes ``thinking`` (``adaptive``:
    ``{"type": "adaptive"}`` + ``output_config.effort``; ``budget``: ``budget_tokens``; ``auto``:
    by the model name, gateway/providers/anthropic_reasoning.py)."""
    auto_cache: Flag = False
    """Anthropic deployments: a request that marks no ``cache_control`` gets breakpoints on
    its last system block and its last tool (gateway/providers/anthropic_caching.py)."""

    @model_validator(mode="after")
    def _url(self) -> Deployment:
        if self.limits is not None and self.limits.max_concurrent is not None:
            raise ValueError("limits.max_concurrent is not used on a deployment: set max_concurrency instead")
        if self.base_url is not None and not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ValueError("base_url must be an http(s) URL (http://host... or https://host...)")
        if self.provider == "openai_compatible" and not self.base_url:
            raise ValueError("base_url is required for provider openai_compatible")
        if self.api == "responses" and self.provider in ("anthropic", "gemini"):
            raise ValueError(f"api: responses is for OpenAI-format deployments, not provider {self.provider}")
        return self


class ModelAlias(_Strict):
    kind: Literal["chat", "embedding"] = "chat"
    description: str = ""
    strategy: Strategy = "priority"
    deployments: Annotated[list[Deployment], Field(min_length=1)]
    fallbacks: list[str] = Field(default_factory=list)
    context_window: Annotated[int, Field(ge=1)] | None = None
    context_window_fallbacks: list[str] = Field(default_factory=list)
    requires_env: list[str] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    limits: LimitSpec | None = None
    cache_sampled: Flag | None = None


class StaticKey(_Strict):
    """A client key defined in the config file, stored only as its SHA-256."""

    name: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    models: list[str] | None = None
    """Aliases this key may use; absent means all."""
    priority: str | None = None
    """Its class in the admission queue (one of ``queue.classes``); absent: ``queue.default_class``."""


class AuthSettings(_Strict):
    master_key: Text | None = None
    """Full access; from ``${GATEWAY_MASTER_KEY}`` in the default config."""
    keys: list[StaticKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _key_strength(self) -> AuthSettings:
        if self.master_key is not None and len(self.master_key) < 8:
            raise ValueError("master_key must be at least 8 characters")
        return self


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    max_connections_per_upstream: Annotated[int, Field(ge=1)] = 1000
    # Requests are bounded before they are read (docs/security.md, "Request limits").
    max_admin_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    """Largest body of every route outside /v1 (admin, login included): 413 before reading."""
    max_json_depth: Annotated[int, Field(ge=1, le=128)] = 64
    """Deepest nesting of a JSON body, checked right after parsing (400 json_too_deep)."""
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 32 * 1024
    """Request line plus headers; more is 431 and the connection closed (read at start)."""
    max_headers: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Header fields per request; more is 431 and the connection closed (read at start)."""
    header_timeout_s: PositiveFloat = 10.0
    """A request head (or a new connection's first one) must arrive within this (read at start)."""
    keepalive_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 5
    """An idle keep-alive connection is closed after this (read at start)."""
    shutdown_grace_s: PositiveFloat = 30.0
    """On SIGTERM: how long requests and streams in flight may take to finish before they are
    cut; new connections are refused meanwhile (read at start)."""
    gc_threshold: Annotated[int, Field(ge=700, le=10_000_000)] = 100_000
    """The cyclic garbage collector's first threshold in a serving process (Python's default is
    700): the objects of requests in flight no longer trigger collections and get promoted into
    the ones that scan the whole heap (docs/performance.md, "The garbage collector"; read at start)."""
    record_batch_ms: Annotated[float, Field(ge=0, le=50)] = 5.0
    """How long a finished request's record (metrics, access log line, span, report statistics,
    live view, feedback owner) may wait to be written with others' while requests are still in
    flight; 0 writes each as it ends (gateway/server/records.py; read at start)."""


class ResponsesSettings(_Strict):
    """Stored OpenAI Responses (``previous_response_id``): kept in the state backend."""

    store_ttl_s: Annotated[float, Field(gt=0)] = 30 * 86400
    max_stored_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    """A conversation larger than this is answered but not stored: continuing it is a 404."""


class RouterSettings(_Strict):
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    pacing: PacingSettings = PacingSettings()


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    state: StateSettings = StateSettings()
    limits: LimitsSettings = LimitsSettings()
    queue: QueueSettings = QueueSettings()
    cache: CacheSettings = CacheSettings()
    budgets: BudgetSettings = BudgetSettings()
    pricing: PricingSettings = PricingSettings()
    router: RouterSettings = RouterSettings()
    admin: AdminSettings = AdminSettings()
    health_checks: HealthCheckSettings = HealthCheckSettings()
    logging: LoggingSettings = LoggingSettings()
    reports: ReportsSettings = ReportsSettings()
    metrics: MetricsSettings = MetricsSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    responses: ResponsesSettings = ResponsesSettings()
    retention: DataRetention = DataRetention()
    jobs: JobsSettings = JobsSettings()
    backup: BackupSettings = BackupSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    security_review: SecurityReviewSettings = SecurityReviewSettings()
    models: dict[str, ModelAlias] = Field(default_factory=dict)
    model_aliases: dict[Annotated[str, Field(min_length=1, max_length=200)], str | list[str]] = Field(
        default_factory=dict
    )
    """Model names as clients send them (exact, or globs such as ``claude-*``) -> an alias,
    or a list of aliases of which the first one enabled is used (gateway/routing/names.py)."""
    routing_rules: list[Rule] = Field(default_factory=list)
    """Routing decided by data, per request (gateway/config/rules.py, gateway/routing/rules.py)."""
    shadow_traffic: ShadowTraffic = ShadowTraffic()
    notifications: NotificationsSettings = NotificationsSettings()

    @model_validator(mode="after")
    def _references(self) -> Settings:
        problems: list[str] = []
        ids: dict[str, str] = {}
        for alias, spec in self.models.items():
            for field in ("fallbacks", "context_window_fallbacks"):
                for i, ref in enumerate(getattr(spec, field)):
                    if ref not in self.models:
                        problems.append(f"models.{alias}.{field}[{i}]: unknown model alias {ref!r}")
                    elif ref == alias:
                        problems.append(f"models.{alias}.{field}[{i}]: an alias cannot fall back to itself")
                    elif self.models[ref].kind != spec.kind:
                        problems.append(
                            f"models.{alias}.{field}[{i}]: {ref!r} is a {self.models[ref].kind} model, not {spec.kind}"
                        )
            for i, dep in enumerate(spec.deployments):
                if spec.kind == "embedding" and dep.provider == "anthropic":
                    problems.append(f"models.{alias}.deployments[{i}].provider: anthropic has no embeddings")
                did = deployment_id(alias, i, dep)
                if did in ids:
                    problems.append(
                        f"models.{alias}.deployments[{i}].id: duplicate deployment id {did!r} (also in {ids[did]})"
                    )
                ids[did] = f"models.{alias}"
        for name, targets in self.model_aliases.items():
            if not targets:
                problems.append(f"model_aliases.{name}: names no alias")
            for ref in [targets] if isinstance(targets, str) else targets:
                if ref not in self.models:
                    problems.append(f"model_aliases.{name}: unknown model alias {ref!r}")
        for i, key in enumerate(self.auth.keys):
            if key.priority is not None and key.priority not in self.queue.classes:
                problems.append(f"auth.keys[{i}].priority: {key.priority!r} is not one of queue.classes")
            for j, ref in enumerate(key.models or ()):
                if ref not in self.models:
                    problems.append(f"auth.keys[{i}].models[{j}]: unknown model alias {ref!r}")
        if self.routing_rules:
            facts = {
                a: AliasFacts(m.kind, m.strategy, [deployment_id(a, i, d) for i, d in enumerate(m.deployments)])
                for a, m in self.models.items()
            }
            problems += rule_problems(self.routing_rules, facts)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def deployment_id(alias: str, index: int, dep: Deployment) -> str:
    """A deployment's stable name: its ``id``, else ``<alias>/<index>``."""
    return dep.id or f"{alias}/{index}"
