"""Invoice-grade cost: for each provider, a request priced with the repository's
config/prices.yaml reproduces the invoice figure worked out by hand from the
provider's pricing page (written out beside each test), and recorded usage
(../shared/fixtures) goes through the provider's usage translation to the same
hand-worked cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.canonical import JSON
from gateway.config.settings import Price
from gateway.policies.pricing import cost_breakdown, cost_usd, load_prices
from gateway.providers.anthropic_stream import canonical_usage as anthropic_usage
from gateway.providers.gemini_stream import gemini_usage
from gateway.providers.openai_compat import OpenAIStreamDecoder
from gateway.providers.openai_responses_stream import canonical_usage as responses_usage
from tests.unit.fixtures import load_bytes, load_json, random_pieces, sse_events

PRICES = Path(__file__).resolve().parents[2] / "config" / "prices.yaml"


def price(model: str, provider: str = "x") -> Price:
    found = load_prices(PRICES).price_for(provider, model)
    assert found is not None, f"{model} has no price in config/prices.yaml"
    return found


def usage(
    prompt: int,
    completion: int,
    *,
    read: int | None = None,
    written: int | None = None,
    written_1h: int | None = None,
    reasoning: int | None = None,
) -> JSON:
    """A canonical usage object (the issue-12 contract's keys)."""
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    details = {"cached_tokens": read, "cache_write_tokens": written, "cache_write_1h_tokens": written_1h}
    if any(v is not None for v in details.values()):
        out["prompt_tokens_details"] = {k: v for k, v in details.items() if v is not None}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


# --- OpenAI: cached input and reasoning -----------------------------------------------------


def test_openai_gpt_5_1_cached_input_and_reasoning() -> None:
    # developers.openai.com/api/docs/pricing, gpt-5.1: input $1.25, cached input $0.125, output $10 per 1M.
    # 100,000 prompt tokens of which 80,000 cached; 20,000 completion tokens of which 15,000 reasoning:
    #   uncached  20,000 x $1.25  / 1M = $0.025
    #   cached    80,000 x $0.125 / 1M = $0.010
    #   output    20,000 x $10    / 1M = $0.200  (reasoning tokens are output tokens, counted once)
    #   total                           = $0.235
    cost = cost_usd(usage(100_000, 20_000, read=80_000, reasoning=15_000), price("gpt-5.1"))
    assert cost == 0.235


def test_openai_gpt_5_6_sol_long_context_with_cache_writes() -> None:
    # gpt-5.6-sol: more than 272K input tokens bills the whole request at 2x input (cached input and
    # cache writes too) and 1.5x output: $8 input, $0.80 cached, $10 cache write, $30 output per 1M.
    # 300,000 prompt tokens = 90,000 uncached + 200,000 cached + 10,000 written; 5,000 output:
    #   90,000 x $8 = $0.72; 200,000 x $0.80 = $0.16; 10,000 x $10 = $0.10; 5,000 x $30 = $0.15
    #   total $1.13 (at the base rates it would be 0.36 + 0.08 + 0.05 + 0.10 = $0.59)
    sol = price("gpt-5.6-sol")
    parts = cost_breakdown(usage(300_000, 5_000, read=200_000, written=10_000), sol)
    assert parts.total_usd == 1.13
    assert parts.tier == 272_000
    assert {p.name: p.usd for p in parts.parts} == {
        "input": 0.72,
        "cache_read": 0.16,
        "cache_write_5m": 0.10,
        "output": 0.15,
    }
    # 272,000 is not above the threshold: base rates, 62,000 x $4 + 200,000 x $0.40 + 10,000 x $5 + 5,000 x $20
    assert cost_usd(usage(272_000, 5_000, read=200_000, written=10_000), sol) == 0.478


def test_openai_recorded_responses_usage() -> None:
    # responses/create_reasoning_function_call.json (gpt-5): 124 input, 1,926 output of which 1,792 reasoning.
    #   124 x $1.25 + 1,926 x $10 = 155 + 19,260 micro-USD = $0.019415
    raw = load_json("responses/create_reasoning_function_call.json")["usage"]
    canonical = responses_usage(raw)
    assert canonical["completion_tokens_details"] == {"reasoning_tokens": 1792}
    assert cost_usd(canonical, price("gpt-5")) == 0.019415
    # responses/create_cached_tokens.json (gpt-5.6-sol): 4,020 input of which 4,012 cached, 5 output.
    #   8 x $4 + 4,012 x $0.40 + 5 x $20 = 32 + 1,604.8 + 100 micro-USD = $0.0017368
    raw = load_json("responses/create_cached_tokens.json")["usage"]
    assert cost_usd(responses_usage(raw), price("gpt-5.6-sol")) == 0.0017368


# --- Anthropic: 5-minute and 1-hour cache writes, cache reads ---------------------------------


def test_anthropic_opus_1h_cache_write_reads_and_output() -> None:
    # platform.claude.com/docs/en/about-claude/pricing, Claude Opus 4.8: base input $5, 5m cache writes
    # $6.25 (1.25x), 1h cache writes $10 (2x), cache hits $0.50 (0.1x), output $25 per MTok.
    # Prompt 62,500 = 500 uncached + 2,000 written for 5 minutes + 10,000 written for 1 hour + 50,000 read;
    # 1,000 output tokens (thinking included):
    #   500 x $5 = $0.0025; 2,000 x $6.25 = $0.0125; 10,000 x $10 = $0.10; 50,000 x $0.50 = $0.025;
    #   1,000 x $25 = $0.025; total $0.165
    billed = usage(62_500, 1_000, read=50_000, written=12_000, written_1h=10_000, reasoning=400)
    parts = cost_breakdown(billed, price("claude-opus-4-8"))
    assert parts.total_usd == 0.165
    assert {p.name: (p.tokens, p.usd) for p in parts.parts} == {
        "input": (500, 0.0025),
        "cache_write_5m": (2_000, 0.0125),
        "cache_write_1h": (10_000, 0.1),
        "cache_read": (50_000, 0.025),
        "output": (600, 0.015),
        "reasoning": (400, 0.01),
    }
    # without write rates (the table before issue 12) the writes cost the input rate, under-billing by $0.0525:
    #   12,500 x $5 + 50,000 x $0.50 + 1,000 x $25 = $0.1125
    plain = Price(input_per_1m=5.0, output_per_1m=25.0, cached_input_per_1m=0.5)
    assert cost_usd(billed, plain) == 0.1125


def test_anthropic_recorded_cache_usage() -> None:
    # anthropic/messages_cache_control_block_turn2.json (claude-sonnet-4-5): input 3, cache_creation
    # ephemeral_5m 403, cache_read 1,111, output 33. Sonnet 4.5: $3 input, $3.75 5m write, $0.30 read, $15 output.
    #   3 x $3 + 403 x $3.75 + 1,111 x $0.30 + 33 x $15 = 9 + 1,511.25 + 333.3 + 495 micro-USD = $0.00234855
    raw = load_json("anthropic/messages_cache_control_block_turn2.json")["usage"]
    canonical = anthropic_usage(raw)
    assert canonical["prompt_tokens"] == 3 + 403 + 1111
    assert cost_usd(canonical, price("claude-sonnet-4-5")) == 0.00234855


def test_anthropic_sonnet_4_5_long_context_tier() -> None:
    # Sonnet 4.5's 1M-context rates for a request of more than 200K input tokens (cache reads and writes
    # count toward the 200K): $6 input, $7.50 5m write, $12 1h write, $0.60 read, $22.50 output per MTok.
    # Prompt 250,000 = 10,000 uncached + 40,000 written for 1 hour + 200,000 read; 2,000 output:
    #   10,000 x $6 = $0.06; 40,000 x $12 = $0.48; 200,000 x $0.60 = $0.12; 2,000 x $22.50 = $0.045
    #   total $0.705
    sonnet = price("claude-sonnet-4-5")
    assert cost_usd(usage(250_000, 2_000, read=200_000, written=40_000, written_1h=40_000), sonnet) == 0.705
    # 200,000 exactly is not above the threshold: base rates, 10,000 x 3 + 30,000 x 6 + 160,000 x 0.3 + 2,000 x 15
    assert cost_usd(usage(200_000, 2_000, read=160_000, written=30_000, written_1h=30_000), sonnet) == 0.288


# --- Gemini: the >200K tier of 2.5 Pro, thinking tokens ------------------------------------------


def test_gemini_2_5_pro_above_200k() -> None:
    # ai.google.dev/gemini-api/docs/pricing, Gemini 2.5 Pro, prompts > 200K tokens: input $2.50,
    # context caching $0.25, output (thinking included) $15 per 1M, for the whole request.
    # 250,000 prompt tokens of which 100,000 cached; 4,000 output of which 3,000 thoughts:
    #   150,000 x $2.50 = $0.375; 100,000 x $0.25 = $0.025; 4,000 x $15 = $0.06; total $0.46
    pro = price("gemini-2.5-pro")
    assert cost_usd(usage(250_000, 4_000, read=100_000, reasoning=3_000), pro) == 0.46
    # the same at 200,000 (not above): 100,000 x $1.25 + 100,000 x $0.125 + 4,000 x $10 = $0.1775
    assert cost_usd(usage(200_000, 4_000, read=100_000, reasoning=3_000), pro) == 0.1775


def test_gemini_recorded_cached_content_with_thoughts() -> None:
    # gemini/generate_content_cached_content.json (gemini-2.5-flash): promptTokenCount 3,520 of which
    # cachedContentTokenCount 3,512, candidates 2, thoughts 42. Flash: $0.30 input, $0.03 cached, $2.50 output.
    #   8 x $0.30 + 3,512 x $0.03 + (2 + 42) x $2.50 = 2.4 + 105.36 + 110 micro-USD = $0.00021776
    canonical = gemini_usage(load_json("gemini/generate_content_cached_content.json")["usageMetadata"])
    assert canonical is not None
    assert cost_usd(canonical, price("gemini-2.5-flash")) == 0.00021776


# --- Novita ------------------------------------------------------------------------------------


def test_novita_llama_3_3_70b() -> None:
    # novita.ai/pricing, meta-llama/llama-3.3-70b-instruct: $0.135 input, $0.40 output per 1M.
    # 1,000,000 prompt + 250,000 completion: $0.135 + $0.10 = $0.235
    assert cost_usd(usage(1_000_000, 250_000), price("meta-llama/llama-3.3-70b-instruct", "novita")) == 0.235
    # a provider-specific price: another host of the model is not priced by Novita's entry
    assert load_prices(PRICES).price_for("groq", "meta-llama/llama-3.3-70b-instruct") is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_novita_recorded_stream_usage(seed: int) -> None:
    # openai_compatible/novita_stream_via_hf_router.sse (meta-llama/llama-3.1-8b-instruct): 40 prompt and
    # 2 completion tokens; $0.02 input, $0.05 output per 1M: 40 x 0.02 + 2 x 0.05 = 0.9 micro-USD = $9e-07
    decoder = OpenAIStreamDecoder()
    for event in sse_events(random_pieces(load_bytes("openai_compatible/novita_stream_via_hf_router.sse"), seed)):
        decoder.on_event(event)
    assert decoder.usage is not None
    assert cost_usd(decoder.usage, price("meta-llama/llama-3.1-8b-instruct", "novita")) == 9e-07


# --- the table as a whole -------------------------------------------------------------------------


def test_every_claude_entry_has_its_cache_write_rates() -> None:
    table = load_prices(PRICES)
    for model, p in table.prices.items():
        if model.startswith(("claude-", "mock-claude")):
            assert p.cache_write_per_1m == pytest.approx(p.input_per_1m * 1.25), model
            assert p.cache_write_1h_per_1m == pytest.approx(p.input_per_1m * 2), model
            assert p.cached_input_per_1m == pytest.approx(p.input_per_1m * 0.1), model


def test_tiers_in_the_table_only_raise_prices() -> None:
    for model, p in load_prices(PRICES).prices.items():
        for tier in p.tiers:
            assert tier.input_per_1m is not None and tier.input_per_1m > p.input_per_1m, model
            assert tier.output_per_1m is not None and tier.output_per_1m > p.output_per_1m, model
