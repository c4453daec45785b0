"""The scheduled checks' state machine (degrade after N failed of the last M
checks, restore after K passing in a row), the router's handling of degraded
deployments, and the ``health_checks`` settings."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import textwrap

import pytest

from gateway.config.loader import ConfigError, parse_config
from gateway.config.operations import HealthCheckSettings
from gateway.errors import UpstreamError
from gateway.health.monitor import Check, DeploymentHealth, HealthMonitor
from gateway.observability.metrics import Metrics
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment, Route, build_routes
from gateway.routing.router import Lease, RequestTrace, Router

MODELS = """
pair:
  strategy: round_robin
  deployments:
    - {provider: openai, model: a, base_url: 'http://127.0.0.1:9/v1', api_key: k}
    - {provider: openai, model: b, base_url: 'http://127.0.0.1:9/v1', api_key: k}
embed:
  kind: embedding
  deployments: [{provider: openai, model: e, base_url: 'http://127.0.0.1:9/v1', api_key: k}]
"""


def routes() -> dict[str, Route]:
    text = "router: {breaker: {consecutive_failures: 50, min_requests: 50}}\nmodels:\n" + textwrap.indent(
        MODELS.strip(), "  "
    )
    return build_routes(parse_config(text, env={}).settings, presets())


def policy(**kw: object) -> HealthCheckSettings:
    return HealthCheckSettings.model_validate({"enabled": True, **kw})


def health(**kw: object) -> tuple[DeploymentHealth, HealthCheckSettings]:
    p = policy(**kw)
    return DeploymentHealth.new(routes()["pair"].deployments[0], p), p


PASS, FAIL = Check(True, 100), Check(False, 0)


def is_degraded(state: DeploymentHealth) -> bool:
    """(A call, so that mypy does not narrow the attribute between records.)"""
    return state.degraded


# --- degrade and restore ---------------------------------------------------------------


def test_degraded_after_n_failures_of_the_last_m() -> None:
    state, p = health(window=3, failures=2, recover_after=2)
    assert state.record(FAIL, p) is None
    assert state.record(PASS, p) is None
    assert not is_degraded(state)
    assert state.record(FAIL, p) == "degraded"  # 2 failed of the last 3
    assert is_degraded(state)
    assert state.score == 33


def test_failures_that_left_the_window_do_not_count() -> None:
    state, p = health(window=3, failures=2)
    for check in (FAIL, PASS, PASS, FAIL, PASS, PASS, FAIL):
        assert state.record(check, p) is None, "never two failures within three checks"
    assert not is_degraded(state)


def test_restored_after_k_passing_in_a_row() -> None:
    state, p = health(window=3, failures=2, recover_after=2)
    for check in (FAIL, FAIL):
        state.record(check, p)
    assert is_degraded(state)
    assert state.record(PASS, p) is None
    assert state.record(FAIL, p) is None, "a failure restarts the count"
    assert state.record(PASS, p) is None
    assert state.record(PASS, p) == "restored"
    assert not is_degraded(state)
    assert [c.passed for c in state.window] == [True], "old failures are forgotten on restore"
    assert state.record(FAIL, p) is None, "one failure after a restore does not degrade again"


def test_score_averages_partial_checks() -> None:
    state, p = health(window=4, failures=4)
    for check in (Check(True, 100), Check(False, 75), Check(False, 50), Check(True, 100)):
        state.record(check, p)
    assert state.score == 81
    assert state.to_json()["recent"] == [True, False, False, True]


def test_unchecked_deployment_has_no_score() -> None:
    state, _ = health()
    assert state.score is None
    row = state.to_json()
    assert row["id"] == "pair/0" and row["health_score"] is None and row["degraded"] is False


def test_window_follows_a_changed_policy() -> None:
    state, p = health(window=5, failures=5)
    for _ in range(4):
        state.record(PASS, p)
    smaller = policy(window=2, failures=1)
    assert state.record(FAIL, smaller) == "degraded"
    assert len(state.window) == 2


# --- the router routes around degraded deployments -------------------------------------


async def _served(router: Router, n: int) -> list[str]:
    served = []

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> str:
        return dep.id

    for _ in range(n):
        served.append(await router.run("pair", attempt, RequestTrace()))
    return served


def test_router_sends_nothing_to_a_degraded_deployment_while_another_is_healthy() -> None:
    r = routes()
    router = Router(r, total_timeout_s=5, rng=random.Random(0))
    assert sorted(asyncio.run(_served(router, 4))) == ["pair/0", "pair/0", "pair/1", "pair/1"]
    r["pair"].deployments[1].degraded = True
    assert asyncio.run(_served(router, 6)) == ["pair/0"] * 6


def test_router_still_tries_a_degraded_deployment_when_the_healthy_ones_fail() -> None:
    r = routes()
    r["pair"].deployments[0].degraded = True
    router = Router(r, total_timeout_s=5, rng=random.Random(0))
    calls: list[str] = []

    async def attempt(dep: LiveDeployment, lease: Lease, deadline: float) -> str:
        calls.append(dep.id)
        if dep.id == "pair/1":
            raise UpstreamError("down", upstream_status=500)
        return dep.id

    assert asyncio.run(router.run("pair", attempt, RequestTrace())) == "pair/0"
    assert calls[0] == "pair/1" and calls[-1] == "pair/0", "healthy first, the degraded one last"


def test_an_alias_whose_deployments_are_all_degraded_keeps_serving() -> None:
    r = routes()
    for d in r["pair"].deployments:
        d.degraded = True
    router = Router(r, total_timeout_s=5, rng=random.Random(0))
    assert sorted(asyncio.run(_served(router, 2))) == ["pair/0", "pair/1"]


# --- the monitor's bookkeeping -----------------------------------------------------------


def test_monitor_does_nothing_without_a_service() -> None:
    monitor = HealthMonitor(lambda: None, Metrics())
    assert monitor.snapshot(None) == []


def test_stop_before_start_is_harmless() -> None:
    monitor = HealthMonitor(lambda: None, Metrics())
    asyncio.run(monitor.stop())


def test_started_monitor_stops_promptly() -> None:
    async def scenario() -> int:
        monitor = HealthMonitor(lambda: None, Metrics())
        monitor.start()
        await asyncio.sleep(0)
        await asyncio.wait_for(monitor.stop(), 5)
        return monitor.rounds

    assert asyncio.run(scenario()) == 0


# --- settings ------------------------------------------------------------------------------


def test_defaults_are_off_and_cheap() -> None:
    p = HealthCheckSettings()
    assert (p.enabled, p.interval_s, p.probes, p.window, p.failures, p.recover_after) == (
        False,
        60.0,
        ["basic"],
        5,
        3,
        2,
    )


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("{failures: 6, window: 5}", "health_checks: failures cannot exceed window"),
        ("{probes: [basic, smoke]}", "health_checks.probes[1]: Input should be 'basic', 'korean'"),
        ("{probes: []}", "health_checks.probes: List should have at least 1 item"),
        ("{interval_s: 0}", "health_checks.interval_s: Input should be greater than or equal to 0.05"),
        ("{base_url: 'http://evil'}", "health_checks.base_url: unknown key"),
    ],
)
def test_bad_health_settings_name_the_path(yaml_text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"health_checks: {yaml_text}\nmodels: {{}}\n", env={})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_health_settings_from_text_flags() -> None:
    loaded = parse_config("health_checks: {enabled: '${HC:-true}', probes: [basic, korean]}\n", env={})
    assert loaded.settings.health_checks.enabled is True
    assert loaded.settings.health_checks.probes == ["basic", "korean"]


# --- the metrics ---------------------------------------------------------------------------


def test_health_metrics_render_and_pass_promtool() -> None:
    m = Metrics()
    m.probe("pair/0", "basic", True, 0.2)
    m.probe("", "korean", False, 1.5)
    m.probe_usage("pair/0", {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}, 0.00042)
    m.probe_usage("pair/1", {"prompt_tokens": 5}, None)
    m.deployment_health("pair/0", 100.0, False)
    m.deployment_health("pair/1", 33.0, True)
    m.deployment_health("gone/0", 0.0, True)
    m.forget_deployment_health("gone/0")
    m.forget_deployment_health("never-seen/0")
    text = m.render()[0].decode()
    for series in (
        'gateway_probes_total{deployment="pair/0",probe="basic",result="pass"} 1.0',
        'gateway_probes_total{deployment="",probe="korean",result="fail"} 1.0',
        'gateway_probe_duration_seconds_count{deployment="pair/0",probe="basic"} 1.0',
        'gateway_probe_tokens_total{deployment="pair/0",type="output"} 3.0',
        'gateway_probe_tokens_total{deployment="pair/1",type="input"} 5.0',
        'gateway_probe_cost_usd_total{deployment="pair/0"} 0.00042',
        'gateway_deployment_health_score{deployment="pair/1"} 33.0',
        'gateway_deployment_degraded{deployment="pair/1"} 1.0',
        'gateway_deployment_degraded{deployment="pair/0"} 0.0',
    ):
        assert series in text, series
    assert 'deployment="gone/0"' not in text
    assert 'gateway_probe_cost_usd_total{deployment="pair/1"}' not in text, "an unpriced probe is not costed at $0"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-os-deps.sh installs it)")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (0, "", "")
