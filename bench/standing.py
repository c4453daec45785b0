"""The standing performance check of ``python -m bench.ratio``: per scenario, the floor app,
the bare gateway and the gateway with every feature on (embedded and Redis state), weighed
round by round against each other, with the performance issue's targets, and the line the
README's table takes.

The targets (one worker process on one core; every feature on: auth by a client key in a
team, rate, token and concurrency limits, budgets, prices, cache lookup, metrics, the
access log; tracing as by default, no exporter configured, so no spans are made):

- non-streaming at 16 connections: embedded >= 70 % of the floor app's requests/s;
- streaming: embedded >= 70 % of the streaming floor's streams/s;
- the Redis backend >= 85 % of embedded (held to both, requests and streams);
- the latency embedded adds at one connection (its p50 - nginx direct's) <= 0.5 ms.

The older targets of the traffic-control issue stay shown (embedded >= 80 %, Redis >= 65 %
of the bare gateway's requests/s).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from bench.report import ONE_CONN_SCENARIO
from bench.rounds import POSTGRES, POSTGRES_TARGET, TARGETS, Rounds
from bench.scenarios import Scenario

FLOOR = "floor"
"""The variant of the floor app (``bench.floor``: uvicorn + aiohttp, forwarding only)."""
FLOOR_SHARE = 0.70
"""Embedded, every feature on, against the floor app: requests/s, and streams/s."""
REDIS_SHARE = 0.85
"""The Redis backend against embedded."""
ADDED_P50_MS = 0.5
"""The latency embedded adds at one connection."""


def standing_rounds(sc: Scenario, variants: Sequence[str]) -> Rounds:
    """The rounds of one scenario over ``variants`` (the floor, bare, embedded, redis and
    any extra), with its targets."""
    rps: dict[str, list[float]] = {v: [] for v in variants}
    if sc.name == ONE_CONN_SCENARIO:
        return Rounds(rps, "bare", {}, lower_is_better=True, cell=".3f", limits={"embedded": ADDED_P50_MS}, unit="ms")
    pairs = {("embedded", FLOOR): FLOOR_SHARE, ("redis", "embedded"): REDIS_SHARE}
    if POSTGRES in variants:
        pairs[POSTGRES, "redis"] = POSTGRES_TARGET
    targets = dict(TARGETS) if not sc.stream else {}
    return Rounds(rps, "bare", targets, pairs=pairs)


def cpu_table(variants: Sequence[str]) -> Rounds:
    """The CPU per request of each server in a loaded scenario (µs, all its threads), weighed
    against the floor app's: how much more work a request is, the cost behind requests/s."""
    return Rounds({v: [] for v in variants}, FLOOR, {}, lower_is_better=True, cell=",.0f")


def readme_row(tables: Mapping[str, Rounds], label: str) -> str:
    """The README's line for this run: the medians of every scenario and the shares the
    targets are about (``-`` where a scenario was not measured)."""

    def median(scenario: str, variant: str) -> str:
        rounds = tables.get(scenario)
        if rounds is None or not rounds.rps[variant]:
            return "-"
        return f"{statistics.median(rounds.rps[variant]):{rounds.cell}}"

    def share(scenario: str, variant: str, to: str) -> str:
        rounds = tables.get(scenario)
        if rounds is None or not rounds.rps[variant]:
            return "-"
        return f"{rounds.median_ratio(variant, to):.1%}"

    cells = [label]
    for scenario in ("json", "sse"):
        cells += [median(scenario, FLOOR), median(scenario, "bare")]
        cells += [f"{median(scenario, 'embedded')} ({share(scenario, 'embedded', FLOOR)} of floor)"]
        cells += [f"{median(scenario, 'redis')} ({share(scenario, 'redis', 'embedded')} of embedded)"]
    cells += [median(ONE_CONN_SCENARIO, "embedded"), median(ONE_CONN_SCENARIO, "redis")]
    return "| " + " | ".join(cells) + " |"


README_HEADER = (
    "| run | floor req/s | bare req/s | embedded req/s | Redis req/s | floor streams/s | bare streams/s "
    "| embedded streams/s | Redis streams/s | added p50 ms, embedded | added p50 ms, Redis |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)
