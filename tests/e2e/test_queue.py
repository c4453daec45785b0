"""The admission queue end to end (gateway/policies/admission.py): with the gateway's
concurrency at 4, requests past the cap wait instead of getting 429 at once; higher
priority classes go first, teams get their configured shares, nobody waits past its
limit, and a client that goes away leaves the queue."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]
CAP = 4
QUEUE = f"limits: {{max_concurrent: {CAP}}}\nqueue: {{max_wait_s: 10, poll_interval_s: 0.05}}\n"


@pytest.fixture
def capped(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway per test: the queue's estimate of a newcomer's wait comes from the pace of its
    recent admissions, which one test's slow holders would otherwise hand to the next."""
    base = f"provider: openai, base_url: '{mock.url}/v1', api_key: k"
    deployments = (
        f"  dcap: {{deployments: [{{model: dcap-model, {base}, max_concurrency: 1}}]}}\n"
        f"  dquota: {{deployments: [{{model: dquota-model, {base}, limits: {{rpm: 1}}}}]}}\n"
    )
    gw = GatewayProcess(QUEUE + e2e_config(mock.url) + deployments, Path(tmp_path_factory.mktemp("queue")))
    yield gw
    gw.stop()


def key(gw: GatewayProcess, **fields: Any) -> str:
    resp = gw.http.post("/admin/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}", **fields})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def team(gw: GatewayProcess, **fields: Any) -> str:
    name = f"team-{uuid.uuid4().hex[:8]}"
    resp = gw.http.post("/admin/teams", json={"id": name, **fields})
    assert resp.status_code == 201, resp.text
    return name


@dataclass
class Done:
    who: str
    status: int
    started: float
    ended: float
    headers: httpx.Headers


async def send(client: httpx.AsyncClient, gw: GatewayProcess, who: str, token: str, **headers: str) -> Done:
    started = time.monotonic()
    resp = await client.post(
        gw.url + "/v1/chat/completions",
        json={"model": "hold", "messages": HELLO},
        headers={"authorization": f"Bearer {token}", **headers},
    )
    return Done(who, resp.status_code, started, time.monotonic(), resp.headers)


def gateway_seconds(gw: GatewayProcess, request_id: str) -> float:
    """How long the gateway took to answer ``request_id``, from its access line."""
    found: list[float] = []

    def logged() -> bool:
        for line in gw.log_path.read_text(errors="replace").splitlines():
            if request_id in line and '"gateway.access"' in line:
                found.append(float(json.loads(line)["latency_ms"]) / 1000)
                return True
        return False

    assert wait_until(logged, timeout=10), f"no access line for {request_id}"
    return found[0]


async def holding(mock: Mock, n: int = CAP) -> None:
    """Until ``n`` requests have reached the mock's ``hold-model``: each holds one of the gateway's
    slots for the mock's latency (long enough for what the test does next)."""
    assert await asyncio.to_thread(wait_until, lambda: mock.calls("hold-model") >= n, 10), "the slots were not taken"


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_high_priority_is_served_first_and_nobody_waits_past_its_limit(capped: GatewayProcess, mock: Mock) -> None:
    hold_s, low_limit = 1.0, 7.6  # 20 highs at 4 at a time end at about 6 s: two rounds of lows, then none
    mock.behave("hold-model", latency_ms=int(hold_s * 1000))
    high, low = key(capped, priority="high"), key(capped, priority="low")

    async def run() -> list[Done]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            lows = [
                asyncio.create_task(send(client, capped, f"low{i}", low, **{"x-gateway-max-wait": str(low_limit)}))
                for i in range(20)
            ]
            # the lows take the four slots and the rest queue first (the highs come well within hold_s)
            await holding(mock)
            assert await asyncio.to_thread(
                wait_until, lambda: metric(capped, "gateway_queue_depth", priority="low") == 20 - CAP, 10
            )
            highs = [asyncio.create_task(send(client, capped, f"high{i}", high)) for i in range(20)]
            return await asyncio.gather(*lows, *highs)

    done = asyncio.run(run())
    highs = [d for d in done if d.who.startswith("high")]
    lows = [d for d in done if d.who.startswith("low")]
    assert all(d.status == 200 for d in highs), [d.status for d in highs]
    served_lows = sorted((d for d in lows if d.status == 200), key=lambda d: d.ended)
    shed_lows = [d for d in lows if d.status != 200]
    # the first four lows took the slots before anyone queued; every other low was served after every high
    queued_lows = served_lows[CAP:]
    assert queued_lows, "some queued lows are served within their limit"
    assert max(d.ended for d in highs) < min(d.ended for d in queued_lows)
    # the lows that could not be served in time were refused as a full cap is, with the queue's reason
    assert shed_lows, "20 highs of 1 s at 4 at a time leave some lows past their limit"
    for d in shed_lows:
        assert d.status == 429
        assert d.headers["x-gateway-queue"] in ("timeout", "deadline")
        assert int(d.headers["retry-after"]) >= 1
        # never past its limit, as the gateway timed it (its access line): the client's own clock also
        # counts opening 40 connections at once on a busy 2-core machine, which is no part of the wait
        assert gateway_seconds(capped, d.headers["x-request-id"]) <= low_limit + 0.5
        assert d.ended - d.started <= low_limit + 2.0  # and no unbounded wait seen from the client either
    for d in served_lows:  # a served low waited at most its limit, then took hold_s
        assert gateway_seconds(capped, d.headers["x-request-id"]) <= low_limit + hold_s + 0.5
        assert d.ended - d.started <= low_limit + hold_s + 2.0
    assert mock.calls("hold-model") == len(highs) + len(served_lows)
    shed = metric(capped, "gateway_queue_shed_total", priority="low")
    assert shed == len(shed_lows)
    assert metric(capped, "gateway_queue_depth") == 0


