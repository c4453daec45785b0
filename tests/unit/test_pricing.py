"""gateway.policies.pricing: price resolution, cost of canonical usage, unpriced models, the price file."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from gateway.canonical import make_usage
from gateway.config.loader import ConfigError, load_config
from gateway.config.settings import Price
from gateway.policies.pricing import PriceTable, UnpricedModels, cost_usd, load_prices, parse_prices
from gateway.providers.anthropic_stream import canonical_usage

REPO = Path(__file__).resolve().parents[2]
PRICES = REPO / "config" / "prices.yaml"

GPT4O = Price(input_per_1m=2.50, output_per_1m=10.00, cached_input_per_1m=1.25)
HAIKU = Price(input_per_1m=1.00, output_per_1m=5.00, cached_input_per_1m=0.10)
NO_CACHED_RATE = Price(input_per_1m=0.30, output_per_1m=2.50)

TABLE = """
version: "v1"
models:
  gpt-4o: {input_per_1m: 2.50, output_per_1m: 10.00}
  azure/gpt-4o: {input_per_1m: 2.75, output_per_1m: 11.00}
  meta-llama/llama-3.1-8b-instruct: {input_per_1m: 0.03, output_per_1m: 0.06}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_prices(textwrap.dedent(text), source="prices.yaml")
    for p in info.value.problems:
        assert p in str(info.value)
    return info.value.problems


# --- resolution ------------------------------------------------------------------


def test_price_resolution_order() -> None:
    table = parse_prices(TABLE)
    own = Price(input_per_1m=9.0, output_per_1m=9.0)
    # 1. the deployment's own price wins over everything
    assert table.price_for("azure", "gpt-4o", own) is own
    # 2. then provider/model
    azure = table.price_for("azure", "gpt-4o", None)
    assert azure is not None
    assert (azure.input_per_1m, azure.output_per_1m) == (2.75, 11.00)
    # 3. then the bare model name
    openai = table.price_for("openai", "gpt-4o", None)
    assert openai is not None
    assert (openai.input_per_1m, openai.output_per_1m) == (2.50, 10.00)
    # a model name with a slash is looked up whole
    llama = table.price_for("novita", "meta-llama/llama-3.1-8b-instruct", None)
    assert llama is not None
    assert llama.input_per_1m == 0.03
    # unpriced: None, never a zero price
    assert table.price_for("openai", "gpt-5", None) is None
    assert table.price_for("openai", "gpt-5") is None


def test_empty_table() -> None:
    table = PriceTable.empty()
    assert table.version == "none"
    assert len(table) == 0
    assert table.price_for("openai", "gpt-4o") is None
    assert table.price_for("openai", "gpt-4o", GPT4O) is GPT4O


def test_table_is_read_only() -> None:
    table = parse_prices(TABLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.version = "v2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.prices["new"] = GPT4O  # type: ignore[index]


# --- cost --------------------------------------------------------------------------


def test_cost_openai_usage_with_cached_tokens() -> None:
    # OpenAI: prompt_tokens (1234) includes the 1000 cached ones
    usage = make_usage(1234, 567, cached=1000)
    # 234 * 2.50 + 1000 * 1.25 + 567 * 10.00 = 585 + 1250 + 5670 = 7505 micro-USD
    assert cost_usd(usage, GPT4O) == 0.007505


def test_cost_anthropic_derived_usage() -> None:
    raw = {
        "input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "output_tokens": 300,
    }
    usage = canonical_usage(raw)
    assert usage["prompt_tokens"] == 2600
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2000, "cache_write_tokens": 500}
    # without a write rate, writes cost the input rate:
    # 600 (100 uncached + 500 written) * 1.00 + 2000 * 0.10 + 300 * 5.00 = 2300 micro-USD
    assert cost_usd(usage, HAIKU) == 0.0023
    # with Haiku 4.5's 5-minute write rate (1.25x): 100 * 1.00 + 500 * 1.25 + 200 + 1500 = 2425 micro-USD
    assert cost_usd(usage, HAIKU.model_copy(update={"cache_write_per_1m": 1.25})) == 0.002425


