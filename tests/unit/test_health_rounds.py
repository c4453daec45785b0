"""Rounds of scheduled checks in process: a real :class:`Service` (aiohttp client,
translators, embedded state) against the mock upstream on loopback, driven one
round at a time, so the state kept across config reloads, changed and removed
deployments, and switching the checks off are checked without waiting on a timer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config.loader import LoadedConfig, parse_config
from gateway.health.monitor import HealthMonitor
from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from gateway.observability.metrics import Metrics
from gateway.policies.pricing import PriceTable, UnpricedModels
from gateway.providers.registry import presets
from gateway.routing.deployment import LiveDeployment
from gateway.server.service import Service
from gateway.server.traffic import TrafficControl
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from gateway.upstream.http import AiohttpClient


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(MockConfig()) as server:
        yield server


def config(mock: MockServer, *, enabled: bool = True, bad_model: str = "r-bad", with_bad: bool = True) -> LoadedConfig:
    v1 = f"{mock.url}/v1"
    bad = f"- {{provider: openai, model: {bad_model}, base_url: '{v1}', api_key: k}}" if with_bad else ""
    return parse_config(
        f"""
health_checks: {{enabled: {str(enabled).lower()}, window: 2, failures: 1, recover_after: 1, timeout_s: 5}}
models:
  pair:
    strategy: round_robin
    deployments:
    - {{provider: openai, model: r-good, base_url: '{v1}', api_key: k, price: {{input_per_1m: 1, output_per_1m: 1}}}}
    {bad}
  vec: {{kind: embedding, deployments: [{{provider: openai, model: r-vec, base_url: '{v1}', api_key: k}}]}}
""",
        env={},
    )


@dataclass
class Rig:
    metrics: Metrics
    http: AiohttpClient
    traffic: TrafficControl
    ledger: SpendLedger

    def service(self, loaded: LoadedConfig, previous: Service | None = None) -> Service:
        return Service(loaded, self.http, presets(), previous=previous, traffic=self.traffic)


@pytest.fixture
async def rig(tmp_path: Path, mock: MockServer) -> AsyncIterator[Rig]:
    await control(mock, "POST", "/_mock/reset")
    settings = config(mock).settings
    backend = EmbeddedBackend(str(tmp_path / "state.db"), cache_max_bytes=1 << 20)
    ledger = SpendLedger(backend, flush_interval_s=60.0, refresh_interval_s=1.0)
    metrics = Metrics()
    traffic = TrafficControl(settings, backend, ledger, PriceTable.empty(), UnpricedModels(), metrics)
    http = AiohttpClient()
    yield Rig(metrics, http, traffic, ledger)
    await http.aclose()
    await backend.aclose()


async def control(mock: MockServer, method: str, path: str, body: object = None) -> Any:
    """A call to the mock's control routes (its stats, behaviours and reset)."""
    async with httpx.AsyncClient(base_url=mock.url, timeout=5, trust_env=False) as client:
        resp = await client.request(method, path, json=body)
    resp.raise_for_status()
    return resp.json()


async def fail(mock: MockServer, model: str) -> None:
    await control(mock, "PUT", f"/_mock/behaviours/{model}", {"error_status": 500})


def is_degraded(dep: LiveDeployment) -> bool:
    """(A call, so that mypy does not narrow the attribute across awaits.)"""
    return dep.degraded


def gauge(metrics: Metrics, name: str, deployment: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"deployment": deployment})


async def test_a_round_degrades_a_failing_deployment_only(rig: Rig, mock: MockServer) -> None:
    service = rig.service(config(mock))
    monitor = HealthMonitor(lambda: service, rig.metrics)
    await fail(mock, "r-bad")
    await monitor.run_round(service)
    good, bad = service.routes["pair"].deployments
    assert (good.degraded, bad.degraded) == (False, True)
    assert gauge(rig.metrics, "gateway_deployment_degraded", "pair/1") == 1.0
    assert gauge(rig.metrics, "gateway_deployment_health_score", "pair/0") == 100.0
    assert monitor.rounds == 1
    rows = {r["id"]: r for r in monitor.snapshot(service)}
    assert rows["pair/1"]["last"][0]["reason"].startswith("upstream_error")
    assert rows["vec/0"]["checks"] == 0 and rows["vec/0"]["kind"] == "embeddings"
    stats = (await control(mock, "GET", "/_mock/stats"))["by_model"]
    assert stats == {"r-good": 1, "r-bad": 1}, "one basic probe each; embeddings are not probed"


async def test_probes_are_not_in_the_spend_ledger(rig: Rig, mock: MockServer) -> None:
    service = rig.service(config(mock))
    await HealthMonitor(lambda: service, rig.metrics).run_round(service)
    probe_cost = gauge(rig.metrics, "gateway_probe_cost_usd_total", "pair/0")
    assert probe_cost is not None and probe_cost > 0, "the priced deployment's probe was costed"
    assert rig.ledger.pending() == {}, "nothing was buffered for the spend counters"


async def test_state_survives_a_reload_that_keeps_the_deployment(rig: Rig, mock: MockServer) -> None:
    first = rig.service(config(mock))
    monitor = HealthMonitor(lambda: first, rig.metrics)
    await fail(mock, "r-bad")
    await monitor.run_round(first)
    second = rig.service(config(mock), previous=first)
    bad = second.routes["pair"].deployments[1]
    assert bad is first.routes["pair"].deployments[1] and bad.degraded, "the reload kept the object and its mark"
    await monitor.run_round(second)
    assert monitor.states["pair/1"].checks == 2 and bad.degraded

    await control(mock, "DELETE", "/_mock/behaviours/r-bad")
    await monitor.run_round(second)
    assert not is_degraded(bad), "recover_after: 1 passing check"
    assert gauge(rig.metrics, "gateway_deployment_degraded", "pair/1") == 0.0


async def test_a_changed_deployment_starts_afresh(rig: Rig, mock: MockServer) -> None:
    first = rig.service(config(mock))
    monitor = HealthMonitor(lambda: first, rig.metrics)
    await fail(mock, "r-bad")
    await monitor.run_round(first)
    changed = rig.service(config(mock, bad_model="r-bad-2"), previous=first)
    assert changed.routes["pair"].deployments[1].degraded is False
    await monitor.run_round(changed)
    assert monitor.states["pair/1"].checks == 1 and not monitor.states["pair/1"].degraded


async def test_a_removed_deployment_loses_its_series(rig: Rig, mock: MockServer) -> None:
    first = rig.service(config(mock))
    monitor = HealthMonitor(lambda: first, rig.metrics)
    await monitor.run_round(first)
    assert gauge(rig.metrics, "gateway_deployment_health_score", "pair/1") == 100.0
    smaller = rig.service(config(mock, with_bad=False), previous=first)
    await monitor.run_round(smaller)
    assert "pair/1" not in monitor.states
    assert gauge(rig.metrics, "gateway_deployment_health_score", "pair/1") is None


async def test_switching_the_checks_off_clears_the_marks_and_sends_nothing(rig: Rig, mock: MockServer) -> None:
    first = rig.service(config(mock))
    monitor = HealthMonitor(lambda: first, rig.metrics)
    await fail(mock, "r-bad")
    await monitor.run_round(first)
    assert first.routes["pair"].deployments[1].degraded
    off = rig.service(config(mock, enabled=False), previous=first)
    before = (await control(mock, "GET", "/_mock/stats"))["total"]
    await monitor.run_round(off)
    assert not off.routes["pair"].deployments[1].degraded
    assert (await control(mock, "GET", "/_mock/stats"))["total"] == before