def test_teams_get_their_configured_shares_under_a_shared_cap(capped: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=100)
    busy, quiet = team(capped, weight=1), team(capped, weight=3)
    busy_key, quiet_key = key(capped, team=busy), key(capped, team=quiet)
    served: Counter[str] = Counter()
    window = (1.0, 4.0)  # counted after the start, before the end

    async def client_loop(client: httpx.AsyncClient, who: str, token: str, t0: float) -> None:
        while time.monotonic() - t0 < window[1] + 0.5:
            d = await send(client, capped, who, token)
            assert d.status == 200, d.status
            if window[0] <= d.ended - t0 <= window[1]:
                served[who] += 1

    async def run() -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            t0 = time.monotonic()
            loops = [client_loop(client, "busy", busy_key, t0) for _ in range(80)]  # five times the other's senders
            # enough quiet senders that one is always waiting when a slot frees, however slow the client
            loops += [client_loop(client, "quiet", quiet_key, t0) for _ in range(16)]
            await asyncio.gather(*loops)

    asyncio.run(run())
    total = served["busy"] + served["quiet"]
    assert total > 40, served
    share = served["quiet"] / total
    assert 0.75 * 0.9 <= share <= 0.75 * 1.1, (served, share)  # weight 3 against 1: 75 %, within 10 %


def test_a_client_that_leaves_the_queue_frees_its_place(capped: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=2000)
    token = key(capped)
    before = metric(capped, "gateway_queue_shed_total", reason="disconnected")

    async def run() -> tuple[list[Done], Done]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            holders = [asyncio.create_task(send(client, capped, f"h{i}", token)) for i in range(CAP)]
            await holding(mock)
            async with httpx.AsyncClient(timeout=0.3) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await send(impatient, capped, "gone", token)
            patient = await send(client, capped, "patient", token)
            return await asyncio.gather(*holders), patient

    holders, patient = asyncio.run(run())
    assert all(d.status == 200 for d in holders) and patient.status == 200
    assert wait_until(lambda: metric(capped, "gateway_queue_shed_total", reason="disconnected") == before + 1)
    assert mock.calls("hold-model") == CAP + 1  # the one that left never reached the upstream
    assert metric(capped, "gateway_queue_depth") == 0


