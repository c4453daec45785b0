"""gateway.config.price_rates and the parts of cost_usd they drive: the new price
fields and their defaults, long-context tiers, time-of-day windows (with an
injected clock), the breakdown, malformed counts, and every validation error
of the price file (each names the path of the bad value)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.canonical import make_usage
from gateway.config.loader import ConfigError
from gateway.config.price_rates import PriceTier, TimeOfDayRate, multiplier_at, rates_for
from gateway.config.settings import Price
from gateway.policies.pricing import cost_breakdown, cost_usd, parse_prices

NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def one_price(body: str) -> Price:
    text = 'version: "v"\nmodels:\n  m:\n' + textwrap.indent(textwrap.dedent(body), "    ")
    price = parse_prices(text).price_for("x", "m")
    assert price is not None
    return price


def problems_of(body: str) -> list[str]:
    text = 'version: "v"\nmodels:\n  m:\n' + textwrap.indent(textwrap.dedent(body), "    ")
    with pytest.raises(ConfigError) as info:
        parse_prices(text, source="prices.yaml")
    return info.value.problems


def with_writes(read: int, written: int, written_1h: int) -> dict[str, int]:
    return {"cached_tokens": read, "cache_write_tokens": written, "cache_write_1h_tokens": written_1h}


# --- defaults -------------------------------------------------------------------------------


def test_absent_rates_fall_back() -> None:
    rates = rates_for(Price(input_per_1m=2.0, output_per_1m=8.0), 1000)
    assert (rates.input, rates.cache_read, rates.cache_write, rates.cache_write_1h) == (2.0, 2.0, 2.0, 2.0)
    assert (rates.output, rates.reasoning, rates.tier) == (8.0, 8.0, None)
    # a 5-minute write rate is also the 1-hour one when that is absent
    rates = rates_for(Price(input_per_1m=2.0, output_per_1m=8.0, cache_write_per_1m=2.5), 1000)
    assert (rates.cache_write, rates.cache_write_1h) == (2.5, 2.5)


def test_every_part_at_its_own_rate() -> None:
    price = Price(
        input_per_1m=1.0,
        output_per_1m=10.0,
        cached_input_per_1m=0.1,
        cache_write_per_1m=1.25,
        cache_write_1h_per_1m=2.0,
        reasoning_per_1m=20.0,
    )
    usage = make_usage(10_000, 3_000, reasoning=1_000)
    usage["prompt_tokens_details"] = with_writes(5_000, 3_000, 1_000)
    # 2,000 x 1 + 5,000 x 0.1 + 2,000 x 1.25 + 1,000 x 2 + 2,000 x 10 + 1,000 x 20 = 47,000 micro-USD
    parts = cost_breakdown(usage, price)
    assert parts.total_usd == 0.047
    assert [(p.name, p.tokens, p.per_1m) for p in parts.parts] == [
        ("input", 2_000, 1.0),
        ("cache_read", 5_000, 0.1),
        ("cache_write_5m", 2_000, 1.25),
        ("cache_write_1h", 1_000, 2.0),
        ("output", 2_000, 10.0),
        ("reasoning", 1_000, 20.0),
    ]
    assert parts.to_json()["parts"]["reasoning"] == {"tokens": 1_000, "per_1m": 20.0, "usd": 0.02}
    assert parts.to_json()["total_usd"] == 0.047 and parts.to_json()["multiplier"] == 1.0


def test_counts_are_clamped_so_nothing_is_charged_twice() -> None:
    price = Price(input_per_1m=1.0, output_per_1m=10.0, cache_write_per_1m=2.0, cache_write_1h_per_1m=4.0)
    usage = make_usage(100, 10, reasoning=50)  # reasoning above the completion: at most the completion
    usage["prompt_tokens_details"] = with_writes(60, 80, 90)  # writes above what the reads leave
    parts = {p.name: p.tokens for p in cost_breakdown(usage, price).parts}
    assert parts == {"cache_read": 60, "cache_write_1h": 40, "reasoning": 10}
    # only the 1-hour count given: they are writes too
    usage["prompt_tokens_details"] = {"cache_write_1h_tokens": 30}
    assert {p.name: p.tokens for p in cost_breakdown(usage, price).parts} == {
        "input": 70,
        "cache_write_1h": 30,
        "reasoning": 10,
    }


@pytest.mark.parametrize(
    "details",
    [None, "x", [], {"cached_tokens": -5, "cache_write_tokens": True, "cache_write_1h_tokens": "9"}],
)
def test_malformed_details_read_as_zero(details: object) -> None:
    price = Price(input_per_1m=1.0, output_per_1m=2.0, cache_write_per_1m=5.0)
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": details}
    usage["completion_tokens_details"] = details
    assert cost_usd(usage, price) == 0.00012  # 100 x 1 + 10 x 2


# --- tiers ------------------------------------------------------------------------------------


TIERED = """
input_per_1m: 1.0
output_per_1m: 4.0
cached_input_per_1m: 0.1
tiers:
  - {above_prompt_tokens: 100000, input_per_1m: 2.0, output_per_1m: 6.0}
  - {above_prompt_tokens: 500000, input_per_1m: 3.0, cached_input_per_1m: 0.3, output_per_1m: 9.0}
