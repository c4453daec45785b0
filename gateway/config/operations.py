"""Configuration sections for running the gateway rather than routing it:
logging, scheduled health checks, admin security, reports and metrics exposure. Part of the
one schema of :mod:`gateway.config.settings`."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from gateway.config.fields import Flag, PositiveFloat, PositiveInt, Text
from gateway.config.fields import Strict as _Strict
from gateway.config.governance import PasswordPolicy


class LoggingSettings(_Strict):
    """The access log and audit lines (gateway/observability/logs.py)."""

    format: Literal["json", "text"] = "json"
    access_log: Flag = True
    """One ``gateway.access`` line per chat or embeddings request."""
    log_payloads: Flag = False
    """Also log prompts and completions, redacted; never on by default."""
    payload_max_chars: Annotated[int, Field(ge=0)] = 4000
    redact_patterns: list[str] = Field(default_factory=list)
    """Extra regular expressions whose matches are redacted from logged payloads."""

    @model_validator(mode="after")
    def _patterns(self) -> LoggingSettings:
        for i, pattern in enumerate(self.redact_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redact_patterns[{i}]: not a valid regular expression: {exc}") from None
        return self


ProbeName = Literal["basic", "korean", "evaluation", "analysis"]
CHEAP_PROBES: tuple[ProbeName, ...] = ("basic",)


class HealthCheckSettings(_Strict):
    """Scheduled connection tests of every chat deployment (gateway/health/)."""

    enabled: Flag = False
    interval_s: Annotated[float, Field(ge=0.05)] = 60.0
    """The pause before each round of checks (the first one runs one interval after start)."""
    timeout_s: PositiveFloat = 10.0
    """Limit of one probe (also capped by the deployment's total_s)."""
    probes: Annotated[list[ProbeName], Field(min_length=1)] = Field(default_factory=lambda: list(CHEAP_PROBES))
    """The tests of a scheduled check; a check passes when all of them pass."""
    window: Annotated[int, Field(ge=1, le=100)] = 5
    """M: how many recent checks are remembered per deployment."""
    failures: Annotated[int, Field(ge=1, le=100)] = 3
    """N: failed checks among the last ``window`` that mark a deployment degraded."""
    recover_after: Annotated[int, Field(ge=1, le=100)] = 2
    """K: passing checks in a row that bring a degraded deployment back."""
    max_concurrent: Annotated[int, Field(ge=1, le=64)] = 4
    """Deployments checked at the same time in a round (and in a "test all" run)."""

    @model_validator(mode="after")
    def _failures_fit(self) -> HealthCheckSettings:
        if self.failures > self.window:
            raise ValueError("failures cannot exceed window")
        return self


class LockoutSettings(_Strict):
    """Account lock-out after repeated failed logins (kept in the state backend)."""

    max_failures: PositiveInt = 5
    """Failed logins within ``window_s`` that lock the account."""
    window_s: PositiveFloat = 900.0
    duration_s: PositiveFloat = 900.0
    """How long a locked account stays locked (an admin can unlock it sooner)."""


def _networks(values: list[str]) -> list[str]:
    for i, value in enumerate(values):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:  # the message names the entry, never its text (it may come from ${VAR})
            raise ValueError(f"entry [{i}] is not an IP address or CIDR network") from None
    return values


Networks = Annotated[list[str], AfterValidator(_networks)]


class AdminSettings(_Strict):
    """Admin API security: users' tokens, lock-out, client addresses, CORS (docs/security.md)."""

    allow_ips: Networks = Field(default_factory=list)
    """Addresses or CIDR networks allowed on /admin routes; empty allows all."""
    trusted_proxies: Networks = Field(default_factory=list)
    """Proxies whose X-Forwarded-For names the real client (for the allow-list and the audit log)."""
    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call /admin cross-origin; empty: CORS off."""
    access_token_ttl_s: PositiveInt = 3600
    refresh_token_ttl_s: PositiveInt = 7 * 24 * 3600
    lockout: LockoutSettings = LockoutSettings()
    password_min_length: Annotated[int, Field(ge=8, le=128)] = 12
    password_policy: PasswordPolicy = PasswordPolicy()
    session_idle_timeout_s: PositiveFloat = 1800.0
    """A session not used for this long ends (its refresh and access tokens get 401 ``session_idle``)."""
    scrypt_n: Literal[16384, 32768, 65536, 131072, 262144] = 131072
    """scrypt cost of new password hashes (r=8, p=1): 131072 takes 128 MiB per hash."""


class ReportTargets(_Strict):
    """The operations manual's targets the reports judge against."""

    availability: Annotated[float, Field(gt=0, le=1)] = 0.999
    p50_ms: PositiveFloat = 1000.0
    p95_ms: PositiveFloat = 2000.0
    p99_ms: PositiveFloat = 5000.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    satisfaction: Annotated[float, Field(ge=1, le=5)] = 4.5
    """The 7-day average feedback score (1-5) the report's "User satisfaction" judges against."""


class ReportsSettings(_Strict):
    """Daily statistics and the reports built from them (gateway/reports/)."""

    flush_interval_s: PositiveFloat = 10.0
    """How often this process writes its request statistics to the state backend."""
    retention_days: Annotated[int, Field(ge=1)] = 400
    low_use_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.10
    """Aliases with less than this share of a period's requests are listed as little used."""
    top_errors: Annotated[int, Field(ge=1, le=100)] = 10
    prometheus_url: str | None = None
    """Also compute the KPIs from this Prometheus (its HTTP API), e.g. http://prometheus:9090."""
    prometheus_timeout_s: PositiveFloat = 10.0
    targets: ReportTargets = ReportTargets()

    @model_validator(mode="after")
    def _url(self) -> ReportsSettings:
        if self.prometheus_url is not None and not re.match(r"^https?://[^/\s]+", self.prometheus_url):
            raise ValueError("prometheus_url must be an http(s) URL (http://host... or https://host...)")
        return self


def _empty_is_unset(value: Any) -> Any:
    """``""`` (what ``${VAR:-}`` gives for an unset variable) means the option is off."""
    return None if value == "" else value


def _token_length(value: str) -> str:
    if not 16 <= len(value) <= 4096:  # the message never repeats the token
        raise ValueError("must be 16 to 4096 characters (a long random string)")
    return value


MetricsToken = Annotated[Text, AfterValidator(_token_length)]
MetricsPort = Annotated[int, Field(ge=1, le=65535)]


class MetricsSettings(_Strict):
    """Who may read ``/metrics`` and where it is served (docs/security.md, "Metrics").
    Read at start: a change needs a restart."""

    bearer_token: Annotated[MetricsToken | None, BeforeValidator(_empty_is_unset)] = None
    """When set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (else 401)."""
    port: Annotated[MetricsPort | None, BeforeValidator(_empty_is_unset)] = None
    """When set, ``/metrics`` is served on this port of its own, and the client port answers 404."""
    host: Annotated[str | None, BeforeValidator(_empty_is_unset)] = None
    """The metrics listener's address (default: ``server.host``)."""
