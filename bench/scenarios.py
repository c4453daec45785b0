"""The measured scenarios: what wrk sends, over how many connections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS

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
