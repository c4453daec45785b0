"""A fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats on one port.

Responses have the real shapes (see ``shared/fixtures``); behaviour knobs
(:class:`Behaviour`) inject latency, errors, disconnects and garbage, set per
model in the YAML config, at runtime (``PUT /_mock/behaviours/{model}``) or per
request (``x-mock-<knob>`` headers). :mod:`gateway.mock.testing` runs it in a thread.

Modules: ``app`` (create/run), ``behaviour`` (knobs, config), ``state`` (stats,
overrides, cache memory), ``pipeline`` (shared request steps), ``content`` (generated
replies), ``reasoning`` (thinking text, signatures), ``thinking`` (Anthropic thinking
rules), ``caching`` (prompt-cache accounting), ``streaming`` (paced SSE), ``errors``
(error bodies), ``openai``/``responses``/``responses_wire``/``anthropic``/``gemini`` (wire
formats), ``control`` (``/_mock/*``), ``testing`` (a server for tests).
"""

from gateway.mock.app import create_mock_app, run_mock
from gateway.mock.behaviour import Behaviour, MockConfig, MockConfigError, load_mock_config

__all__ = ["Behaviour", "MockConfig", "MockConfigError", "create_mock_app", "load_mock_config", "run_mock"]
