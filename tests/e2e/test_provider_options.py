"""Provider-only fields across formats (``provider_options``, gateway/providers/options.py),
driven with the openai and anthropic SDKs through a gateway in front of the recorded mock:
only the serving provider's entry applies, only for fields on its deployment's allow-list,
merged into the translated body; ``provider_options`` itself never reaches an upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.harness import MASTER_KEY
from tests.e2e.replay_rig import PREAMBLE, Rig, rig_fixture

SAFETY = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]


def _config(mock_url: str) -> str:
    v1, v1beta = f"{mock_url}/v1", f"{mock_url}/v1beta"
    claude = f"provider: anthropic, model: mock-claude, base_url: '{v1}', api_key: k"
    gemini = f"provider: gemini, model: mock-gemini, base_url: '{v1beta}', api_key: k"
    return (
        PREAMBLE
        + f"""models:
  claude-opts: {{deployments: [{{{claude}, provider_options: [top_k]}}]}}
  gemini-opts: {{deployments: [{{{gemini}, provider_options: [safetySettings, generationConfig]}}]}}
  gpt-plain: {{deployments: [{{provider: openai, model: mock-gpt, base_url: '{v1}', api_key: k}}]}}
  two:
    deployments:
      - {{{claude}, priority: 0}}
      - {{{gemini}, priority: 1, provider_options: [safetySettings]}}
"""
    )


rig = rig_fixture("provider-options", _config)


@pytest.fixture
def client(rig: Rig) -> Iterator[openai.OpenAI]:
    rig.reset()
    with openai.OpenAI(base_url=rig.url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def _chat(client: openai.OpenAI, model: str, options: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hello there"}],
        max_tokens=20,
        extra_body={"provider_options": options},
        **kw,
    )


def test_the_serving_providers_fields_reach_its_body_and_the_others_do_not(rig: Rig, client: openai.OpenAI) -> None:
    options = {"anthropic": {"top_k": 3}, "gemini": {"safetySettings": SAFETY}}
    answer = _chat(client, "claude-opts", options)
    assert answer.choices[0].message.content
    (sent,) = rig.upstream("/messages")
    body = sent.json()
    assert body["top_k"] == 3 and body["max_tokens"] == 20
    assert "provider_options" not in body and "safetySettings" not in body


def test_an_object_field_is_merged_into_the_translated_one(rig: Rig, client: openai.OpenAI) -> None:
    options = {"gemini": {"safetySettings": SAFETY, "generationConfig": {"seed": 7}}}
    _chat(client, "gemini-opts", options, temperature=0.5)
    (sent,) = rig.upstream(":generateContent")
    body = sent.json()
    assert body["safetySettings"] == SAFETY and "provider_options" not in body
    config = body["generationConfig"]
    assert config["seed"] == 7, config
    assert config["maxOutputTokens"] == 20 and config["temperature"] == 0.5, "the translated fields are kept"


def test_a_stream_gets_them_too(rig: Rig, client: openai.OpenAI) -> None:
    stream = _chat(client, "claude-opts", {"anthropic": {"top_k": 2}}, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    (sent,) = rig.upstream("/messages")
    assert sent.json()["top_k"] == 2 and sent.json()["stream"] is True


def test_a_field_off_the_allow_list_is_refused_by_name_and_nothing_is_sent(rig: Rig, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client, "claude-opts", {"anthropic": {"top_k": 1, "inference_geo": "eu"}})
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "provider_options.anthropic.inference_geo", error
    assert "allowed: top_k" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:  # a deployment with no list takes none
        _chat(client, "gpt-plain", {"openai": {"logit_bias": {}}})
    assert caught.value.body["param"] == "provider_options.openai.logit_bias"  # type: ignore[index]
    assert rig.upstream("/v1/") == [], "refused before anything went upstream"


def test_the_next_deployment_takes_a_request_the_first_refuses(rig: Rig, client: openai.OpenAI) -> None:
    options = {"anthropic": {"top_k": 1}, "gemini": {"safetySettings": SAFETY}}
    answer = _chat(client, "two", options)
    assert answer.choices[0].message.content
    assert rig.upstream("/messages") == [], "the claude deployment allows nothing"
    (sent,) = rig.upstream(":generateContent")
    assert sent.json()["safetySettings"] == SAFETY


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ("top_k=3", "provider_options"),
        ({"antropic": {"top_k": 3}}, "provider_options.antropic"),
        ({"anthropic": [1]}, "provider_options.anthropic"),
    ],
)
def test_a_malformed_provider_options_is_a_400_naming_it(
    rig: Rig, client: openai.OpenAI, options: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client, "claude-opts", options)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert rig.upstream("/v1/") == []


def test_a_same_format_body_has_them_applied_and_taken_out(rig: Rig) -> None:
    rig.reset()
    with anthropic.Anthropic(base_url=rig.url, api_key=MASTER_KEY, max_retries=0) as c:
        message = c.messages.create(
            model="claude-opts",
            max_tokens=16,
            messages=[{"role": "user", "content": "Hello there"}],
            extra_body={"provider_options": {"anthropic": {"top_k": 4}}},
        )
        assert message.content
        with pytest.raises(anthropic.BadRequestError) as caught:
            c.messages.create(
                model="claude-opts",
                max_tokens=16,
                messages=[{"role": "user", "content": "Hello there"}],
                extra_body={"provider_options": {"anthropic": {"service_tier": "auto"}}},
            )
    assert "provider_options.anthropic.service_tier" in str(caught.value)
    (sent,) = rig.upstream("/messages")
    assert sent.json()["top_k"] == 4 and "provider_options" not in sent.json()


def test_the_other_dialects_carry_them_across_formats(rig: Rig) -> None:
    """A Responses client and a Messages client, each to a Gemini deployment: the fields
    reach the translated body as they do from chat completions."""
    rig.reset()
    options = {"gemini": {"safetySettings": SAFETY}}
    with openai.OpenAI(base_url=rig.url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        answer = c.responses.create(model="gemini-opts", input="Hello there", extra_body={"provider_options": options})
        assert answer.output_text
    with anthropic.Anthropic(base_url=rig.url, api_key=MASTER_KEY, max_retries=0) as a:
        message = a.messages.create(
            model="gemini-opts",
            max_tokens=16,
            messages=[{"role": "user", "content": "Hello there"}],
            extra_body={"provider_options": options},
        )
        assert message.content
    sent = rig.upstream(":generateContent")
    assert len(sent) == 2
    assert all(s.json()["safetySettings"] == SAFETY and "provider_options" not in s.json() for s in sent)