def test_cached_tokens_cost_input_rate_without_cached_price() -> None:
    usage = make_usage(1000, 100, cached=400)
    # 1000 * 0.30 + 100 * 2.50 = 550 micro-USD
    assert cost_usd(usage, NO_CACHED_RATE) == 0.00055


def test_cost_without_details_and_reasoning_in_output() -> None:
    usage = make_usage(1_000_000, 2_000_000, reasoning=1_500_000)
    assert cost_usd(usage, GPT4O) == 22.5


def test_cost_of_embedding_usage() -> None:
    embed = Price(input_per_1m=0.02, output_per_1m=0.0)
    assert cost_usd({"prompt_tokens": 5000, "total_tokens": 5000}, embed) == 0.0001


def test_cost_tolerates_malformed_counts() -> None:
    # cached above prompt is clamped; bools, negatives and None count as 0
    assert cost_usd(make_usage(100, 0, cached=500), GPT4O) == 0.000125
    assert cost_usd({"prompt_tokens": True, "completion_tokens": -5}, GPT4O) == 0.0
    assert cost_usd({"prompt_tokens": None, "prompt_tokens_details": None, "completion_tokens": 1}, GPT4O) == 1e-05
    assert cost_usd({}, GPT4O) == 0.0


def test_cost_rounds_to_nano_dollars() -> None:
    assert 3 * 0.1 / 1_000_000 != 3e-07  # float noise that rounding removes
    assert cost_usd(make_usage(3, 0), Price(input_per_1m=0.1, output_per_1m=0)) == 3e-07
    assert cost_usd(make_usage(1, 0), Price(input_per_1m=0.0004, output_per_1m=0)) == 0.0
    assert cost_usd(make_usage(1, 0), Price(input_per_1m=0.001, output_per_1m=0)) == 1e-09


# --- unpriced ---------------------------------------------------------------------


def test_unpriced_noted_once_counted_every_time() -> None:
    unpriced = UnpricedModels()
    assert unpriced.note("openai", "gpt-5") is True
    assert unpriced.note("openai", "gpt-5") is False
    assert unpriced.note("openai", "gpt-5") is False
    assert unpriced.note("azure", "gpt-5") is True
    assert unpriced.counts == {("openai", "gpt-5"): 3, ("azure", "gpt-5"): 1}
    assert unpriced.total == 4


def test_unpriced_is_per_instance() -> None:
    a, b = UnpricedModels(), UnpricedModels()
    assert a.note("openai", "x") is True
    assert b.note("openai", "x") is True
    assert b.counts == {("openai", "x"): 1}


# --- the price file ---------------------------------------------------------------


def test_wrong_type_names_its_path() -> None:
    text = """
    version: "v1"
    models:
      gpt-4o: {input_per_1m: "cheap", output_per_1m: 10.0}
    """
    assert problems_of(text) == ["prices.yaml: models.gpt-4o.input_per_1m: Input should be a valid number"]


def test_unknown_keys_name_their_path() -> None:
    text = """
    version: "v1"
    currency: EUR
    models:
      gpt-4o: {input_per_1m: 2.5, output_per_1m: 10.0, batch_input_per_1m: 1.25}
    """
    assert sorted(problems_of(text)) == [
        "prices.yaml: currency: unknown key",
        "prices.yaml: models.gpt-4o.batch_input_per_1m: unknown key",
    ]


def test_missing_and_negative_values() -> None:
    text = """
    version: "v1"
    models:
      a: {input_per_1m: 1.0}
      b: {input_per_1m: -1.0, output_per_1m: 1.0}
      c: {input_per_1m: true, output_per_1m: 1.0}
    """
    assert problems_of(text) == [
        "prices.yaml: models.a.output_per_1m: Field required",
        "prices.yaml: models.b.input_per_1m: Input should be greater than or equal to 0",
        "prices.yaml: models.c.input_per_1m: Input should be a valid number",
    ]


