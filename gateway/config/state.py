"""The ``state`` section: which backend keeps the gateway's state, and how
(docs/configuration.md "State backends")."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import model_validator

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

    @model_validator(mode="after")
    def _scheme(self) -> PostgresSettings:
        if not re.match(r"^postgres(ql)?://", self.url):
            raise ValueError("postgres.url must start with postgresql:// or postgres://")
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
    spend_journal: Flag = True
    """Embedded and postgres: journal spend beside ``path`` (``<path>.spend-journal/``);
    a killed process loses none."""
    failure_mode: FailureModes = FailureModes()

    @model_validator(mode="after")
    def _url(self) -> StateSettings:
        if self.backend == "postgres" and self.postgres is None:
            raise ValueError("postgres (at least postgres.url) is required for the postgres backend")
        if self.backend in ("redis", "postgres"):
            if not self.url:
                raise ValueError(f"url (of Redis) is required for the {self.backend} backend")
            if not re.match(r"^(redis|rediss|redis\+sentinel|redis\+cluster)://", self.url):
                raise ValueError("url must start with redis://, rediss://, redis+sentinel:// or redis+cluster://")
        return self
