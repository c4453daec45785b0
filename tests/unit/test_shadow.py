"""gateway.server.shadow and gateway.server.rule_windows in a real GatewayApp started in
process, its upstream the project's mock server on loopback: a shadow reaches its candidate
as a non-streaming request, is recorded under its own labels and charged to nobody, fails
without touching the client, is bounded and cancelled at shutdown; the windows task keeps
the time windows in force by its clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app.gateway_app import GatewayApp, create_app
from gateway.config.loader import parse_config
from gateway.mock import Behaviour, MockConfig
from gateway.mock.testing import MockServer
from gateway.observability.logs import ACCESS_LOGGER, AUDIT_LOGGER
from gateway.policies.budget import model_spend_key, period_ids, spend_key
from gateway.routing.rules import Choice
from gateway.server.rule_windows import run_windows, tick
from gateway.server.shadow import run_shadow, shadow_request

MASTER = "sk-unit-master-0001"
HELLO: Any = [{"role": "user", "content": "hi"}]
PRICE = "price: {input_per_1m: 1000.0, output_per_1m: 2000.0}"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    behaviours = {"fails": Behaviour(error_status=500), "slow": Behaviour(latency_ms=400)}
    with MockServer(MockConfig(models=behaviours)) as server:
        yield server


def config(mock_url: str, tmp: Path, extra: str = "") -> str:
    def dep(model: str, more: str = "") -> str:
        return f"{{provider: openai, model: {model}, base_url: '{mock_url}/v1', api_key: k, {PRICE}{more}}}"

    return f"""
