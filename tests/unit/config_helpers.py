"""Helpers shared by the config schema and loader tests: configs go through the loader, as they
do in the gateway."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config.loader import ConfigError, LoadedConfig, parse_config
from gateway.config.settings import Settings

MINIMAL = """
models:
  a:
    deployments:
      - {provider: openai, model: m}
"""


def parse(text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    return parse_config(textwrap.dedent(text), env=env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    # str() carries every problem too (that is what the CLI prints).
    for p in info.value.problems:
        assert p in str(info.value)
    return info.value.problems


def settings(text: str, env: dict[str, str] | None = None) -> Settings:
    return parse(text, env).settings
