"""The ``state`` section: which backend keeps the gateway's state, and how
(docs/configuration.md "State backends")."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.fields import Flag, Mode, PositiveFloat, PositiveInt
from gateway.config.fields import Strict as _Strict


class FailureModes(_Strict):
    """What a policy does when the state backend cannot be reached: ``open``
    lets the request through (and counts a degraded decision), ``closed``
    refuses it with 503."""

    limits: Mode = "open"
    cache: Mode = "open"
    budgets: Mode = "open"
    keys: Mode = "closed"


class RetentionSettings(_Strict):
    """``state.postgres.retention``: the request-detail tier (docs/configuration.md
    "PostgreSQL retention tiers"); the daily aggregates are ``reports.retention_days``."""

    detail: Flag = True
    """Write every finished request's detail (no prompt or answer) to ``gw_requests``."""
    detail_days: PositiveInt = 7
    """Whole days (UTC) of detail kept in PostgreSQL; older days are archived, then deleted."""
    archive: Flag = True
    """Export each day to ``archive_dir`` before deleting it (``false``: delete only)."""
    archive_dir: str = "data/archive"
    """Where ``requests-YYYY-MM-DD.jsonl.gz`` files go (relative to the working directory)."""
    run_in_app: Flag = True
    """Run the retention job in the gateway every ``interval_s`` (else: ``gateway retention run``)."""
    interval_s: PositiveFloat = 3600.0
    buffer_rows: PositiveInt = 50_000
    """Rows of detail held in memory at most while PostgreSQL is slow or down (the oldest go first)."""


class PostgresSettings(_Strict):
    url: str
    """postgresql://user[:password]@host:port/database (``${ENV}`` references expand)."""
    max_connections: PositiveInt = 20
    """Pool size per replica."""
    statement_timeout_s: PositiveFloat = 5.0
    connect_timeout_s: PositiveFloat = 2.0
    acquire_timeout_s: PositiveFloat = 1.0
    """How long a call waits for a free pooled connection before it fails (pool saturated)."""
    mirror_ttl_s: PositiveFloat = 3600.0
    """How long Redis keeps its copy of a record (re-read from PostgreSQL after)."""
    read_url: str | None = None
    """A read replica of the same database: ``gateway report`` reads from it, and the gateway
    exports its replication lag (``gateway_state_postgres_replica_lag_seconds``)."""
    retention: RetentionSettings = RetentionSettings()

    @model_validator(mode="after")
    def _scheme(self) -> PostgresSettings:
        for field, url in (("url", self.url), ("read_url", self.read_url)):
            if url is not None and not re.match(r"^postgres(ql)?://", url):
                raise ValueError(f"postgres.{field} must start with postgresql:// or postgres://")
        return self


class StateSettings(_Strict):
    backend: Literal["embedded", "redis", "postgres"] = "embedded"
    path: str = "data/gateway.db"
    """SQLite file of the embedded backend (relative to the working directory); with
    ``postgres``, the spend journal is kept beside this path."""
    url: str | None = None
    """redis://, rediss://, redis+sentinel://host:port/service_name or redis+cluster://host:port"""
    postgres: PostgresSettings | None = None
    """The ``postgres`` backend's database (records, ledger, stored responses, logs); ``url`` is its Redis."""
    flush_interval_s: PositiveFloat = 1.0
    """How often buffered spend is written to the backend."""
    refresh_interval_s: PositiveFloat = 1.0
    """How stale another replica's spend and key changes may be seen."""
    spend_journal: Flag | None = None
    """Journal spend beside ``path`` (``<path>.spend-journal/``): a killed process restarted
    on the same disk loses none. Unset: on for embedded and postgres, off for redis (whose
    replicas seldom keep a disk; on Kubernetes an emptyDir outlives a container's restart)."""
    spend_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    """Redis and postgres: a spend batch counts as written only once this many Redis replicas
    hold it (``WAIT`` after the batch, on its connection); otherwise it is written again (once:
    the batch id). 1 on a Cluster or Sentinel with replicas: a failover loses no spend."""
    spend_replica_wait_s: Annotated[float, Field(gt=0, le=0.4)] = 0.2
    """How long one spend write waits for ``spend_replicas`` (under Redis's 0.5 s socket timeout)."""
    failure_mode: FailureModes = FailureModes()

    @property
    def journaled(self) -> bool:
        """Whether spend is journaled (``spend_journal``, or the backend's default)."""
        return self.backend != "redis" if self.spend_journal is None else self.spend_journal

    @model_validator(mode="after")
    def _url(self) -> StateSettings:
        if self.backend == "postgres" and self.postgres is None:
            raise ValueError("postgres (at least postgres.url) is required for the postgres backend")
        if self.spend_replicas and self.backend == "embedded":
            raise ValueError("spend_replicas needs a Redis (backend redis or postgres); embedded has no replicas")
        if self.backend in ("redis", "postgres"):
            if not self.url:
                raise ValueError(f"url (of Redis) is required for the {self.backend} backend")
            if not re.match(r"^(redis|rediss|redis\+sentinel|redis\+cluster)://", self.url):
                raise ValueError("url must start with redis://, rediss://, redis+sentinel:// or redis+cluster://")
        return self
