"""Reasoning on the mock's chat completions route, chosen by model name
(:func:`gateway.mock.models.openai_reasoning`).

- **OpenAI reasoning models** (o-series, GPT-5, ``*reasoning*``): ``reasoning_effort`` one
  of ``none``/``minimal``/``low``/``medium``/``high``/``xhigh`` (the OpenAPI spec's
  ``ReasoningEffort``; another value -> 400 ``invalid_value`` in OpenAI's enum message
  format); a ``temperature`` other than 1 -> 400 ``unsupported_value`` "Unsupported value:
  'temperature' does not support 0.2 with this model. Only the default (1) value is
  supported." (the chat message quoted in public reports, e.g. glebm/i18n-tasks#672;
  the Responses one is recorded in ``shared/fixtures/responses/error_temperature_unsupported_vercel.json``).
  The answer reasons ``thinking_tokens`` (the knob) tokens unless the effort is ``none``:
  they are ``usage.completion_tokens_details.reasoning_tokens``, part of
  ``completion_tokens``, and not shown.
- **DeepSeek-style models** (``*reasoner*``, ``*-r1*``): the same tokens, and the reasoning
  text is shown as ``message.reasoning_content`` and as ``delta.reasoning_content`` stream
  chunks before the answer. Sampling settings are accepted and ignored, as DeepSeek
  documents; ``reasoning_content`` in the history is accepted (DeepSeek's documented rule
  changed between model versions, so the mock enforces neither).

Reasoning tokens come out of ``max_completion_tokens``/``max_tokens`` first, as OpenAI
counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.mock.errors import BadRequest
from gateway.mock.models import openai_reasoning
from gateway.mock.reasoning import thinking_budget, thinking_words

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True, slots=True)
class ChatReasoning:
    """The answer's reasoning: its tokens and, for DeepSeek-style models, its text."""

    tokens: int
    text: str | None = None


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _number(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else value


def check_reasoning(body: dict[str, Any], model: str) -> None:
    """Refuse the ``reasoning_effort`` and ``temperature`` an OpenAI reasoning model refuses."""
    if openai_reasoning(model) != "openai":
        return
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise BadRequest(
            f"Invalid value: '{_number(effort)}'. Supported values are: {_supported(EFFORTS)}.",
            "reasoning_effort",
            "invalid_value",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise BadRequest(
            f"Unsupported value: 'temperature' does not support {_number(temperature)} with this model. "
            "Only the default (1) value is supported.",
            "temperature",
            "unsupported_value",
        )


def chat_reasoning(body: dict[str, Any], model: str, wanted: int, last_user: str, limit: int | None) -> ChatReasoning:
    """The reasoning of the answer (no tokens for other models or effort ``none``)."""
    kind = openai_reasoning(model)
    if kind is None or body.get("reasoning_effort") == "none":
        return ChatReasoning(0)
    count = thinking_budget(wanted, None, limit)
    text = " ".join(thinking_words(last_user, count)) if kind == "deepseek" else None
    return ChatReasoning(count, text)
