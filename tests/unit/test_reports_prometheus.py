"""The Prometheus side of the reports: the PromQL built for a period, the
answers read, and the KPIs a real Prometheus computes from known series
(backfilled with ``promtool tsdb create-blocks-from openmetrics``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.config.loader import parse_config
from gateway.reports.builder import ReportSources, make_report
from gateway.reports.kpis import Targets
from gateway.reports.prometheus import PrometheusError, PrometheusSource, queries, range_of, scalar_of
from gateway.reports.store import StatsStore
from gateway.state.embedded import EmbeddedBackend
from tests.e2e.harness import wait_until
from tests.ports import free_port


def test_promql_for_a_day() -> None:
    q = queries(86400)
    assert q.requests == "sum(increase(gateway_requests_total[86400s]))"
    assert q.server_errors == 'sum(increase(gateway_requests_total{status_class="5xx"}[86400s]))'
    assert q.client_errors == 'sum(increase(gateway_requests_total{status_class="4xx"}[86400s]))'
    assert q.cost_usd == "sum(increase(gateway_cost_usd_total[86400s]))"
    assert q.p95 == (
        "histogram_quantile(0.95, sum by (le) (increase(gen_ai_server_request_duration_seconds_bucket[86400s])))"
    )


def test_promql_with_a_selector() -> None:
    q = queries(3600.4, 'job="gateway"')
    assert q.requests == 'sum(increase(gateway_requests_total{job="gateway"}[3600s]))'
    assert q.server_errors == 'sum(increase(gateway_requests_total{status_class="5xx",job="gateway"}[3600s]))'
    assert 'gen_ai_server_request_duration_seconds_bucket{job="gateway"}[3600s]' in q.p50
    assert range_of(0.2) == "1s"


def test_answers_are_read_or_refused_clearly() -> None:
    ok = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"12.5"]}]}}'
    assert scalar_of(ok) == 12.5
    assert scalar_of(b'{"status":"success","data":{"resultType":"vector","result":[]}}') is None
    nan = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}'
    assert scalar_of(nan) is None
    with pytest.raises(PrometheusError, match="not JSON"):
        scalar_of(b"<html>")
    with pytest.raises(PrometheusError, match="refused the query: parse error"):
        scalar_of(b'{"status":"error","errorType":"bad_data","error":"parse error"}')
    with pytest.raises(PrometheusError, match="without a value"):
        scalar_of(b'{"status":"success","data":{"result":[{"metric":{}}]}}')


async def test_an_unreachable_prometheus_is_a_note_not_a_failure(tmp_path: Path) -> None:
    settings = parse_config(f"reports: {{prometheus_url: 'http://127.0.0.1:{free_port()}', prometheus_timeout_s: 2}}")
    backend = EmbeddedBackend(str(tmp_path / "s.db"))

    async def no_teams() -> list[dict[str, object]]:
        return []

    sources = ReportSources(StatsStore(backend, tz=ZoneInfo("UTC")), backend.read_spend, no_teams, list)
    report = await make_report(
        "daily", date(2026, 11, 26), settings.settings, sources, now=datetime(2026, 11, 26, 12, tzinfo=UTC)
    )
    await backend.aclose()
    assert report.prometheus is None
    assert any(n.startswith("Prometheus was not used: cannot reach Prometheus") for n in report.notes)


# --- a real Prometheus -----------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
MINUTES = 120


@dataclass
class Loaded:
    url: str
    start: float
    end: float


def openmetrics(start: int) -> str:
    """Two hours, one sample a minute: 10 requests a minute (8 answered, 1
    client error, 1 server error), durations 5 <= 0.5 s, 3 <= 1 s, 2 <= 2 s."""
    lines = ["# TYPE gateway_requests counter"]
    for status, per_minute in (("2xx", 8), ("4xx", 1), ("5xx", 1)):
        lines += [
            f'gateway_requests_total{{status_class="{status}"}} {i * per_minute} {start + 60 * i}'
            for i in range(MINUTES + 1)
        ]
    lines.append("# TYPE gen_ai_server_request_duration_seconds histogram")
    for le, per_minute in (("0.5", 5), ("1.0", 8), ("2.0", 10), ("+Inf", 10)):
        lines += [
            f'gen_ai_server_request_duration_seconds_bucket{{le="{le}"}} {i * per_minute} {start + 60 * i}'
            for i in range(MINUTES + 1)
        ]
    lines += [f"gen_ai_server_request_duration_seconds_count {i * 10} {start + 60 * i}" for i in range(MINUTES + 1)]
    lines += [f"gen_ai_server_request_duration_seconds_sum {i * 8.0} {start + 60 * i}" for i in range(MINUTES + 1)]
    lines.append("# TYPE gateway_cost_usd counter")
    lines += [f"gateway_cost_usd_total {i * 0.5} {start + 60 * i}" for i in range(MINUTES + 1)]
    # Cost reconciliation: the router's upstream reports 10 % more than the gateway counts; Novita agrees.
    for name, router, novita in (
        ("gateway_cost_reported_usd", 0.011, 0.002),
        ("gateway_cost_compared_usd", 0.01, 0.002),
    ):
        lines.append(f"# TYPE {name} counter")
        for labels, usd_per_minute in (
            ('alias="router",provider="openai_compatible"', router),
            ('alias="llama",provider="novita"', novita),
        ):
            lines += [f"{name}_total{{{labels}}} {i * usd_per_minute:.6f} {start + 60 * i}" for i in range(MINUTES + 1)]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus and promtool are not installed (scripts/install-os-deps.sh)")
    work = tmp_path_factory.mktemp("prometheus")
    start = int(time.time()) - 3 * 3600
    (work / "in.om").write_text(openmetrics(start))
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(work / "in.om"), str(work / "data")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (work / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            "--storage.tsdb.retention.time=30d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_until(ready, timeout=30, interval=0.1), (work / "prometheus.log").read_text()
        yield Loaded(url, float(start), float(start + 60 * MINUTES))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def test_kpis_from_a_real_prometheus(prometheus: Loaded) -> None:
    source = PrometheusSource(prometheus.url, timeout_s=10)
    kpis = {
        k.name: k
        for k in await source.kpis(
            datetime.fromtimestamp(prometheus.start, UTC), datetime.fromtimestamp(prometheus.end, UTC), Targets()
        )
    }
    # 1200 requests, 120 client errors, 120 server errors
    assert kpis["error_rate"].value == pytest.approx(120 / 1200)
    assert kpis["availability"].value == pytest.approx(1 - 120 / 1080)
    assert kpis["availability"].met is False and kpis["error_rate"].met is False
    # histogram_quantile interpolates within Prometheus's buckets
    assert kpis["p50_ms"].value == pytest.approx(500.0)
    assert kpis["p95_ms"].value == pytest.approx(1750.0)
    assert kpis["p99_ms"].value == pytest.approx(1950.0)
    assert kpis["p95_ms"].met is True


async def test_a_period_without_data_has_no_values(prometheus: Loaded) -> None:
    source = PrometheusSource(prometheus.url)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    kpis = await source.kpis(long_ago, datetime(2020, 1, 2, tzinfo=UTC), Targets())
    assert all(k.value is None and k.met is None for k in kpis)


async def test_cost_reconciliation_from_a_real_prometheus(prometheus: Loaded) -> None:
    source = PrometheusSource(prometheus.url, timeout_s=10)
    start, end = datetime.fromtimestamp(prometheus.start, UTC), datetime.fromtimestamp(prometheus.end, UTC)
    router, llama = await source.reconciliation(start, end, 0.05)
    # 120 minutes: the router's upstream reported 1.32 USD for requests the gateway priced at 1.20
    assert (router.provider, router.alias, router.flagged) == ("openai_compatible", "router", True)
    assert router.reported_usd == pytest.approx(1.32)
    assert router.gateway_usd == pytest.approx(1.2)
    assert router.drift == pytest.approx(0.1)
    assert (llama.provider, llama.alias, llama.flagged) == ("novita", "llama", False)
    assert llama.drift == pytest.approx(0)
    assert [r.flagged for r in await source.reconciliation(start, end, 0.2)] == [False, False]
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    assert await source.reconciliation(long_ago, datetime(2020, 1, 2, tzinfo=UTC), 0.05) == []
