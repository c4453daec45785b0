"""The mock's knobs (:class:`Behaviour`), its YAML config and how layers combine.

A request's effective behaviour is built from up to five layers, later ones
winning field by field (only fields a layer *sets* override)::

    config ``default``  <  config ``models.<model>``  <  runtime ``*``
        <  runtime ``<model>``  <  ``x-mock-<knob-with-dashes>`` request headers

Runtime layers are set with ``PUT /_mock/behaviours/{model}`` (``*`` = all models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Garbage = Literal["json", "content_type", "truncate"]

HEADER_PREFIX = "x-mock-"


class Behaviour(BaseModel):
    """How the mock answers one request. Times are milliseconds unless named otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0, ge=0, description="sleep before the response headers")
    ttft_ms: float = Field(default=0, ge=0, description="streams: sleep after the headers, before the first event")
    tokens_per_s: float = Field(default=0, ge=0, description="streams: pacing of content chunks; 0 = none")
    error_status: int | None = Field(default=None, ge=400, le=599, description="always answer this status")
    error_rate: float | None = Field(default=None, ge=0, le=1, description="probability of an error")
    fail_times: int | None = Field(default=None, ge=0, description="the next N requests fail, then succeed")
    retry_after: float | None = Field(default=None, ge=0, description="seconds, sent as Retry-After on errors")
    disconnect_after_chunks: int | None = Field(default=None, ge=0, description="streams: drop after N chunks")
    garbage: Garbage | None = None
    reply: str | None = Field(default=None, description="fixed reply text")
    output_tokens: int = Field(default=12, ge=0, le=100_000, description="words in generated replies")
    thinking_tokens: int = Field(
        default=8, ge=1, le=100_000, description="words of Anthropic thinking / Responses reasoning, when asked for"
    )
    hang_ms: float = Field(default=0, ge=0, description="streams: stall after the first content chunk")
    require_api_key: str | None = Field(default=None, description="the key the request must carry")
    headers: dict[str, str] | None = Field(
        default=None, description="extra headers on every answer, errors included (rate-limit headers, for instance)"
    )


class MockConfig(BaseModel):
    """The mock's YAML config: ``{default: Behaviour, models: {name: Behaviour}, embedding_dims}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Behaviour = Behaviour()
    models: dict[str, Behaviour] = Field(default_factory=dict)
    embedding_dims: int = Field(default=16, ge=1, le=8192)


class MockConfigError(ValueError):
    """A mock config file that cannot be read or does not match :class:`MockConfig`."""


def load_mock_config(path: str | None) -> MockConfig:
    """Read a YAML config; ``None`` gives the defaults (instant, well-behaved answers).

    Raises :class:`MockConfigError` naming the file and the path of the bad value.
    """
    if path is None:
        return MockConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MockConfigError(f"mock config {path}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MockConfigError(f"mock config {path}: top level must be a mapping")
    try:
        return MockConfig.model_validate(data)
    except ValidationError as exc:
        raise MockConfigError(f"mock config {path}: {describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """One line per problem: ``models.gpt-4o.error_status: Input should be ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())


_HEADER_FIELDS: Mapping[str, str] = MappingProxyType(
    {HEADER_PREFIX + name.replace("_", "-"): name for name in Behaviour.model_fields}
)
_NULLS = frozenset({"", "none", "null"})


def header_layer(headers: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """The knobs set by ``x-mock-*`` headers (validated), or ``None`` when there are none.

    A value of ``none``/``null``/empty clears the knob for this request.
    Raises ``ValueError`` for an unknown ``x-mock-*`` header or a bad value.
    """
    raw: dict[str, Any] = {}
    for name, value in headers:
        if not name.startswith(HEADER_PREFIX):
            continue
        field = _HEADER_FIELDS.get(name)
        if field is None:
            raise ValueError(f"unknown mock header {name!r}")
        raw[field] = None if value.strip().lower() in _NULLS else value
    if not raw:
        return None
    try:
        checked = Behaviour.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"bad mock header: {describe(exc)}") from exc
    return {name: getattr(checked, name) for name in raw}


def layer(behaviour: Behaviour | None) -> dict[str, Any]:
    """The fields a layer explicitly sets."""
    if behaviour is None:
        return {}
    return {name: getattr(behaviour, name) for name in behaviour.model_fields_set}


def merge(layers: Iterable[Mapping[str, Any]]) -> Behaviour:
    """Combine layers (lowest precedence first) over the defaults, without re-validating."""
    values: dict[str, Any] = {}
    for one in layers:
        values.update(one)
    return Behaviour.model_construct(_fields_set=set(values), **values)
