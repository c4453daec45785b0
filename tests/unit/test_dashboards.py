"""The Grafana dashboards (dashboards/*.json) and their provisioning files.

Each dashboard follows the Grafana conventions (fixed uid, ``id: null``, a
``datasource`` variable, a title, description, unit and ``${datasource}`` on
every panel), and each query follows the Prometheus ones (``$__rate_interval``
in ``rate()``, counters only inside ``rate()``/``increase()``, quantiles over
``sum by (le, ...)``) and names only metrics of the catalog
(gateway/observability/metrics.py, docs/metrics.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.observability.jobs_metrics import JobFacts
from gateway.observability.metrics import Metrics
from gateway.observability.state_probe import StateFacts
from gateway.state.postgres_client import PoolFacts
from gateway.state.retention import TierFacts

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "dashboards"
BUILD = DIR / "build.py"
DATASOURCES = DIR / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DIR / "provisioning" / "dashboards" / "gateway.yml"
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"
NAMES = ("overview.json", "models.json", "cost.json", "traffic.json", "runtime.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE_INTERVAL = "$__rate_interval"
# increase() may also use these: totals over the dashboard's range, the 30-day SLO window.
INCREASE_WINDOWS = frozenset({RATE_INTERVAL, "$__range", "30d", "7d"})
UID = re.compile(r"^[A-Za-z0-9_-]{8,40}$")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
LABEL_VALUES = re.compile(r"label_values\(([a-zA-Z_:][\w:]*), (\w+)\)")

JSON = dict[str, Any]

# --- PromQL helpers ---------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
MATCHERS = re.compile(r"\{[^}]*\}")
RANGES = re.compile(r"\[[^\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
DURATION = re.compile(r"(?<![\w:])(?:\d+(?:ms|[smhdwy]))+(?![\w:])")
NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w:])", re.I)
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
)
RATE_CALL = re.compile(r"\b(rate|irate|increase)\(")
RATE_OVER_SELECTOR = re.compile(r"\b(rate|irate|increase)\(\s*([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*\[([^\]]*)\]")
QUANTILE = re.compile(r"\bhistogram_quantile\(")
QUANTILE_OVER_BUCKETS = re.compile(
    r"\bhistogram_quantile\(\s*0?\.\d+\s*,\s*sum by \(le(?:\s*,\s*\w+)*\)\s*"
    r"\(rate\(\s*[a-zA-Z_:][\w:]*_bucket\s*(?:\{[^}]*\})?\s*\[\$__rate_interval\]\)\)\)"
)


def metric_names(expr: str) -> list[str]:
    """The metric names an expression selects, in order (with repeats)."""
    text = STRING.sub('""', expr)
    text = MATCHERS.sub(" ", text)
    text = RANGES.sub(" ", text)
    text = GROUPING.sub(" ", text)
    text = VARIABLE.sub(" ", text)
    text = DURATION.sub(" ", text)
    text = NUMBER.sub(" ", text)
    names = []
    for m in IDENT.finditer(text):
        rest = text[m.end() :].lstrip()
        if m.group() in KEYWORDS or rest.startswith("("):
            continue  # an operator keyword or a function call
        names.append(m.group())
    return names


def test_metric_names_parser() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{route=~"$route", a="b c"}[$__rate_interval]))) '
        "/ on (job, instance) group_left (version) y_info and z offset 5m > bool 1e3"
    )
    assert metric_names(expr) == ["x_bucket", "y_info", "z"]
    assert metric_names('predict_linear((sum(rate(c_total{t=~"$t"}[5m])) * 86400)[6h:5m], 86400)') == ["c_total"]
    assert metric_names("time() - process_start_time_seconds") == ["process_start_time_seconds"]


# --- Catalog ------------------------------------------------------------------------


@cache
def catalog() -> dict[str, str]:
    """Every series name Prometheus scrapes from the gateway -> ``counter``,
    ``gauge`` or ``histogram`` (its ``_bucket``, ``_sum`` and ``_count``)."""
    metrics = Metrics()
    metrics.sources.state_pool.read = lambda: PoolFacts(
        True, 0, 1, 20, 0, 0, replica_up=True, replica_lag_s=0.0
    )  # postgres too
    metrics.sources.detail_tier.read = lambda: TierFacts(0, 0, 0, 0, 0, 0, 0, 0, 0.0)
    metrics.sources.jobs.read = lambda: [JobFacts("backup", 86400.0, 0.0, 0.0, 1.7e9, 0.0, False, 0, 0)]
    metrics.sources.state.read = lambda: StateFacts("postgres", True, 1.7e9)
    body, _ = metrics.render()
    series: dict[str, str] = {}
    for family, kind in TYPE_LINE.findall(body.decode()):
        if kind == "counter":
            series[family if family.endswith("_total") else f"{family}_total"] = "counter"
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                series[family + suffix] = "histogram"
        else:
            series[family] = kind
    return series


def test_catalog_is_read() -> None:
    names = catalog()
    assert names["gateway_requests_total"] == "counter"
    assert names["gen_ai_server_request_duration_seconds_bucket"] == "histogram"
    assert names["gateway_breaker_state"] == "gauge"
    assert names["process_cpu_seconds_total"] == "counter"


# --- Dashboards ---------------------------------------------------------------------


def load(name: str) -> JSON:
    board: JSON = json.loads((DIR / name).read_text(encoding="utf-8"))
    return board


def panels(board: JSON) -> Iterator[JSON]:
    """Every panel, those nested in collapsed rows included (rows themselves excluded)."""
    for panel in board["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def exprs(board: JSON) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of a dashboard."""
    for panel in panels(board):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def variables(board: JSON) -> dict[str, JSON]:
    return {v["name"]: v for v in board["templating"]["list"]}


