"""Prices and the cost of a request.

A :class:`PriceTable` is loaded once from ``pricing.file`` (``config/prices.yaml``)::

    version: "2026-11-26"          # a string; surfaced in logs and headers
    models:
      gpt-4o: {input_per_1m: 2.50, output_per_1m: 10.00, cached_input_per_1m: 1.25}
      novita/meta-llama/llama-3.1-8b-instruct: {input_per_1m: 0.02, output_per_1m: 0.05}

The price of a deployment is, first found: its own ``price`` in the gateway
config, then the ``provider/model`` entry, then the bare ``model`` entry. A
model priced nowhere is *unpriced*: its cost is unknown (``None``), never $0;
:class:`UnpricedModels` counts such requests and says when to log the first.

:func:`cost_usd` prices a canonical usage object: ``prompt_tokens`` includes
cached tokens (``prompt_tokens_details.cached_tokens``), which cost
``cached_input_per_1m`` (the input rate when that is not given);
``completion_tokens`` includes reasoning tokens and costs the output rate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.canonical import JSON
from gateway.config.loader import ConfigError, format_loc, read_config_file
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


def cost_usd(usage: JSON, price: Price) -> float:
    """USD for one canonical usage object, rounded to 1e-9 (a nano-dollar).

    Uncached prompt tokens cost the input rate, cached ones the cached rate
    (the input rate when none is given), completion tokens the output rate.
    Missing or malformed counts read as 0 (an embedding has no completion).
    """
    prompt = _tokens(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(_tokens(details.get("cached_tokens")), prompt) if isinstance(details, dict) else 0
    completion = _tokens(usage.get("completion_tokens"))
    cached_rate = price.input_per_1m if price.cached_input_per_1m is None else price.cached_input_per_1m
    micro = (prompt - cached) * price.input_per_1m + cached * cached_rate + completion * price.output_per_1m
    return round(micro / 1_000_000, 9)


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