def test_a_request_that_may_not_wait_is_refused_at_once(capped: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=2000)
    token = key(capped)

    async def run() -> tuple[list[Done], Done, httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            holders = [asyncio.create_task(send(client, capped, f"h{i}", token)) for i in range(CAP)]
            await holding(mock)
            now = await send(client, capped, "now", token, **{"x-gateway-max-wait": "0"})
            bad = await client.post(
                capped.url + "/v1/chat/completions",
                json={"model": "hold", "messages": HELLO},
                headers={"authorization": f"Bearer {token}", "x-gateway-max-wait": "soon"},
            )
            return await asyncio.gather(*holders), now, bad

    holders, now, bad = asyncio.run(run())
    assert all(d.status == 200 for d in holders)
    assert now.status == 429 and now.ended - now.started < 1.2  # at once, not after a holder's 2 s
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-gateway-max-wait" and "'soon'" in bad.json()["error"]["message"]


def test_priority_classes_are_checked_by_the_admin_api(capped: GatewayProcess) -> None:
    resp = capped.http.post("/admin/keys", json={"name": "k-bad-class", "priority": "gold"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "priority"
    assert "queue.classes" in resp.json()["error"]["message"]
    resp = capped.http.post("/admin/teams", json={"id": f"t-{uuid.uuid4().hex[:6]}", "weight": 0})
    assert resp.status_code == 400 and "weight" in resp.json()["error"]["message"]


def test_streams_wait_too_and_a_refusal_comes_in_the_clients_dialect(capped: GatewayProcess, mock: Mock) -> None:
    mock.behave("hold-model", latency_ms=2000)
    token = key(capped)

    async def run() -> tuple[list[Done], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            holders = [asyncio.create_task(send(client, capped, f"h{i}", token)) for i in range(CAP)]
            await holding(mock)
            stream = asyncio.create_task(
                client.post(
                    capped.url + "/v1/chat/completions",
                    json={"model": "hold", "messages": HELLO, "stream": True},
                    headers={"authorization": f"Bearer {token}"},
                )
            )
            await asyncio.sleep(0.05)
            messages = await client.post(
                capped.url + "/v1/messages",
                json={"model": "hold", "max_tokens": 16, "messages": HELLO},
                headers={"x-api-key": token, "anthropic-version": "2023-06-01", "x-gateway-max-wait": "0.2"},
            )
            return await asyncio.gather(*holders), await stream, messages

    holders, stream, messages = asyncio.run(run())
    assert all(d.status == 200 for d in holders)
    assert stream.status_code == 200 and "data: [DONE]" in stream.text  # it waited for a slot, then streamed
    assert messages.status_code == 429
    assert messages.json()["type"] == "error" and messages.json()["error"]["type"] == "rate_limit_error"
    assert messages.headers["x-gateway-queue"] in ("timeout", "deadline") and int(messages.headers["retry-after"]) >= 1


def test_a_request_waits_for_a_deployment_with_capacity(capped: GatewayProcess, mock: Mock) -> None:
    mock.behave("dcap-model", latency_ms=400)
    token = key(capped)

    async def one(client: httpx.AsyncClient, model: str, **headers: str) -> Done:
        started = time.monotonic()
        resp = await client.post(
            capped.url + "/v1/chat/completions",
            json={"model": model, "messages": HELLO},
            headers={"authorization": f"Bearer {token}", **headers},
        )
        return Done(model, resp.status_code, started, time.monotonic(), resp.headers)

    async def run() -> tuple[list[Done], Done, Done]:
        async with httpx.AsyncClient(timeout=30) as client:
            both = await asyncio.gather(one(client, "dcap"), one(client, "dcap"))
            used = await one(client, "dquota")  # its deployment's quota: 1 request a minute
            over = await one(client, "dquota", **{"x-gateway-max-wait": "0.5"})
            return list(both), used, over

    both, used, over = asyncio.run(run())
    # the deployment takes one at a time: the second waited for it instead of a 503
    assert [d.status for d in both] == [200, 200]
    assert max(d.ended - d.started for d in both) >= 0.7
    assert mock.calls("dcap-model") == 2
    # a provider quota that frees only after the request's limit: the queue gave up on it (when its estimate,
    # the pace of its recent admissions, said it would wait past its limit, or when the limit passed), and
    # it got the 503 it gets today, never after waiting past its limit
    assert used.status == 200
    assert over.status == 503 and int(over.headers["retry-after"]) >= 1
    assert gateway_seconds(capped, over.headers["x-request-id"]) <= 0.5 + 0.3
    assert metric(capped, "gateway_queue_shed_total", alias="dquota") == 1
    assert mock.calls("dquota-model") == 1
