"""Prices and the cost of a request.

A :class:`PriceTable` is loaded once from ``pricing.file`` (``config/prices.yaml``)::

    version: "2026-12-06"          # a string; surfaced in logs and headers
    models:
      gpt-4o: {input_per_1m: 2.50, output_per_1m: 10.00, cached_input_per_1m: 1.25}
      claude-haiku-4-5: {input_per_1m: 1.00, output_per_1m: 5.00, cached_input_per_1m: 0.10,
                         cache_write_per_1m: 1.25, cache_write_1h_per_1m: 2.00}

The price of a deployment is, first found: its own ``price`` in the gateway
config, then the ``provider/model`` entry, then the bare ``model`` entry. A
model priced nowhere is *unpriced*: its cost is unknown (``None``), never $0;
:class:`UnpricedModels` counts such requests and says when to log the first.

:func:`cost_usd` prices a canonical usage object, part by part
(:func:`cost_breakdown` shows the parts). ``prompt_tokens`` is the whole
prompt: cache reads (``prompt_tokens_details.cached_tokens``) cost
``cached_input_per_1m``, cache writes (``cache_write_tokens``, of which
``cache_write_1h_tokens`` were written for an hour) the write rates, the rest
the input rate. ``completion_tokens`` includes the reasoning tokens
(``completion_tokens_details.reasoning_tokens``): they cost
``reasoning_per_1m``, the rest the output rate, so no token is charged twice.
Long-context tiers and time-of-day multipliers: :mod:`gateway.config.price_rates`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.canonical import JSON
from gateway.config.loader import ConfigError, format_loc, read_config_file
from gateway.config.price_rates import multiplier_at, rates_for
from gateway.config.settings import Price

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Annotated[str, Field(min_length=1)]
    models: dict[Annotated[str, Field(min_length=1)], Price]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key given twice in one mapping (plain YAML
    keeps the last one silently: a typo'd price file must not do that)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class PriceTable:
    """Prices by ``provider/model`` or bare model name (read-only)."""

    version: str
    """The file's ``version``; ``"none"`` for :meth:`empty`."""
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    """The file it was loaded from ("" for an empty table)."""

    @classmethod
    def empty(cls) -> PriceTable:
        """No prices (``pricing.file: null``): only deployments' own prices apply."""
        return cls(version="none")

    def price_for(self, provider: str, model: str, override: Price | None = None) -> Price | None:
        """The deployment's own price, else ``provider/model``, else ``model``;
        None when the model is unpriced."""
        if override is not None:
            return override
        specific = self.prices.get(f"{provider}/{model}")
        return specific if specific is not None else self.prices.get(model)

    def __len__(self) -> int:
        return len(self.prices)


def parse_prices(text: str, *, source: str = "<string>") -> PriceTable:
    """A price table from YAML text; every problem names the bad value's path."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        got = "an empty document" if raw is None else type(raw).__name__
        raise ConfigError([f"{source}: the top level must be a mapping with version and models, got {got}"])
    try:
        parsed = _PriceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source)) from None
    return PriceTable(version=parsed.version, prices=MappingProxyType(dict(parsed.models)), source=source)


def load_prices(path: str | Path) -> PriceTable:
    """Load ``path``; a missing, unreadable or invalid file is a :class:`ConfigError`."""
    return parse_prices(read_config_file(path, "cannot read the price file"), source=str(path))


def _problems(exc: ValidationError, source: str) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif loc == ("version",) and err["type"] == "string_type":
            msg += ' (quote it: version: "2026-11-26")'
        problems.append(f"{source}: {format_loc(loc)}: {msg}")
    return problems


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _detail(usage: JSON, block: str, key: str) -> int:
    details = usage.get(block)
    return _tokens(details.get(key)) if isinstance(details, dict) else 0


@dataclass(frozen=True)
class CostPart:
    """One kind of token of a request and what it cost."""

    name: str
    """``input`` (prompt tokens neither read from nor written to a cache), ``cache_read``,
    ``cache_write_5m``, ``cache_write_1h``, ``output`` (completion less reasoning), ``reasoning``."""
    tokens: int
    per_1m: float
    """The rate applied (after the tier, before the time-of-day multiplier)."""
    usd: float
    """``tokens * per_1m / 1e6 * multiplier``, rounded to 1e-9."""


@dataclass(frozen=True)
class CostBreakdown:
    """The cost of one request, part by part (parts with no tokens left out)."""

    parts: tuple[CostPart, ...]
    tier: int | None
    """``above_prompt_tokens`` of the long-context tier applied; None for the base rates."""
    multiplier: float
    """The time-of-day multiplier applied (1 outside every window)."""
    total_usd: float
    """The request's cost, rounded once to 1e-9 (the parts' sum may differ by rounding)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "total_usd": self.total_usd,
            "tier": self.tier,
            "multiplier": self.multiplier,
            "parts": {p.name: {"tokens": p.tokens, "per_1m": p.per_1m, "usd": p.usd} for p in self.parts},
        }


