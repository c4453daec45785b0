"""The parts of a price beyond its base rates: long-context tiers and time-of-day
multipliers, as config models (``gateway.config.settings.Price`` uses them), and
how the rates of one request are chosen from them.

A *tier* (``tiers``) names a prompt size: when a request's ``prompt_tokens``
exceed ``above_prompt_tokens``, the rates the highest such tier gives replace
the base ones for the whole request (input, cache, output and reasoning alike),
as Gemini, Anthropic and OpenAI bill long prompts. A rate a tier leaves out
keeps the base's given value; the derived defaults (a cache write at the input
rate, ...) are then taken from the merged rates.

A *window* (``time_of_day``) is a UTC span ``[start, end)`` of the day
("HH:MM"); ``end`` before ``start`` wraps past midnight. The first window that
holds the time of pricing multiplies the whole cost.

This module imports nothing from the rest of the gateway but the config field
types, so the config schema can use it without an import cycle.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from gateway.config.fields import Strict

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""USD per million tokens: a finite number, 0 or more."""

RATE_FIELDS = (
    "input_per_1m",
    "output_per_1m",
    "cached_input_per_1m",
    "cache_write_per_1m",
    "cache_write_1h_per_1m",
    "reasoning_per_1m",
)

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _list_of(what: str) -> BeforeValidator:
    """YAML gives lists; the models keep tuples (a price stays hashable)."""

    def as_tuple(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list of {what}")
        return tuple(value)

    return BeforeValidator(as_tuple)


class PriceTier(Strict):
    """Rates for a request whose ``prompt_tokens`` exceed ``above_prompt_tokens``."""

    above_prompt_tokens: Annotated[int, Field(ge=1)]
    input_per_1m: Rate | None = None
    output_per_1m: Rate | None = None
    cached_input_per_1m: Rate | None = None
    cache_write_per_1m: Rate | None = None
    cache_write_1h_per_1m: Rate | None = None
    reasoning_per_1m: Rate | None = None

    @model_validator(mode="after")
    def _sets_a_rate(self) -> PriceTier:
        if all(getattr(self, name) is None for name in RATE_FIELDS):
            raise ValueError(f"a tier must set at least one rate ({', '.join(RATE_FIELDS)})")
        return self


def _ascending(tiers: tuple[PriceTier, ...]) -> tuple[PriceTier, ...]:
    for before, after in pairwise(tiers):
        if after.above_prompt_tokens <= before.above_prompt_tokens:
            raise ValueError(
                "tiers must be listed by rising above_prompt_tokens, each above the one before "
                f"(got {after.above_prompt_tokens} after {before.above_prompt_tokens})"
            )
    return tiers


Tiers = Annotated[tuple[PriceTier, ...], _list_of("{above_prompt_tokens: N, <rates>}"), AfterValidator(_ascending)]


def _clock_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
        raise ValueError('quote the time, e.g. "22:00" (unquoted, YAML reads 22:00 as a number)')
    if isinstance(value, str) and not _CLOCK.fullmatch(value):
        raise ValueError('a time of day must be "HH:MM", from "00:00" to "23:59" (UTC)')
    return value


ClockTime = Annotated[str, BeforeValidator(_clock_time)]


def minute_of(clock: str) -> int:
    """``"HH:MM"`` as minutes after midnight."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class TimeOfDayRate(Strict):
    """A UTC window ``[start, end)`` in which the whole cost is multiplied by ``multiplier``."""

    start: ClockTime
    end: ClockTime
    multiplier: Annotated[float, Field(gt=0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _not_empty(self) -> TimeOfDayRate:
        if self.start == self.end:
            raise ValueError(
                "start and end are the same time: the window would be empty "
                "(a multiplier for the whole day is just other rates)"
            )
        return self

    def holds(self, minute: int) -> bool:
        """Whether the minute of the day (0-1439) is in the window."""
        start, end = minute_of(self.start), minute_of(self.end)
        return start <= minute < end if start < end else (minute >= start or minute < end)


TimeWindows = Annotated[tuple[TimeOfDayRate, ...], _list_of("{start, end, multiplier}")]


class PriceLike(Protocol):
    """What :func:`rates_for` reads of a price (``gateway.config.settings.Price``), which is
    hashed by value: its rates are kept per price."""

    def __hash__(self) -> int: ...

    @property
    def input_per_1m(self) -> float: ...

    @property
    def output_per_1m(self) -> float: ...

    @property
    def cached_input_per_1m(self) -> float | None: ...

    @property
    def cache_write_per_1m(self) -> float | None: ...

    @property
    def cache_write_1h_per_1m(self) -> float | None: ...

    @property
    def reasoning_per_1m(self) -> float | None: ...

    @property
    def tiers(self) -> tuple[PriceTier, ...]: ...

    @property
    def time_of_day(self) -> tuple[TimeOfDayRate, ...]: ...


@dataclass(frozen=True)
class Rates:
    """The rates (USD per million tokens) that price one request, defaults filled in."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    """5-minute cache writes."""
    cache_write_1h: float
    reasoning: float
    tier: int | None = None
    """``above_prompt_tokens`` of the tier applied; None for the base rates."""


def rates_for(price: PriceLike, prompt_tokens: int) -> Rates:
    """The rates for a request of ``prompt_tokens``: the highest tier it exceeds
    over the base rates, then the defaults: cache reads and writes at the input
    rate, 1-hour writes at the 5-minute write rate, reasoning at the output rate."""
    tiers = price.tiers
    for index in range(len(tiers) - 1, -1, -1):
        if prompt_tokens > tiers[index].above_prompt_tokens:
            return _rates(price, index)
    return _rates(price, None)


RATES_CACHED = 1024
"""(price, tier) pairs whose rates are kept: far more than a config's deployments and tiers."""


@functools.lru_cache(maxsize=RATES_CACHED)
def _rates(price: PriceLike, tier: int | None) -> Rates:
    """The rates of ``price`` with its tier ``tier`` (an index; None: the base rates) applied.
    Worked out once per pair and kept by value (a price is a frozen config model, hashed by
    its fields: a reloaded, equal price finds them too): every request is priced twice, for
    its budget reservation and for its charge, and this took 1.9 µs a call."""
    given: dict[str, float | None] = {name: getattr(price, name) for name in RATE_FIELDS}
    applied = None
    if tier is not None:
        chosen = price.tiers[tier]
        given.update({name: getattr(chosen, name) for name in RATE_FIELDS if getattr(chosen, name) is not None})
        applied = chosen.above_prompt_tokens
    base_in, base_out = given["input_per_1m"], given["output_per_1m"]
    assert base_in is not None and base_out is not None  # required on the price; a tier only replaces them
    write = _or(given["cache_write_per_1m"], base_in)
    return Rates(
        input=base_in,
        output=base_out,
        cache_read=_or(given["cached_input_per_1m"], base_in),
        cache_write=write,
        cache_write_1h=_or(given["cache_write_1h_per_1m"], write),
        reasoning=_or(given["reasoning_per_1m"], base_out),
        tier=applied,
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def multiplier_at(windows: tuple[TimeOfDayRate, ...], at: datetime) -> float:
    """The multiplier of the first window holding ``at`` (UTC; a naive time is
    read as UTC), else 1."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at
    minute = utc.hour * 60 + utc.minute
    for window in windows:
        if window.holds(minute):
            return window.multiplier
    return 1.0
