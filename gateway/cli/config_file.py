"""The config file, as the commands that read one find and load it: ``--config`` (default
``$GATEWAY_CONFIG``, else ``config/gateway.yaml``), its problems printed one per line."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from gateway.config.loader import ConfigError, LoadedConfig, load_config

DEFAULT_CONFIG = "config/gateway.yaml"
CONFIG_ENV = "GATEWAY_CONFIG"


def default_config(env: Mapping[str, str]) -> str:
    return env.get(CONFIG_ENV) or DEFAULT_CONFIG


def load_or_say(path: str) -> LoadedConfig | None:
    """The loaded config; None after printing its problems (the command exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return None
