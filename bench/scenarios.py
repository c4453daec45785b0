"""The measured scenarios: what wrk sends, over how many connections; and the
routes ``bench.ratio --apis`` compares: which client API, to which upstream format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from bench.apis import CHAT, MESSAGES, RESPONSES, RESPONSES_STATELESS, Api
from bench.gateway_proc import CLAUDE_JSON_ALIAS, CLAUDE_SSE_ALIAS, JSON_ALIAS, SSE_ALIAS

CACHED_SCENARIO = "json-cached"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    stream: bool
    connections: int
    temperature: int | None = None  # absent: not cacheable (the cache decision still runs)

    @property
    def alias(self) -> str:
        return SSE_ALIAS if self.stream else JSON_ALIAS


SCENARIO_NAMES = ("json", "json-1conn", "sse")
"""Run against nginx, the bare gateway and, with traffic control, each backend."""


def scenarios(connections: int) -> list[Scenario]:
    return [
        Scenario("json", f"non-streaming, {connections} connections (requests/s)", False, connections),
        Scenario("json-1conn", "non-streaming, 1 connection (added latency)", False, 1),
        Scenario("sse", f"streaming, {connections} connections (streams/s)", True, connections),
    ]


def cached_scenario(connections: int) -> Scenario:
    """Traffic control only: temperature 0, so every request after the first is a cache hit."""
    return Scenario(CACHED_SCENARIO, f"cache hits, {connections} connections", False, connections, temperature=0)


def selected(all_scenarios: Sequence[Scenario], only: Sequence[str]) -> list[Scenario]:
    """The scenarios ``--only`` names; all of them when ``only`` is empty."""
    wanted = set(only)
    return [s for s in all_scenarios if not wanted or s.name in wanted]


OPENAI, ANTHROPIC = "openai", "anthropic"
"""Upstream formats: nginx's canned chat completions, or its canned Anthropic messages."""
_ALIASES = MappingProxyType(
    {
        (OPENAI, False): JSON_ALIAS,
        (OPENAI, True): SSE_ALIAS,
        (ANTHROPIC, False): CLAUDE_JSON_ALIAS,
        (ANTHROPIC, True): CLAUDE_SSE_ALIAS,
    }
)


@dataclass(frozen=True)
class Route:
    """A client API through the gateway to an upstream of one format."""

    name: str
    api: Api
    upstream: str = OPENAI

    def alias(self, stream: bool) -> str:
        """The bench alias whose deployment speaks ``upstream`` (answering JSON or a stream)."""
        return _ALIASES[self.upstream, stream]


ROUTES = (
    Route("chat", CHAT),  # the baseline: chat completions to an OpenAI-format upstream (as demo-gpt)
    Route("messages-claude", MESSAGES, ANTHROPIC),  # same format (as demo-claude): the body passes through
    Route("messages-gpt", MESSAGES),  # Messages translated to chat completions and back
    Route("responses-gpt", RESPONSES),  # Responses translated to chat completions and back, each answer stored
    Route("responses-gpt-nostore", RESPONSES_STATELESS),  # the same with store: false (as Codex sends it)
)
NATIVE_API = MappingProxyType({OPENAI: CHAT, ANTHROPIC: MESSAGES})
"""The API each upstream format answers (nginx direct is measured with it)."""