def cost_breakdown(usage: JSON, price: Price, *, at: datetime | None = None) -> CostBreakdown:
    """The cost of one canonical usage object, part by part.

    ``at`` is when the request is priced (default: now), for ``time_of_day``
    windows. Missing or malformed counts read as 0 (an embedding has no
    completion); counts are clamped so that no token is charged twice: cache
    reads at most the prompt, writes at most the rest of it, the 1-hour writes
    at most the writes, reasoning at most the completion.
    """
    prompt = _tokens(usage.get("prompt_tokens"))
    read = min(_detail(usage, "prompt_tokens_details", "cached_tokens"), prompt)
    written_1h = _detail(usage, "prompt_tokens_details", "cache_write_1h_tokens")
    written = min(max(_detail(usage, "prompt_tokens_details", "cache_write_tokens"), written_1h), prompt - read)
    written_1h = min(written_1h, written)
    completion = _tokens(usage.get("completion_tokens"))
    reasoning = min(_detail(usage, "completion_tokens_details", "reasoning_tokens"), completion)
    rates = rates_for(price, prompt)
    multiplier = 1.0
    if price.time_of_day:
        multiplier = multiplier_at(price.time_of_day, at if at is not None else datetime.now(UTC))
    counted = (
        ("input", prompt - read - written, rates.input),
        ("cache_read", read, rates.cache_read),
        ("cache_write_5m", written - written_1h, rates.cache_write),
        ("cache_write_1h", written_1h, rates.cache_write_1h),
        ("output", completion - reasoning, rates.output),
        ("reasoning", reasoning, rates.reasoning),
    )
    micro = sum(tokens * rate for _, tokens, rate in counted)
    parts = tuple(
        CostPart(name, tokens, rate, round(tokens * rate * multiplier / 1_000_000, 9))
        for name, tokens, rate in counted
        if tokens
    )
    return CostBreakdown(parts, rates.tier, multiplier, round(micro * multiplier / 1_000_000, 9))


def cost_usd(usage: JSON, price: Price, *, at: datetime | None = None) -> float:
    """USD for one canonical usage object, rounded to 1e-9 (a nano-dollar); never
    negative. The parts and their rates: :func:`cost_breakdown`."""
    return cost_breakdown(usage, price, at=at).total_usd


def reported_cost(usage: JSON) -> float | None:
    """The cost the upstream reported itself (``usage.cost``, USD: OpenRouter and
    other OpenAI-compatible servers), or None when it gave no usable number."""
    value = usage.get("cost")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < float("inf") else None


@dataclass
class UnpricedModels:
    """Requests to models with no price, per app (not global).

    ``note`` counts every occurrence and returns True only the first time a
    ``(provider, model)`` is seen, so the caller logs it once; the caller must
    record the cost as unknown, never as $0. Keys are deployment models from
    the config, so the dict stays as small as the config.
    """

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def note(self, provider: str, model: str) -> bool:
        key = (provider, model)
        seen = self.counts.get(key, 0)
        self.counts[key] = seen + 1
        return seen == 0

    @property
    def total(self) -> int:
        """Unpriced requests so far, all models together."""
        return sum(self.counts.values())
