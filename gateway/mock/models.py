"""Which reasoning rules a mock model follows, chosen by its name.

The real APIs differ per model generation; the mock picks the generation from the model
name so one mock serves every end-to-end rig. Names for the rigs (any other name works
too, by the rules below):

==========================  ===========  ================================================
model name                  wire format  behaves like
==========================  ===========  ================================================
``mock-claude-adaptive``    Anthropic    newest Claude (``claude-opus-4-7`` and later):
                                         adaptive thinking only, no ``temperature``
``mock-claude-budget``      Anthropic    older Claude (``claude-sonnet-4-5``): only
                                         ``{type: enabled, budget_tokens}``
``mock-claude``             Anthropic    Claude 4.6: both (as before this module)
``mock-gemini-3-thinking``  Gemini       Gemini 3: ``thinkingLevel``, thought signatures
                                         required on replayed function calls
``mock-gemini-2.5-thinking``  Gemini     Gemini 2.5: ``thinkingBudget`` only
``mock-gpt-reasoning``      OpenAI chat  o-series / GPT-5: ``reasoning_effort``,
                                         ``temperature`` only 1, ``reasoning_tokens``
``mock-deepseek-reasoner``  OpenAI chat  DeepSeek-style: ``reasoning_content`` in the
                                         message and in stream deltas
==========================  ===========  ================================================

Rules by name (see :func:`claude_thinking`, :func:`gemini_thinking`, :func:`openai_reasoning`):

- **Claude**: a name containing ``adaptive`` is adaptive-only, one containing ``budget``
  budget-only; otherwise the version in ``claude-<family>-<major>-<minor>`` (or
  ``claude-<major>-<minor>-<family>``) decides: 4.7 and later adaptive-only, 4.6 both,
  older budget-only. A name without a version (``mock-claude``, ``m``) takes both, as the
  mock did before these rules (the demo and end-to-end configs use ``mock-claude``).
- **Gemini**: the version in ``gemini-<major>[.<minor>]``: 3 and later follow the
  Gemini 3 rules, 2.5 the Gemini 2.5 rules; other names (``gemini-2.0-flash``,
  ``mock-gemini``) do not think (``thinkingConfig`` is ignored, as before).
- **OpenAI chat**: a name containing ``reasoner`` or an ``r1`` word (``deepseek-r1``) is
  DeepSeek-style; one containing ``reasoning``, starting with ``o<digit>`` (``o3-mini``)
  or ``gpt-5`` (not ``gpt-5-chat``) is an OpenAI reasoning model; other names do not
  reason (``reasoning_tokens`` stays 0, as before).
"""

from __future__ import annotations

import re
from typing import Literal

ClaudeThinking = Literal["adaptive_only", "both", "budget_only"]
GeminiThinking = Literal["gemini3", "gemini25"]
OpenAIReasoning = Literal["openai", "deepseek"]

RIG_MODELS = (
    "mock-claude-adaptive",
    "mock-claude-budget",
    "mock-gemini-3-thinking",
    "mock-gemini-2.5-thinking",
    "mock-gpt-reasoning",
    "mock-deepseek-reasoner",
)

_CLAUDE_VERSION = re.compile(r"claude-(?:[a-z]+-)?(\d{1,2})(?:[-.](\d{1,2}))?(?!\d)")
_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
_R1 = re.compile(r"(?:^|[-_/:.])r1(?:$|[-_/:.])")
_O_SERIES = re.compile(r"(?:^|/)o\d")
_GPT5 = re.compile(r"(?:^|/)gpt-5")


def claude_thinking(model: str) -> ClaudeThinking:
    """Which ``thinking`` types the Claude ``model`` takes (see the module doc)."""
    name = model.lower()
    if "adaptive" in name:
        return "adaptive_only"
    if "budget" in name:
        return "budget_only"
    match = _CLAUDE_VERSION.search(name)
    if match is None:
        return "both"
    version = (int(match.group(1)), int(match.group(2) or 0))
    if version >= (4, 7):
        return "adaptive_only"
    return "both" if version == (4, 6) else "budget_only"


def gemini_thinking(model: str) -> GeminiThinking | None:
    """The Gemini generation whose thinking rules ``model`` follows; ``None``: no thinking."""
    match = _GEMINI_VERSION.search(model.lower())
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major >= 3:
        return "gemini3"
    return "gemini25" if (major, minor) == (2, 5) else None


def openai_reasoning(model: str) -> OpenAIReasoning | None:
    """How the chat ``model`` reasons; ``None``: it does not."""
    name = model.lower()
    if "reasoner" in name or _R1.search(name):
        return "deepseek"
    if "reasoning" in name or _O_SERIES.search(name):
        return "openai"
    if _GPT5.search(name) and "-chat" not in name:
        return "openai"
    return None
