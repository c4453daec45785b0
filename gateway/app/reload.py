"""Reload of the configuration (:class:`Reload`, a part of the app's lifecycle): SIGHUP (or
:meth:`Reload.reload`) re-reads the config file in a thread, validates it fully with the stored
models over it, and swaps in a new :class:`Service`. A bad file is rejected with its problems
logged, and the old config stays in force. Requests in flight keep the service they started with,
so none is dropped. The state backend, keys and spend carry over; its own settings need a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from gateway.admin.gate import AdminGate
from gateway.app.runtime_models import RuntimeModels
from gateway.config.loader import ConfigError, LoadedConfig, load_config
from gateway.config.settings import Settings
from gateway.observability.metrics import Metrics
from gateway.policies.auth import Authenticator
from gateway.policies.keys import KeyStore
from gateway.policies.pricing import PriceTable, load_prices
from gateway.server.records import RecordBatch
from gateway.server.rule_windows import RuleWindows
from gateway.server.service import Service
from gateway.state.base import BackendUnavailable
from gateway.upstream.http import HTTPClient

log = logging.getLogger("gateway")


def load_price_table(loaded: LoadedConfig) -> PriceTable:
    path = loaded.settings.pricing.file
    return load_prices(path) if path else PriceTable.empty()


class Reload:
    """The attributes below are the app's own."""

    reload_hooks: tuple[Callable[[Settings], None], ...] = ()
    """Called with the new settings when a reload is put in force."""

    metrics: Metrics
    models: RuntimeModels
    rule_windows: RuleWindows
    records: RecordBatch
    service: Service | None
    http: HTTPClient | None
    reloads: int
    config_path: Path | None
    _loaded: LoadedConfig
    _prices: PriceTable
    _keys: KeyStore | None
    _auth: Authenticator | None
    _gate: AdminGate | None

    def _build(self, loaded: LoadedConfig, prices: PriceTable, previous: Service | None) -> Service:
        raise NotImplementedError

    def _apply_logging(self, loaded: LoadedConfig) -> None:
        raise NotImplementedError

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load and apply the config file again; False (old config kept) if it is bad."""
        return not await self.reload_config()

    async def reload_config(self) -> list[str]:
        """Load the config file again and apply it with the stored models over it;
        its problems (the old config kept) or none (applied). The state backend,
        keys and spend carry over; its own settings need a restart."""
        if self.config_path is None or self.http is None:
            return ["the gateway was not started from a config file" if self.http else "the gateway is starting"]
        try:
            file = await asyncio.to_thread(load_config, self.config_path)
            prices = await asyncio.to_thread(load_price_table, file)
            loaded = await self.models.check(self.models.stored, file)
            service = self._build(loaded, prices, self.service)
        except (ConfigError, BackendUnavailable) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [f"the stored models cannot be read: {exc}"]
            log.error("config reload rejected; the previous config stays in force. %s", "; ".join(problems))
            self.metrics.config_reloads.labels("rejected").inc()
            return problems
        if loaded.settings.state != self._loaded.settings.state:
            log.warning("state settings changed in the config file: they apply at the next restart")
        self.models.file, self._prices = file, prices
        self._swap(loaded, service)
        if self._gate is not None:
            self._gate.configure(loaded.settings.admin)
        self._apply_logging(loaded)
        self.reloads += 1
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded from %s (%d model aliases)", self.config_path, len(loaded.settings.models))
        return []

    def _swap(self, loaded: LoadedConfig, service: Service) -> None:
        self.records.drain()  # ended requests are recorded under the service, logging and sinks they ended with
        self.service = service
        for hook in self.reload_hooks:  # parts that take a new config as they run (the notifier)
            hook(loaded.settings)
        self.rule_windows.poke()  # the new service's time windows: their next boundary
        self._auth = Authenticator(loaded.settings.auth, self._keys, loaded.settings.state.failure_mode.keys)
        self._loaded = loaded
