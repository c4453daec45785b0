"""Issue 12's "done when", end to end: a Claude model that takes only adaptive thinking, an
older Claude that takes only thinking budgets, a Gemini 3 thinking model and an OpenAI
reasoning model (the project's mock upstream enforcing each format's rules:
gateway/mock/models.py) each answer a tool-using, multi-turn conversation driven with the
official openai SDK through the gateway (and a DeepSeek-style OpenAI-compatible reasoner),
with the reasoning shown where the API shows it, and no continuation
refused; and each turn's ``x-gateway-cost-usd`` is the hand-worked invoice of its usage
(cache reads and 5-minute/1-hour writes, reasoning at its own rate), the key's recorded spend
the sum of its turns."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.e2e.replay_rig import NANO, PREAMBLE, Charge, Rig, header_cost, rig_fixture

# USD per million tokens, the same for every deployment: distinct rates for every part.
RATES = {"input": Decimal(3), "cached": Decimal("0.3"), "write_5m": Decimal("3.75"), "write_1h": Decimal(6)}
RATES |= {"output": Decimal(15), "reasoning": Decimal(20)}
PRICE = (
    f"{{input_per_1m: {RATES['input']}, output_per_1m: {RATES['output']}, cached_input_per_1m: {RATES['cached']},"
    f" cache_write_per_1m: {RATES['write_5m']}, cache_write_1h_per_1m: {RATES['write_1h']},"
    f" reasoning_per_1m: {RATES['reasoning']}}}"
)
STYLES = {"claude-adaptive": ", reasoning_style: adaptive", "claude-budget": ", reasoning_style: budget"}
"""The mock's Claude names carry no version for ``auto`` to read: the admin says which style."""
UPSTREAMS = {
    "claude-adaptive": ("anthropic", "mock-claude-adaptive"),
    "claude-budget": ("anthropic", "mock-claude-budget"),
    "gemini-thinking": ("gemini", "mock-gemini-3-thinking"),
    "gpt-reasoning": ("openai", "mock-gpt-reasoning"),
    "deepseek-reasoner": ("openai_compatible", "mock-deepseek-reasoner"),
}
HIDDEN = {"gpt-reasoning"}
"""OpenAI's chat completions never show a reasoning model's reasoning, only count it."""
SYSTEM = "You are a weather assistant. " + " ".join(f"rule{i}" for i in range(1200))  # long: OpenAI caches it
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
GEMINI_CACHE = "cachedContents/weather-rules-1"
"""Every request names it; only a Gemini deployment takes it (``provider_options``)."""
PROMPTS = ("What is the weather in Paris?", "And in Seoul?")


def _config(mock_url: str) -> str:
    lines = []
    for alias, (provider, model) in UPSTREAMS.items():
        base = f"{mock_url}/v1beta" if provider == "gemini" else f"{mock_url}/v1"
        deployment = f"provider: {provider}, model: {model}, base_url: '{base}', api_key: k, price: {PRICE}"
        deployment += STYLES.get(alias, "")
        if provider == "gemini":  # Gemini caches by name: the client names its cached content
            deployment += ", provider_options: [cachedContent]"
        lines.append(f"  {alias}: {{deployments: [{{{deployment}}}]}}")
    models = "\n".join(lines)
    return (
        PREAMBLE
        + f"""cache: {{enabled: false}}
models:
{models}
"""
    )


rig = rig_fixture("reasoning", _config)


