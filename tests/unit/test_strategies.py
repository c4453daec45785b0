"""gateway.routing.strategies: how each strategy orders an alias's deployments."""

from __future__ import annotations

import random
import textwrap
from collections import Counter

import pytest

from gateway.config.loader import parse_config
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, Route, build_routes
from gateway.routing.strategies import (
    STRATEGIES,
    by_priority,
    least_inflight,
    lowest_cost,
    lowest_latency,
    round_robin,
    weighted,
)


def route_of(yaml_text: str, alias: str = "a") -> Route:
    settings = parse_config(textwrap.dedent(yaml_text), env={}).settings
    return build_routes(settings, presets())[alias]


def ids(order: list[LiveDeployment]) -> list[str]:
    return [d.id for d in order]


def alias_with(strategy: str, deployments: str) -> Route:
    body = textwrap.indent(textwrap.dedent(deployments).strip(), " " * 6)
    return route_of(f"models:\n  a:\n    strategy: {strategy}\n    deployments:\n{body}\n")


# --- build_routes -------------------------------------------------------------------


def test_build_routes_ids_targets_and_policies() -> None:
    text = """
    router:
      retry: {max_retries: 2}
      timeouts: {total_s: 60}
    models:
      a:
        fallbacks: [b]
        deployments:
          - {provider: openai, model: gpt-x, api_key: k1, id: first}
          - {provider: anthropic, model: claude-x, timeouts: {total_s: 7}}
      b:
        retry: {max_retries: 0}
        deployments:
          - {provider: openai_compatible, model: local, base_url: "http://h:1/v1"}
    """
    routes = build_routes(parse_config(textwrap.dedent(text), env={}).settings, presets())
    a, b = routes["a"], routes["b"]
    assert ids(a.deployments) == ["first", "a/1"]
    assert a.fallbacks == ["b"]
    assert a.retry.max_retries == 2
    assert b.retry.max_retries == 0
    first, second = a.deployments
    assert first.alias == "a"
    assert first.target.model == "gpt-x"
    assert first.target.base_url == "https://api.openai.com/v1"
    assert first.target.auth_header == "authorization"
    assert first.target.auth_scheme == "Bearer"
    assert first.timeouts.total_s == 60.0
    assert second.target.auth_header == "x-api-key"
    assert second.target.auth_scheme == ""
    assert second.timeouts.total_s == 7.0
    assert b.deployments[0].target.base_url == "http://h:1/v1"
    assert all(d.inflight == 0 and d.latency_ewma_s is None for d in a.deployments)


def test_build_routes_keeps_live_state_of_unchanged_deployments() -> None:
    text = """
    models:
      a:
        deployments:
          - {provider: openai, model: m, id: keep}
          - {provider: openai, model: m, id: change}
    """
    first = build_routes(parse_config(textwrap.dedent(text), env={}).settings, presets())
    keep, change = first["a"].deployments
    keep.observe_latency(1.5)
    changed = text.replace("{provider: openai, model: m, id: change}", "{provider: openai, model: n, id: change}")
    second = build_routes(parse_config(textwrap.dedent(changed), env={}).settings, presets(), first)
    assert second["a"].deployments[0] is keep
    assert second["a"].deployments[0].latency_ewma_s == 1.5
    assert second["a"].deployments[1] is not change
    assert second["a"].deployments[1].target.model == "n"


def test_strategy_table_is_complete() -> None:
    assert set(STRATEGIES) == {"priority", "weighted", "round_robin", "least_inflight", "lowest_latency", "lowest_cost"}


# --- priority -------------------------------------------------------------------------


def test_priority_orders_by_priority_then_config_order() -> None:
    route = alias_with(
        "priority",
        """
        - {provider: openai, model: m, id: p2, priority: 2}
        - {provider: openai, model: m, id: p0a}
        - {provider: openai, model: m, id: p1, priority: 1}
        - {provider: openai, model: m, id: p0b, priority: 0}
        - {provider: openai, model: m, id: neg, priority: -1}
        """,
    )
    rng = random.Random(0)
    assert ids(by_priority(route, rng)) == ["neg", "p0a", "p0b", "p1", "p2"]
    # deterministic: same answer every time
    assert ids(by_priority(route, rng)) == ["neg", "p0a", "p0b", "p1", "p2"]