state: {{path: '{tmp / "state.db"}'}}
auth: {{master_key: {MASTER}}}
logging: {{access_log: false}}
health_checks: {{enabled: false}}
models:
  chat: {{deployments: [{dep("primary")}]}}
  candidate: {{deployments: [{dep("cand")}]}}
  broken: {{deployments: [{dep("fails")}], fallbacks: [candidate], retry: {{max_retries: 0}}}}
  slow: {{deployments: [{dep("slow")}]}}
  limited: {{deployments: [{dep("capped", ", limits: {rpm: 1}")}]}}
{extra}"""


def restore_loggers() -> None:
    """Undo install_handlers (the app's startup does it)."""
    for name in (ACCESS_LOGGER, AUDIT_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


async def started(mock: MockServer, tmp: Path, extra: str = "") -> GatewayApp:
    app = create_app(parse_config(config(mock.url, tmp, extra), env={}))
    await app.startup()
    return app


@pytest.fixture
async def app(mock: MockServer, tmp_path: Path) -> AsyncIterator[GatewayApp]:
    gateway = await started(mock, tmp_path)
    try:
        yield gateway
    finally:
        await gateway.shutdown()
        restore_loggers()


def sample(app: GatewayApp, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def spent(app: GatewayApp, alias: str) -> list[float]:
    assert app.service is not None and app.ledger is not None
    budgets = app.service.traffic.budgets
    day, month = period_ids(budgets.clock(), budgets.tz)
    keys = [spend_key("global", "all", day), spend_key("global", "all", month), model_spend_key(alias, day)]
    totals = app.ledger.known(keys)
    return [totals.get(k, 0.0) for k in keys]


def mock_count(mock: MockServer, model: str) -> int:
    count: int = mock.get("/_mock/stats")["by_model"].get(model, 0)
    return count


async def client_chat(app: GatewayApp, alias: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post(
            "/v1/chat/completions",
            json={"model": alias, "messages": HELLO},
            headers={"authorization": f"Bearer {MASTER}"},
        )


async def test_a_shadow_is_recorded_under_its_own_labels_and_charged_to_nobody(
    app: GatewayApp, mock: MockServer
) -> None:
    assert app.service is not None
    before = mock_count(mock, "cand")
    req = {"model": "chat", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    task = app.shadows.launch(app.service, req, Choice("candidate", "try-cand", "shadow", "chat"))
    assert task is not None and await task == "ok"  # a stream would have failed: it went as a plain call
    assert req["stream"] is True and req["model"] == "chat"  # the client's request is untouched
    assert mock_count(mock, "cand") == before + 1
    labels = {"alias": "chat", "candidate": "candidate"}
    assert sample(app, "gateway_shadow_requests_total", outcome="ok", **labels) == 1
    assert sample(app, "gateway_shadow_duration_seconds_count", **labels) == 1
    assert sample(app, "gateway_shadow_tokens_total", candidate="candidate", type="input") > 0
    assert sample(app, "gateway_shadow_tokens_total", candidate="candidate", type="output") > 0
    assert sample(app, "gateway_shadow_cost_usd_total", candidate="candidate") > 0
    assert sample(app, "gateway_routing_rule_applied_total", rule="try-cand", kind="shadow") == 1
    assert spent(app, "candidate") == [0.0, 0.0, 0.0]  # no spend counter, no budget
    answer = await client_chat(app, "candidate")
    assert answer.status_code == 200
    assert spent(app, "candidate")[0] > 0  # a client's request to the same alias is charged


async def test_a_failing_shadow_is_an_error_and_the_client_is_unaffected(app: GatewayApp, mock: MockServer) -> None:
    assert app.service is not None
    fallback_before = mock_count(mock, "cand")
    task = app.shadows.launch(
        app.service, {"model": "chat", "messages": HELLO}, Choice("broken", "b", "shadow", "chat")
    )
    answer = await client_chat(app, "chat")
    assert task is not None and await task == "error"
    assert answer.status_code == 200 and answer.json()["choices"]
    assert mock_count(mock, "cand") == fallback_before  # a candidate answers for itself: no fallback
    labels = {"alias": "chat", "candidate": "broken"}
    assert sample(app, "gateway_shadow_requests_total", outcome="error", **labels) == 1
    assert sample(app, "gateway_shadow_requests_total", outcome="ok", **labels) == 0
    assert spent(app, "broken") == [spent(app, "chat")[0], spent(app, "chat")[1], 0.0]


async def test_shadows_beyond_the_bound_are_dropped_and_shutdown_cancels_the_rest(
    mock: MockServer, tmp_path: Path
) -> None:
    app = await started(mock, tmp_path, "shadow_traffic: {max_concurrent: 1}\n")
    try:
        assert app.service is not None
        choice = Choice("slow", "s", "shadow", "chat")
        first = app.shadows.launch(app.service, {"model": "chat", "messages": HELLO}, choice)
        second = app.shadows.launch(app.service, {"model": "chat", "messages": HELLO}, choice)
        assert first is not None and second is None and app.shadows.inflight == 1
        labels = {"alias": "chat", "candidate": "slow"}
        assert sample(app, "gateway_shadow_requests_total", outcome="dropped", **labels) == 1
        await asyncio.sleep(0.05)  # the first is waiting on the slow upstream
    finally:
        await app.shutdown()
        restore_loggers()
    assert first.cancelled() and app.shadows.inflight == 0
    assert sample(app, "gateway_shadow_requests_total", outcome="ok", **labels) == 0


async def test_a_request_the_gateway_cannot_translate_is_not_shadowed(app: GatewayApp) -> None:
    assert app.service is not None
    opaque = {"model": "chat", "messages": HELLO, "native_body": {"model": "chat"}}
    assert shadow_request(opaque, "candidate") is None
    assert await run_shadow(app.service, opaque, "chat", "candidate", app.metrics.shaping) == "dropped"
    assert await run_shadow(app.service, {"model": "chat"}, "chat", "gone", app.metrics.shaping) == "dropped"
    assert sample(app, "gateway_shadow_requests_total", alias="chat", candidate="gone", outcome="dropped") == 1


async def test_a_shadow_keeps_to_the_deployments_own_quota(app: GatewayApp, mock: MockServer) -> None:
    assert app.service is not None
    before = mock_count(mock, "capped")
    req = {"model": "chat", "messages": HELLO}
    assert await run_shadow(app.service, req, "chat", "limited", app.metrics.shaping) == "ok"
    assert await run_shadow(app.service, req, "chat", "limited", app.metrics.shaping) == "error"  # rpm 1: skipped
    assert mock_count(mock, "capped") == before + 1


WINDOW = """routing_rules:
  - {name: office, alias: chat, kind: time_window, timezone: Europe/Paris, days: [mon], hours: '09:00-18:00',
     deployments: {0: {priority: -3}}}
"""


async def test_the_windows_task_follows_its_clock(mock: MockServer, tmp_path: Path) -> None:
    app = await started(mock, tmp_path, WINDOW)
    now = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]  # Monday 10:00 in Paris
    wake = asyncio.Event()
    task = asyncio.create_task(run_windows(lambda: app.service, wake, clock=lambda: now[0], max_sleep_s=30))
    try:
        assert app.service is not None
        dep = app.service.routes["chat"].deployments[0]
        for _ in range(20):
            await asyncio.sleep(0)
        assert dep.spec.priority == -3
        assert tick(app.service, now[0], 30) == (["office"], 30)  # the next boundary is 8 hours away
        assert tick(app.service, datetime(2026, 1, 5, 16, 59, 50, tzinfo=UTC))[1] == pytest.approx(10.01)
        now[0] = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)  # 18:00 in Paris
        wake.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert dep.spec.priority == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.shutdown()
        restore_loggers()
    assert task.cancelled()


async def test_an_unexpected_failure_in_a_shadow_is_an_error_too(
    app: GatewayApp, caplog: pytest.LogCaptureFixture
) -> None:
    assert app.service is not None
    broken = {"model": "chat", "messages": [{"role": "user", "content": object()}]}  # cannot be serialised
    with caplog.at_level(logging.ERROR, logger="gateway.shadow"):
        assert await run_shadow(app.service, broken, "chat", "candidate", app.metrics.shaping) == "error"
    assert "failed unexpectedly" in caplog.text
    assert sample(app, "gateway_shadow_requests_total", alias="chat", candidate="candidate", outcome="error") == 1


async def test_the_windows_task_outlives_a_bad_tick_and_runs_with_the_app(
    mock: MockServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = await started(mock, tmp_path, WINDOW)
    assert "routing-rule-windows" in {t.get_name() for t in asyncio.all_tasks()}
    ticks = [0]

    def clock() -> datetime:
        ticks[0] += 1
        if ticks[0] == 1:
            raise RuntimeError("clock broke")
        return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    wake = asyncio.Event()
    nothing = asyncio.create_task(run_windows(lambda: None, asyncio.Event(), max_sleep_s=0.01))
    with caplog.at_level(logging.ERROR, logger="gateway.rules"):
        task = asyncio.create_task(run_windows(lambda: app.service, wake, clock=clock, max_sleep_s=0.01))
        try:
            assert app.service is not None
            dep = app.service.routes["chat"].deployments[0]
            for _ in range(50):
                await asyncio.sleep(0.005)
                if dep.spec.priority == -3:
                    break
            assert dep.spec.priority == -3
            assert "applying the routing time windows failed" in caplog.text
            assert not nothing.done()  # with no service yet it just waits
        finally:
            for each in (task, nothing):
                each.cancel()
            await asyncio.gather(task, nothing, return_exceptions=True)
            await app.shutdown()
            restore_loggers()
    assert "routing-rule-windows" not in {t.get_name() for t in asyncio.all_tasks()}