def test_the_dashboards_are_all_there() -> None:
    assert sorted(p.name for p in DIR.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_conventions(name: str) -> None:
    board = load(name)
    assert board["id"] is None
    assert UID.match(board["uid"]), board["uid"]
    assert board["title"]
    assert board["description"]
    assert "llm-gateway" in board["tags"]
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    ds = variables(board)["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"


def test_uids_and_titles_are_unique() -> None:
    boards = [load(n) for n in NAMES]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_title_description_unit_and_datasource(name: str) -> None:
    board = load(name)
    found = list(panels(board))
    assert found
    for panel in found:
        title = panel.get("title")
        assert title, f"{name}: a panel has no title"
        assert panel.get("description"), f"{name}: {title!r} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {title!r} has no unit"
        assert panel["datasource"] == DS, f"{name}: {title!r} does not use ${{datasource}}"
        assert panel["targets"], f"{name}: {title!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{name}: {title!r} repeats a refId"
        for target in panel["targets"]:
            assert target["datasource"] == DS, f"{name}: {title!r} query does not use ${{datasource}}"
            assert target["expr"].strip(), f"{name}: {title!r} has an empty query"


@pytest.mark.parametrize("name", NAMES)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load(name)["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{name}: {panel['title']!r} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("name", NAMES)
def test_rates_use_the_rate_interval(name: str) -> None:
    for title, expr in exprs(load(name)):
        calls = RATE_CALL.findall(expr)
        over_selectors = RATE_OVER_SELECTOR.findall(expr)
        # Every rate()/increase() is taken directly over a range selector.
        assert len(calls) == len(over_selectors), f"{name}: {title!r}: {expr}"
        for func, _metric, window in over_selectors:
            assert func != "irate", f"{name}: {title!r} uses irate: {expr}"
            allowed = {RATE_INTERVAL} if func == "rate" else INCREASE_WINDOWS
            assert window in allowed, f"{name}: {title!r}: {func}(...[{window}]): {expr}"


@pytest.mark.parametrize("name", NAMES)
def test_quantiles_are_taken_over_summed_bucket_rates(name: str) -> None:
    for title, expr in exprs(load(name)):
        quantiles = len(QUANTILE.findall(expr))
        assert len(QUANTILE_OVER_BUCKETS.findall(expr)) == quantiles, f"{name}: {title!r}: {expr}"
        buckets = [m for m in metric_names(expr) if m.endswith("_bucket")]
        assert len(buckets) == quantiles, f"{name}: {title!r}: buckets outside histogram_quantile: {expr}"


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_is_in_the_catalog(name: str) -> None:
    known = catalog()
    board = load(name)
    for title, expr in exprs(board):
        names = metric_names(expr)
        assert names, f"{name}: {title!r} selects no metric: {expr}"
        for metric in names:
            assert metric in known, f"{name}: {title!r}: {metric} is not in the metrics catalog"
    for var in variables(board).values():
        if var["type"] == "query":
            match = LABEL_VALUES.fullmatch(var["query"]["query"])
            assert match, f"{name}: variable {var['name']} is not label_values(metric, label)"
            assert match.group(1) in known, f"{name}: variable {var['name']}: {match.group(1)} is not in the catalog"


@pytest.mark.parametrize("name", NAMES)
def test_no_counter_is_used_raw(name: str) -> None:
    known = catalog()
    for title, expr in exprs(load(name)):
        wrapped: dict[str, int] = {}
        for _func, metric, _window in RATE_OVER_SELECTOR.findall(expr):
            wrapped[metric] = wrapped.get(metric, 0) + 1
        for metric in set(metric_names(expr)):
            if known.get(metric) in ("counter", "histogram"):
                used = metric_names(expr).count(metric)
                assert wrapped.get(metric, 0) == used, f"{name}: {title!r}: {metric} outside rate/increase: {expr}"


@pytest.mark.parametrize("name", NAMES)
def test_variables_are_defined_and_query_the_datasource(name: str) -> None:
    board = load(name)
    defined = variables(board)
    for var in defined.values():
        if var["type"] == "query":
            assert var["datasource"] == DS
            assert var["includeAll"]
            assert var["allValue"] == ".*"
    for title, expr in exprs(board):
        for used in re.findall(r"\$(\w+)", expr):
            assert used.startswith("__") or used in defined, f"{name}: {title!r} uses undefined ${used}"


REQUIRED = {
    "overview.json": {
        "gateway_requests_total",
        "gen_ai_server_request_duration_seconds_bucket",
        "gateway_inflight_requests",
    },
    "models.json": {
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gateway_upstream_attempts_total",
        "gateway_breaker_state",
        "gateway_fallbacks_total",
        "gateway_retries_total",
        "gateway_deployment_health_score",
        "gateway_deployment_degraded",
        "gateway_probes_total",
        "gateway_probe_cost_usd_total",
        "gateway_feedback_score_count",
    },
    "cost.json": {
        "gateway_tokens_total",
        "gateway_cost_usd_total",
        "gateway_budget_spent_usd",
        "gateway_budget_limit_usd",
        "gateway_unpriced_requests_total",
    },
    "traffic.json": {
        "gateway_ratelimit_rejections_total",
        "gateway_cache_requests_total",
        "gateway_degraded_decisions_total",
        "gateway_state_backend_errors_total",
    },
    "runtime.json": {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "python_gc_collections_total",
        "gateway_added_latency_seconds_bucket",
        "gateway_build_info",
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_covers_its_metrics(name: str) -> None:
    used = {m for _, expr in exprs(load(name)) for m in metric_names(expr)}
    assert REQUIRED[name] <= used, f"{name} misses {sorted(REQUIRED[name] - used)}"


def test_overview_shows_the_slo() -> None:
    board = load("overview.json")
    by_title = {p["title"]: p for p in panels(board)}
    latency = by_title["Request latency p50 / p95 / p99"]
    steps = {s["value"] for s in latency["fieldConfig"]["defaults"]["thresholds"]["steps"]}
    assert {1.0, 2.0, 5.0} <= steps
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]
    availability = by_title["Availability (30 d)"]
    assert "[30d]" in availability["targets"][0]["expr"]
    assert 0.999 in {s["value"] for s in availability["fieldConfig"]["defaults"]["thresholds"]["steps"]}
    assert "/ 0.001" in by_title["Error budget left (30 d)"]["targets"][0]["expr"]


def test_cost_forecasts_daily_spend() -> None:
    assert any("predict_linear(" in expr for _, expr in exprs(load("cost.json")))


def test_descriptions_say_what_is_missing() -> None:
    assert "health score" in load("models.json")["description"].lower()
    assert "event-loop lag" in load("runtime.json")["description"].lower()


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-os-deps.sh installs it)")
    rules = []
    for name in NAMES:
        for i, (_, expr) in enumerate(exprs(load(name))):
            text = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
            text = re.sub(r"\$\w+", ".*", text)
            rules.append({"record": f"dashboard:{Path(name).stem}:{i}", "expr": text})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Generated output -----------------------------------------------------------------


def test_build_reproduces_the_committed_json(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(BUILD), "--out", str(tmp_path)], check=True, timeout=60)
    built = sorted(p.name for p in tmp_path.glob("*.json"))
    assert built == sorted(NAMES)
    for name in built:
        assert (tmp_path / name).read_text(encoding="utf-8") == (DIR / name).read_text(encoding="utf-8"), (
            f"dashboards/{name} is not what dashboards/build.py writes: run `python dashboards/build.py`"
        )


# --- Provisioning ---------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load(DATASOURCES.read_text())
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert UID.match(ds["uid"])
    # The dashboards' datasource variable defaults to the provisioned data source.
    for name in NAMES:
        assert variables(load(name))["datasource"]["current"]["value"] == ds["uid"], name


def test_dashboard_provisioning() -> None:
    doc = yaml.safe_load(PROVIDERS.read_text())
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS
    # The dashboards folder is what is mounted at that path (dashboards/README.md).
    assert f"`dashboards` at `{GRAFANA_DASHBOARDS}`" in (DIR / "README.md").read_text()