# --- weighted ---------------------------------------------------------------------------


def test_weighted_first_choice_shares_follow_weights() -> None:
    route = alias_with(
        "weighted",
        """
        - {provider: openai, model: m, id: w1, weight: 1}
        - {provider: openai, model: m, id: w3, weight: 3}
        - {provider: openai, model: m, id: w6, weight: 6}
        """,
    )
    rng = random.Random(1234)
    draws = 20000
    firsts: Counter[str] = Counter()
    for _ in range(draws):
        order = weighted(route, rng)
        assert sorted(ids(order)) == ["w1", "w3", "w6"]  # every deployment present once
        firsts[order[0].id] += 1
    assert abs(firsts["w1"] / draws - 0.1) < 0.02
    assert abs(firsts["w3"] / draws - 0.3) < 0.02
    assert abs(firsts["w6"] / draws - 0.6) < 0.02


def test_weighted_equal_weights_are_uniform() -> None:
    route = alias_with(
        "weighted",
        """
        - {provider: openai, model: m, id: x}
        - {provider: openai, model: m, id: y}
        """,
    )
    rng = random.Random(7)
    firsts = Counter(weighted(route, rng)[0].id for _ in range(20000))
    assert abs(firsts["x"] / 20000 - 0.5) < 0.02


def test_weighted_is_reproducible_with_seed() -> None:
    route = alias_with(
        "weighted",
        """
        - {provider: openai, model: m, id: x, weight: 2}
        - {provider: openai, model: m, id: y, weight: 5}
        - {provider: openai, model: m, id: z, weight: 0.5}
        """,
    )
    a = [ids(weighted(route, random.Random(99))) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    r1, r2 = random.Random(5), random.Random(5)
    assert [ids(weighted(route, r1)) for _ in range(50)] == [ids(weighted(route, r2)) for _ in range(50)]


def test_weighted_tiny_weight_is_rarely_first() -> None:
    route = alias_with(
        "weighted",
        """
        - {provider: openai, model: m, id: tiny, weight: 0.01}
        - {provider: openai, model: m, id: big, weight: 99.99}
        """,
    )
    rng = random.Random(3)
    firsts = Counter(weighted(route, rng)[0].id for _ in range(20000))
    assert firsts["tiny"] / 20000 < 0.003


# --- round robin ---------------------------------------------------------------------------


def test_round_robin_rotates() -> None:
    route = alias_with(
        "round_robin",
        """
        - {provider: openai, model: m, id: r0}
        - {provider: openai, model: m, id: r1}
        - {provider: openai, model: m, id: r2}
        """,
    )
    rng = random.Random(0)
    assert ids(round_robin(route, rng)) == ["r0", "r1", "r2"]
    assert ids(round_robin(route, rng)) == ["r1", "r2", "r0"]
    assert ids(round_robin(route, rng)) == ["r2", "r0", "r1"]
    assert ids(round_robin(route, rng)) == ["r0", "r1", "r2"]
    assert route.turn == 4


# --- least in-flight ----------------------------------------------------------------------


def test_least_inflight() -> None:
    route = alias_with(
        "least_inflight",
        """
        - {provider: openai, model: m, id: busy}
        - {provider: openai, model: m, id: idle_low, priority: 1}
        - {provider: openai, model: m, id: idle_high, priority: 0}
        - {provider: openai, model: m, id: some}
        """,
    )
    busy, idle_low, idle_high, some = route.deployments
    busy.inflight = 5
    some.inflight = 2
    rng = random.Random(0)
    assert ids(least_inflight(route, rng)) == ["idle_high", "idle_low", "some", "busy"]
    idle_high.inflight = 3
    idle_low.inflight = 3
    assert ids(least_inflight(route, rng)) == ["some", "idle_high", "idle_low", "busy"]


# --- lowest latency ------------------------------------------------------------------------


def test_lowest_latency_unmeasured_first_then_by_ewma() -> None:
    route = alias_with(
        "lowest_latency",
        """
        - {provider: openai, model: m, id: slow}
        - {provider: openai, model: m, id: fast}
        - {provider: openai, model: m, id: new}
        - {provider: openai, model: m, id: mid}
        """,
    )
    slow, fast, _new, mid = route.deployments
    rng = random.Random(0)
    # nobody measured: config order (priority ties)
    assert ids(lowest_latency(route, rng)) == ["slow", "fast", "new", "mid"]
    slow.observe_latency(2.0)
    fast.observe_latency(0.1)
    mid.observe_latency(0.5)
    assert ids(lowest_latency(route, rng)) == ["new", "fast", "mid", "slow"]


def test_observe_latency_is_an_ewma() -> None:
    route = alias_with("lowest_latency", "- {provider: openai, model: m}")
    dep = route.deployments[0]
    dep.observe_latency(1.0)
    assert dep.latency_ewma_s == 1.0
    dep.observe_latency(2.0)
    assert dep.latency_ewma_s == pytest.approx(1.2)  # 1.0 + 0.2 * (2.0 - 1.0)
    dep.observe_latency(0.2)
    assert dep.latency_ewma_s == pytest.approx(1.2 + 0.2 * (0.2 - 1.2))


def test_lowest_latency_ewma_reorders_after_observations() -> None:
    route = alias_with(
        "lowest_latency",
        """
        - {provider: openai, model: m, id: a}
        - {provider: openai, model: m, id: b}
        """,
    )
    a, b = route.deployments
    a.observe_latency(1.0)
    b.observe_latency(1.5)
    rng = random.Random(0)
    assert ids(lowest_latency(route, rng)) == ["a", "b"]
    for _ in range(10):
        a.observe_latency(3.0)  # a gets slow
    assert ids(lowest_latency(route, rng)) == ["b", "a"]


# --- lowest cost -------------------------------------------------------------------------------


def test_lowest_cost_unpriced_last() -> None:
    route = alias_with(
        "lowest_cost",
        """
        - {provider: openai, model: m, id: unpriced}
        - {provider: openai, model: m, id: pricey, price: {input_per_1m: 5, output_per_1m: 15}}
        - {provider: openai, model: m, id: cheap, price: {input_per_1m: 0.1, output_per_1m: 0.4}}
        - {provider: openai, model: m, id: free, price: {input_per_1m: 0, output_per_1m: 0}}
        - {provider: openai, model: m, id: mid, price: {input_per_1m: 1, output_per_1m: 1, cached_input_per_1m: 0.01}}
        """,
    )
    assert [d.cost_per_1m for d in route.deployments] == [float("inf"), 20.0, 0.5, 0.0, 2.0]
    assert ids(lowest_cost(route, random.Random(0))) == ["free", "cheap", "mid", "pricey", "unpriced"]


def test_lowest_cost_ties_broken_by_priority() -> None:
    route = alias_with(
        "lowest_cost",
        """
        - {provider: openai, model: m, id: x, priority: 2, price: {input_per_1m: 1, output_per_1m: 1}}
        - {provider: openai, model: m, id: y, priority: 1, price: {input_per_1m: 1, output_per_1m: 1}}
        - {provider: openai, model: m, id: u2, priority: 2}
        - {provider: openai, model: m, id: u1, priority: 1}
        """,
    )
    assert ids(lowest_cost(route, random.Random(0))) == ["y", "x", "u1", "u2"]


def test_strategies_do_not_mutate_deployment_list() -> None:
    route = alias_with(
        "priority",
        """
        - {provider: openai, model: m, id: b, priority: 1}
        - {provider: openai, model: m, id: a, priority: 0}
        """,
    )
    rng = random.Random(0)
    for name, order in STRATEGIES.items():
        result = order(route, rng)
        assert sorted(ids(result)) == ["a", "b"], name
        assert ids(route.deployments) == ["b", "a"], name