def invoice(usage: dict[str, Any]) -> Decimal:
    """The hand-worked invoice of a canonical usage: every token at its own rate."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    cached = int(prompt_details.get("cached_tokens") or 0)
    writes = int(prompt_details.get("cache_write_tokens") or 0)
    writes_1h = int(prompt_details.get("cache_write_1h_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    micro = (
        (int(usage["prompt_tokens"]) - cached - writes) * RATES["input"]
        + cached * RATES["cached"]
        + (writes - writes_1h) * RATES["write_5m"]
        + writes_1h * RATES["write_1h"]
        + (int(usage["completion_tokens"]) - reasoning) * RATES["output"]
        + reasoning * RATES["reasoning"]
    )
    return (Decimal(micro) / 1_000_000).quantize(NANO)


class Conversation:
    """One conversation on one alias with its own key; every assistant message goes back as received."""

    def __init__(self, rig: Rig, alias: str) -> None:
        self.alias = alias
        secret, self.key_id = rig.new_key(f"reasoning-{alias}")
        self.client = openai.OpenAI(base_url=rig.url + "/v1", api_key=secret, max_retries=0)
        system: dict[str, Any] = {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": [system]}]
        self.charges: list[Charge] = []
        self.answers: list[dict[str, Any]] = []

    def turn(self) -> dict[str, Any]:
        create: Any = self.client.chat.completions.with_raw_response.create  # the messages carry extras
        extra = {"provider_options": {"gemini": {"cachedContent": GEMINI_CACHE}}}
        raw = create(
            model=self.alias,
            messages=self.messages,
            tools=TOOLS,
            reasoning_effort="high",
            max_tokens=400,
            extra_body=extra,
        )
        answer = raw.parse()
        message: dict[str, Any] = answer.choices[0].message.model_dump(exclude_none=True)  # extras included
        self.messages.append(message)
        usage = answer.usage.model_dump(exclude_none=True) if answer.usage else {}
        self.charges.append(Charge(raw.headers["x-request-id"], header_cost(raw.headers), invoice(usage)))
        self.answers.append({"message": message, "usage": usage})
        return message


def _talk(rig: Rig, alias: str) -> Conversation:
    convo = Conversation(rig, alias)
    for prompt in PROMPTS:
        convo.messages.append({"role": "user", "content": prompt})
        call = convo.turn()
        assert call.get("tool_calls"), f"{alias}: the model calls the tool: {call}"
        for tool_call in call["tool_calls"]:
            convo.messages.append({"role": "tool", "tool_call_id": tool_call["id"], "content": "18 C, light rain"})
        text = convo.turn()
        assert text.get("content"), f"{alias}: the continuation after the tool result is answered: {text}"
    return convo


@pytest.mark.parametrize("alias", sorted(UPSTREAMS))
def test_a_tool_using_conversation_keeps_its_reasoning_and_costs_its_invoice(rig: Rig, alias: str) -> None:
    rig.reset()
    convo = _talk(rig, alias)
    convo.client.close()
    for answer in convo.answers:
        shown = answer["message"].get("reasoning_content")
        assert bool(shown) is (alias not in HIDDEN), f"{alias}: reasoning shown: {answer['message']}"
        if alias != "claude-budget":  # older Claude counts thinking in output_tokens only (billed the same)
            assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    for charge in convo.charges:  # the header is the invoice of the usage the client saw, to the nano-dollar
        assert charge.header is not None and abs(charge.header - charge.from_usage) < NANO, (alias, charge)
    rig.assert_spend_is_the_sum(convo.key_id, convo.charges)
    provider = UPSTREAMS[alias][0]
    sent = [
        r.json() for r in rig.received if UPSTREAMS[alias][1] in r.path or r.json().get("model") == UPSTREAMS[alias][1]
    ]
    assert len(sent) == 4, f"{alias}: four turns reached the upstream"
    if provider == "anthropic":
        _assert_thinking_went_back(convo, sent)
        cached = [a["usage"].get("prompt_tokens_details", {}) for a in convo.answers]
        assert cached[0].get("cache_write_1h_tokens", 0) > 0, "the 1-hour breakpoint was written"
        assert any(c.get("cached_tokens", 0) > 0 for c in cached[1:]), "and read by the next turns"
    if provider == "gemini":
        assert all(a["usage"]["prompt_tokens_details"]["cached_tokens"] > 0 for a in convo.answers)
        assert all(body.get("cachedContent") == GEMINI_CACHE for body in sent)
    if provider.startswith("openai"):
        assert any(a["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0) > 0 for a in convo.answers[1:])


def _assert_thinking_went_back(convo: Conversation, sent: list[dict[str, Any]]) -> None:
    """Each tool-result turn sent the thinking of the answer before it back, signature byte for byte."""
    for index in (1, 3):  # the requests that carry a tool result
        before = convo.answers[index - 1]["message"]["thinking_blocks"]
        turns = sent[index]["messages"]
        assistant = [t for t in turns if t["role"] == "assistant"][-1]
        replayed = [b for b in assistant["content"] if b["type"] in ("thinking", "redacted_thinking")]
        assert replayed == before, "the signed thinking went back unchanged"
        assert assistant["content"][0]["type"] in ("thinking", "redacted_thinking")


RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "parameters": TOOLS[0]["function"]["parameters"]}]


@pytest.fixture
def responses_client(rig: Rig, request: pytest.FixtureRequest) -> Iterator[Any]:
    """An openai client with a fresh key (typed loosely: the Responses items are passed as dicts)."""
    rig.reset()
    with openai.OpenAI(base_url=rig.url + "/v1", api_key=rig.new_key(request.node.name)[0], max_retries=0) as sdk:
        yield sdk


def _answer_the_call(client: Any, first: Any, output: str) -> Any:
    """The next turn of ``first``: its function call answered, by ``previous_response_id``."""
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="claude-adaptive",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": output}],
        tools=RESPONSES_TOOLS,
        reasoning={"effort": "high"},
    )
    assert second.output_text
    return second


def test_a_stored_responses_conversation_replays_claudes_thinking(rig: Rig, responses_client: Any) -> None:
    """The Responses API on the adaptive-only Claude: previous_response_id rebuilds the
    thinking blocks from the store, though the client never asked for encrypted content."""
    first = responses_client.responses.create(
        model="claude-adaptive",
        input=PROMPTS[0],
        tools=RESPONSES_TOOLS,
        reasoning={"effort": "high", "summary": "auto"},
    )
    kinds = [item.type for item in first.output]
    assert kinds[0] == "reasoning" and "function_call" in kinds, kinds
    _answer_the_call(responses_client, first, "18 C")
    body = rig.upstream("/messages")[-1].json()
    assistant = [t for t in body["messages"] if t["role"] == "assistant"][-1]
    assert assistant["content"][0]["type"] == "thinking" and assistant["content"][0]["signature"]


def test_a_streamed_responses_turn_stores_its_thinking_for_the_next(rig: Rig, responses_client: Any) -> None:
    """The same on a stream: the reasoning item's events come first, and the thinking the
    stream carried (text and signature) is what the continuation sends back."""
    reasoning = {"effort": "high", "summary": "auto"}
    with responses_client.responses.stream(
        model="claude-adaptive", input=PROMPTS[1], tools=RESPONSES_TOOLS, reasoning=reasoning
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.function_call_arguments.delta")
    assert first.output[0].type == "reasoning" and first.output[0].summary[0].text
    _answer_the_call(responses_client, first, "21 C")
    sent = rig.upstream("/messages")
    thinking = [b for b in sent[-1].json()["messages"][1]["content"] if b["type"] == "thinking"]
    assert len(thinking) == 1 and thinking[0]["thinking"] == first.output[0].summary[0].text
    assert thinking[0]["signature"], "the stream's signature was stored"