"""


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (100_000, (1.0, 0.1, 4.0, None)),
        (100_001, (2.0, 0.1, 6.0, 100_000)),  # a rate the tier leaves out keeps the base's
        (500_000, (2.0, 0.1, 6.0, 100_000)),
        (500_001, (3.0, 0.3, 9.0, 500_000)),  # the highest tier exceeded wins
    ],
)
def test_the_highest_tier_exceeded_applies(prompt: int, expected: tuple[float, float, float, int | None]) -> None:
    rates = rates_for(one_price(TIERED), prompt)
    assert (rates.input, rates.cache_read, rates.output, rates.tier) == expected


def test_rates_are_kept_per_price_and_tier_by_value() -> None:
    """Worked out once per (price, tier): an equal price parsed again (a reload) finds them,
    a price that differs in any rate does not, and each tier keeps its own."""
    first, again = one_price(TIERED), one_price(TIERED)
    assert first is not again and first == again
    assert rates_for(first, 200_000) is rates_for(again, 200_000)
    assert rates_for(first, 10) is rates_for(again, 10)
    assert rates_for(first, 10) != rates_for(first, 200_000) != rates_for(first, 600_000)
    dearer = Price(**{**first.model_dump(), "output_per_1m": first.output_per_1m + 1})
    assert rates_for(dearer, 10).output == first.output_per_1m + 1


def test_a_tier_prices_the_whole_request_and_derives_defaults_from_its_rates() -> None:
    price = one_price(TIERED)
    # 150,000 prompt (50,000 written, no write rate: the tier's input rate) and 1,000 output, all at tier 1:
    usage = make_usage(150_000, 1_000)
    usage["prompt_tokens_details"] = {"cache_write_tokens": 50_000}
    parts = cost_breakdown(usage, price)
    assert parts.tier == 100_000
    assert {p.name: p.usd for p in parts.parts} == {"input": 0.2, "cache_write_5m": 0.1, "output": 0.006}
    assert parts.total_usd == 0.306


# --- time of day ----------------------------------------------------------------------------


NIGHT = """
input_per_1m: 1.0
output_per_1m: 1.0
time_of_day:
  - {start: "22:00", end: "06:00", multiplier: 0.5}
  - {start: "05:00", end: "09:00", multiplier: 3}
  - {start: "12:00", end: "12:30", multiplier: 2}
