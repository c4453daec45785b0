"""A fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats on one port.

Responses have the real shapes (see ``shared/fixtures``); behaviour knobs
(:class:`Behaviour`) inject latency, errors, disconnects and garbage, set per
model in the YAML config, at runtime (``PUT /_mock/behaviours/{model}``) or per
request (``x-mock-<knob>`` headers). :mod:`gateway.mock.testing` runs it in a thread.

Reasoning rules follow the model name (:mod:`gateway.mock.models`). Model names for the
end-to-end reasoning rigs (wire an alias's deployment ``model`` to one of them):

- ``mock-claude-adaptive``: Claude that takes only adaptive thinking (``output_config.effort``;
  ``budget_tokens`` and ``temperature`` refused; thinking text only with ``display: summarized``);
- ``mock-claude-budget``: older Claude, only ``{type: enabled, budget_tokens}``;
- ``mock-gemini-3-thinking``: Gemini 3 (``thinkingLevel``, thought signatures required);
- ``mock-gemini-2.5-thinking``: Gemini 2.5 (``thinkingBudget`` only);
- ``mock-gpt-reasoning``: OpenAI reasoning model (``reasoning_effort``, ``temperature`` only 1);
- ``mock-deepseek-reasoner``: OpenAI-compatible model returning ``reasoning_content``.

The demo names (``mock-gpt``, ``mock-claude``, ``mock-gemini``) behave as before.

Modules: ``app`` (create/run), ``behaviour`` (knobs, config), ``state`` (stats,
overrides, cache memory), ``pipeline`` (shared request steps), ``content`` (generated
replies), ``reasoning`` (thinking text, signatures), ``models`` (reasoning rules by model
name), ``thinking`` (Anthropic thinking rules), ``gemini_thinking`` (Gemini thinking and
thought signatures), ``openai_reasoning`` (chat reasoning), ``caching`` (prompt-cache
accounting), ``streaming`` (paced SSE), ``errors`` (error bodies),
``openai``/``responses``/``responses_wire``/``anthropic``/``gemini`` (wire formats),
``control`` (``/_mock/*``), ``testing`` (a server for tests).
"""

from gateway.mock.app import create_mock_app, run_mock
from gateway.mock.behaviour import Behaviour, MockConfig, MockConfigError, load_mock_config

__all__ = ["Behaviour", "MockConfig", "MockConfigError", "create_mock_app", "load_mock_config", "run_mock"]
