"""Runtime models: the config file overlaid by the aliases stored through the admin API
(``gateway/admin/model_store.py``, ``gateway/admin/models.py``) and by the stored routing rules
(``gateway/admin/routing_rules.py``: they replace the file's ``routing_rules``), put in force at
start-up and whenever the stored set changes (this replica's write, or another's seen by polling)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from gateway.admin.model_store import ModelStore, Stored, StoredRules, effective_config, open_secrets
from gateway.config.loader import ConfigError, LoadedConfig
from gateway.errors import Starting
from gateway.observability.metrics import Metrics
from gateway.security.secrets import SecretStore
from gateway.server.service import Service
from gateway.state.base import BackendUnavailable

log = logging.getLogger("gateway")

Build = Callable[[LoadedConfig], Service]
"""A service for a configuration (raises ConfigError when it cannot be built)."""
Swap = Callable[[LoadedConfig, Service], None]
"""Put a configuration and its service in force."""


class RuntimeModels:
    def __init__(self, file: LoadedConfig, metrics: Metrics, secrets: Callable[[], SecretStore]) -> None:
        self.file = file
        """The config file alone (replaced by a reload)."""
        self.store: ModelStore | None = None
        self._metrics = metrics
        self._secrets = secrets

    @property
    def model_store(self) -> ModelStore:
        if self.store is None:
            raise Starting()
        return self.store

    @property
    def stored(self) -> Stored:
        """The stored models in force."""
        return self.store.applied if self.store is not None else {}

    @property
    def stored_rules(self) -> StoredRules | None:
        """The stored routing rules in force (None: the file's)."""
        return self.store.applied_rules if self.store is not None else None

    async def check(self, stored: Stored, file: LoadedConfig | None = None) -> LoadedConfig:
        """The config ``file`` (the current one by default) with ``stored`` and the stored
        rules in force over it, their ``secret:`` references opened; ConfigError naming each problem."""
        return await self.effective(stored, self.stored_rules, file)

    async def check_rules(self, rules: StoredRules | None) -> LoadedConfig:
        """The configuration in force with ``rules`` (None: the file's) instead of the stored rules."""
        return await self.effective(self.stored, rules)

    async def effective(
        self, stored: Stored, rules: StoredRules | None, file: LoadedConfig | None = None
    ) -> LoadedConfig:
        opened = await open_secrets(stored, self._secrets().get_secret)
        return effective_config(file or self.file, opened, os.environ, rules)

    async def apply(self, version: str | None, stored: Stored, build: Build, swap: Swap) -> None:
        """Put the stored models and rules in force; a set that does not validate is logged,
        not applied (``BackendUnavailable`` reading the rules propagates: the poll retries)."""
        rules = await self.model_store.rules()
        try:
            loaded = await self.effective(stored, rules)
            service = build(loaded)
        except ConfigError as exc:
            log.error("stored models (version %s) not applied; the previous models stay in force. %s", version, exc)
            self._metrics.config_reloads.labels("rejected").inc()
            return
        self.model_store.applied, self.model_store.applied_rules = stored, rules
        swap(loaded, service)
        self._metrics.config_reloads.labels("applied").inc()
        log.info("stored models applied (version %s, %d model aliases)", version, len(loaded.settings.models))

    async def at_startup(self, store: ModelStore) -> LoadedConfig:
        """The file with the stored models over it; the file alone (logged) when
        they cannot be read or do not validate, so a bad record never stops a start."""
        self.store = store
        try:
            version, stored = await store.load()
            rules = await store.rules()
            loaded = await self.effective(stored, rules)
        except (BackendUnavailable, ConfigError) as exc:
            log.error("stored models and routing rules not applied at startup (retried when they change): %s", exc)
            return self.file
        store.seen, store.applied, store.applied_rules = version, stored, rules
        if stored:
            log.info("stored models applied at startup: %s", ", ".join(sorted(stored)))
        if rules is not None:
            log.info("stored routing rules applied at startup (%d rules)", len(rules.rules))
        return loaded