"""


@pytest.mark.parametrize(
    ("hour", "minute", "multiplier"),
    [
        (22, 0, 0.5),  # start is in
        (23, 59, 0.5),
        (0, 0, 0.5),  # past midnight
        (5, 30, 0.5),  # in two windows: the first listed wins
        (6, 0, 3.0),  # end is out of the first, in the second
        (9, 0, 1.0),
        (12, 29, 2.0),
        (12, 30, 1.0),
        (21, 59, 1.0),
    ],
)
def test_the_first_window_holding_the_time_multiplies(hour: int, minute: int, multiplier: float) -> None:
    price = one_price(NIGHT)
    at = NOON.replace(hour=hour, minute=minute)
    assert multiplier_at(price.time_of_day, at) == multiplier
    parts = cost_breakdown(make_usage(1_000_000, 1_000_000), price, at=at)
    assert parts.multiplier == multiplier
    assert parts.total_usd == 2.0 * multiplier
    assert sum(p.usd for p in parts.parts) == pytest.approx(parts.total_usd)


def test_windows_are_utc() -> None:
    price = one_price(NIGHT)
    paris_23h = datetime(2026, 12, 6, 23, 0, tzinfo=timezone(timedelta(hours=1)))  # 22:00 UTC
    assert cost_usd(make_usage(1_000_000, 0), price, at=paris_23h) == 0.5
    naive = datetime(2026, 12, 6, 12, 10)  # read as UTC
    assert cost_usd(make_usage(1_000_000, 0), price, at=naive) == 2.0


def test_without_windows_the_time_does_not_matter() -> None:
    price = Price(input_per_1m=1.0, output_per_1m=1.0)
    assert cost_usd(make_usage(1_000_000, 0), price, at=NOON) == cost_usd(make_usage(1_000_000, 0), price) == 1.0


def test_the_clock_defaults_to_now() -> None:
    whole_day = (
        TimeOfDayRate(start="00:00", end="12:00", multiplier=2),
        TimeOfDayRate(start="12:00", end="00:00", multiplier=2),
    )
    price = Price(input_per_1m=1.0, output_per_1m=1.0, time_of_day=whole_day)
    assert cost_usd(make_usage(1_000_000, 0), price) == 2.0


# --- validation -----------------------------------------------------------------------------------


def test_tiers_must_rise() -> None:
    body = """
    input_per_1m: 1
    output_per_1m: 2
    tiers:
      - {above_prompt_tokens: 200000, input_per_1m: 2}
      - {above_prompt_tokens: 200000, input_per_1m: 3}
    """
    assert problems_of(body) == [
        "prices.yaml: models.m.tiers: tiers must be listed by rising above_prompt_tokens, each above the one "
        "before (got 200000 after 200000)"
    ]


def test_bad_tiers_name_their_path() -> None:
    body = """
    input_per_1m: 1
    output_per_1m: 2
    tiers:
      - {above_prompt_tokens: 5}
      - {above_prompt_tokens: 0, input_per_1m: -1, batch_per_1m: 3}
      - {above_prompt_tokens: true, output_per_1m: 1}
      - {input_per_1m: 1}
    """
    assert problems_of(body) == [
        "prices.yaml: models.m.tiers[0]: a tier must set at least one rate (input_per_1m, output_per_1m, "
        "cached_input_per_1m, cache_write_per_1m, cache_write_1h_per_1m, reasoning_per_1m)",
        "prices.yaml: models.m.tiers[1].above_prompt_tokens: Input should be greater than or equal to 1",
        "prices.yaml: models.m.tiers[1].input_per_1m: Input should be greater than or equal to 0",
        "prices.yaml: models.m.tiers[1].batch_per_1m: unknown key",
        "prices.yaml: models.m.tiers[2].above_prompt_tokens: Input should be a valid integer",
        "prices.yaml: models.m.tiers[3].above_prompt_tokens: Field required",
    ]


def test_bad_rates_name_their_path() -> None:
    body = """
    input_per_1m: 1
    output_per_1m: 2
    cache_write_per_1m: -1
    cache_write_1h_per_1m: .inf
    reasoning_per_1m: .nan
    cached_input_per_1m: "0.1"
    """
    assert problems_of(body) == [
        "prices.yaml: models.m.cached_input_per_1m: Input should be a valid number",
        "prices.yaml: models.m.cache_write_per_1m: Input should be greater than or equal to 0",
        "prices.yaml: models.m.cache_write_1h_per_1m: Input should be a finite number",
        "prices.yaml: models.m.reasoning_per_1m: Input should be a finite number",
    ]


def test_bad_windows_name_their_path() -> None:
    body = """
    input_per_1m: 1
    output_per_1m: 2
    time_of_day:
      - {start: 22:00, end: "06:00", multiplier: 0.5}
      - {start: "24:00", end: "7:00", multiplier: 0}
      - {start: "08:00", end: "08:00", multiplier: 2}
      - {start: [1], end: "09:00", multiplier: -1, days: [mon]}
      - {start: "01:00", end: "02:00"}
    """
    assert problems_of(body) == [
        'prices.yaml: models.m.time_of_day[0].start: quote the time, e.g. "22:00" (unquoted, YAML reads 22:00 '
        "as a number)",
        'prices.yaml: models.m.time_of_day[1].start: a time of day must be "HH:MM", from "00:00" to "23:59" (UTC)',
        'prices.yaml: models.m.time_of_day[1].end: a time of day must be "HH:MM", from "00:00" to "23:59" (UTC)',
        "prices.yaml: models.m.time_of_day[1].multiplier: Input should be greater than 0",
        "prices.yaml: models.m.time_of_day[2]: start and end are the same time: the window would be empty "
        "(a multiplier for the whole day is just other rates)",
        "prices.yaml: models.m.time_of_day[3].start: Input should be a valid string",
        "prices.yaml: models.m.time_of_day[3].multiplier: Input should be greater than 0",
        "prices.yaml: models.m.time_of_day[3].days: unknown key",
        "prices.yaml: models.m.time_of_day[4].multiplier: Field required",
    ]


def test_tiers_and_windows_must_be_lists() -> None:
    assert problems_of("input_per_1m: 1\noutput_per_1m: 2\ntiers: {above_prompt_tokens: 5}\ntime_of_day: night\n") == [
        "prices.yaml: models.m.tiers: must be a list of {above_prompt_tokens: N, <rates>}",
        "prices.yaml: models.m.time_of_day: must be a list of {start, end, multiplier}",
    ]


def test_models_are_hashable_and_built_directly() -> None:
    tier = PriceTier(above_prompt_tokens=10, input_per_1m=2.0)
    price = Price(input_per_1m=1.0, output_per_1m=1.0, tiers=(tier,))
    assert hash(price) == hash(Price(input_per_1m=1.0, output_per_1m=1.0, tiers=(tier,)))
    with pytest.raises(ValueError, match="at least one rate"):
        PriceTier(above_prompt_tokens=10)
