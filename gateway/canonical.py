"""The canonical model: OpenAI's chat-completions shapes, as plain dicts.

Every ingress dialect parses into these shapes and every provider translates
from and to them, so each format needs exactly one translation per direction.
They are plain ``dict`` objects (cheap to build, and orjson serialises them
directly); the TypedDicts below document the keys the gateway relies on.

Conventions the translators keep:
- ``ChatRequest.messages[].content`` is ``str``, ``None`` or a list of parts
  (``{"type": "text", "text"}``, ``{"type": "image_url", "image_url": {"url"}}``).
- Tool-call ``arguments`` are JSON *strings*, as in OpenAI.
- ``Usage`` always has ``prompt_tokens``, ``completion_tokens`` and
  ``total_tokens``; ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens`` appear when the upstream gave them.
- ``finish_reason`` is one of ``stop``, ``length``, ``tool_calls``,
  ``content_filter``, or ``None`` while a stream is still going.
"""

from __future__ import annotations

import time
from typing import Any, Literal, NotRequired, TypedDict

JSON = dict[str, Any]
"""A JSON object (request, response or chunk) in canonical form."""

WIRE_ANTHROPIC = "anthropic"
"""Wire format names, shared by ingress dialects and providers (``Provider.wire``): a
client's dialect equal to a deployment's wire format means same-format pass-through."""
WIRE_OPENAI_CHAT = "openai_chat"
WIRE_OPENAI_RESPONSES = "openai_responses"
WIRE_GEMINI = "gemini"

EXTENSIONS = ("thinking", "reasoning", "thinking_config", "cached_content", "native_body", "provider_options")
"""Request keys an ingress dialect keeps beside the OpenAI ones (its reasoning and
cache settings): part of the cache key and of what the same-format path forwards,
never sent upstream by a translation (``provider_options``: the client's provider-only
fields, which gateway/providers/options.py writes into the serving provider's body after the
translation). Assistant messages may carry ``reasoning_content`` and
``thinking_blocks`` (Anthropic thinking blocks, verbatim), which reach the providers."""


def upstream_view(req: JSON) -> JSON:
    """``req`` without :data:`EXTENSIONS` (``req`` is not modified). Assistant messages keep
    their ``thinking_blocks`` and ``reasoning_content``: the Anthropic provider sends signed
    thinking back, every other provider drops them."""
    if not any(k in req for k in EXTENSIONS):
        return req
    return {k: v for k, v in req.items() if k not in EXTENSIONS}


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""OpenAI's ``reasoning_effort`` values, the canonical request's reasoning setting. A dialect
whose client gave a token budget also sets ``reasoning_budget`` (int, 0 = off), which only
the Anthropic and Gemini providers read (docs/dialects.md, "Reasoning")."""
REASONING_TRANSLATED = "reasoning_translated"
"""Set (True) beside a ``reasoning_effort`` that a dialect translated from its own setting
(Anthropic ``thinking``, Gemini ``thinkingConfig``): an OpenAI-format upstream gets such an
effort only for a model that reasons (gateway/providers/openai_compat.py
``reasoning_model``), where the effort an OpenAI client sent itself always goes through.
Never sent upstream."""
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
"""The documented mapping between efforts and thinking-token budgets (``none`` = 0, off)."""


def effort_to_budget(effort: str) -> int:
    """The thinking budget of a ``reasoning_effort`` (0 for ``none``; ``max``, which newer
    OpenAI models take, reads as ``xhigh``; an unknown effort as ``medium``)."""
    if effort == "none":
        return 0
    if effort == "max":
        return EFFORT_BUDGETS["xhigh"]
    return EFFORT_BUDGETS.get(effort, EFFORT_BUDGETS["medium"])


def budget_to_effort(budget: int) -> str:
    """The effort of a thinking budget: the largest whose budget is at most ``budget``
    (``none`` for 0 or less, ``minimal`` below 1024)."""
    if budget <= 0:
        return "none"
    fitting = [effort for effort, tokens in EFFORT_BUDGETS.items() if tokens <= budget]
    return fitting[-1] if fitting else "minimal"


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict, total=False):
    role: str
    content: str | list[JSON] | None
    name: str
    tool_calls: list[ToolCall]
    tool_call_id: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[JSON]
    completion_tokens_details: NotRequired[JSON]


def make_usage(prompt: int, completion: int, *, cached: int | None = None, reasoning: int | None = None) -> JSON:
    """A canonical usage object; the detail blocks appear only when known."""
    usage: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def make_completion(
    *,
    id: str,
    model: str,
    message: JSON,
    finish_reason: str | None,
    usage: JSON | None,
    created: int | None = None,
) -> JSON:
    """A canonical ``chat.completion`` with one choice."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage,
    }


def make_chunk(
    *,
    id: str,
    model: str,
    created: int,
    delta: JSON | None = None,
    finish_reason: str | None = None,
    usage: JSON | None = None,
) -> JSON:
    """A canonical ``chat.completion.chunk``. With ``delta`` None and usage
    given, it is the final usage-only chunk (``choices: []``)."""
    chunk: JSON = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    if delta is None and finish_reason is None:
        chunk["choices"] = []
    else:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def message_text(message: JSON) -> str:
    """The text of a message's content, parts joined; images and others skipped."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