def test_version_must_be_a_string() -> None:
    problems = problems_of("version: 2026-11-26\nmodels: {}\n")
    assert problems == ['prices.yaml: version: Input should be a valid string (quote it: version: "2026-11-26")']
    assert problems_of("models: {}\n") == ["prices.yaml: version: Field required"]


def test_duplicate_model_is_an_error() -> None:
    text = """
    version: "v1"
    models:
      gpt-4o: {input_per_1m: 2.5, output_per_1m: 10.0}
      gpt-4o: {input_per_1m: 0.5, output_per_1m: 1.0}
    """
    (problem,) = problems_of(text)
    assert problem.startswith("prices.yaml: not valid YAML:")
    assert "duplicate key 'gpt-4o'" in problem
    assert "line 5" in problem


def test_not_a_mapping() -> None:
    assert problems_of("") == [
        "prices.yaml: the top level must be a mapping with version and models, got an empty document"
    ]
    assert problems_of("- a\n") == ["prices.yaml: the top level must be a mapping with version and models, got list"]
    assert problems_of("version: [\n")[0].startswith("prices.yaml: not valid YAML:")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_prices(missing)
    assert info.value.problems == [f"{missing}: cannot read the price file: No such file or directory"]


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(TABLE, encoding="utf-8")
    table = load_prices(path)
    assert table.version == "v1"
    assert table.source == str(path)
    assert set(table.prices) == {"gpt-4o", "azure/gpt-4o", "meta-llama/llama-3.1-8b-instruct"}


# --- the repository's price file ----------------------------------------------------


def test_repo_price_file_loads() -> None:
    table = load_prices(PRICES)
    assert table.version == "2026-12-06"
    expected = {
        "mock-gpt": (0.15, 0.60, 0.075),
        "mock-claude": (1.00, 5.00, 0.10),
        "mock-gemini": (0.30, 2.50, None),
        "mock-embed": (0.02, 0.0, None),
    }
    for model, want in expected.items():
        p = table.price_for("openai", model)
        assert p is not None, model
        assert (p.input_per_1m, p.output_per_1m, p.cached_input_per_1m) == want
    claude = table.price_for("anthropic", "mock-claude")
    assert claude is not None
    assert (claude.cache_write_per_1m, claude.cache_write_1h_per_1m) == (1.25, 2.00)
    for model in (
        "gpt-5.6-sol",
        "gpt-5.1",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3",
        "o4-mini",
        "claude-opus-4-8",
        "claude-sonnet-4-6",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-3.1-pro-preview",
    ):
        assert table.price_for("x", model) is not None, model
    pro = table.price_for("gemini", "gemini-2.5-pro")
    assert pro is not None and [t.above_prompt_tokens for t in pro.tiers] == [200_000]


def test_repo_price_file_covers_default_config() -> None:
    env = {
        "GATEWAY_MASTER_KEY": "master-key-for-tests",
        "OPENAI_API_KEY": "k",
        "ANTHROPIC_API_KEY": "k",
        "GEMINI_API_KEY": "k",
        "NOVITA_API_KEY": "k",
    }
    loaded = load_config(REPO / "config" / "gateway.yaml", env=env)
    assert loaded.disabled_aliases == []
    table = load_prices(PRICES)
    seen = set()
    for alias, spec in loaded.settings.models.items():
        for dep in spec.deployments:
            price = table.price_for(dep.provider, dep.model, None)
            assert price is not None, f"{alias}: {dep.provider}/{dep.model} has no price in {PRICES.name}"
            if dep.price is not None:  # the config's own price and the table agree
                assert price == dep.price, f"{alias}: {dep.model}"
            seen.add(dep.model)
    assert "meta-llama/llama-3.1-8b-instruct" in seen
    assert len(seen) == 9
