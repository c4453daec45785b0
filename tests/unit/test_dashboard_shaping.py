"""The "Traffic shaping" row of the traffic dashboard (dashboards/traffic.json, built by
dashboards/build.py): its panels show every traffic-shaping metric, the queue wait panel carries
its objective, and the panels docs/runbook.md sends on-call staff to exist under those titles.
tests/unit/test_dashboards.py lints the same panels with the others."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC = ROOT / "dashboards" / "traffic.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
ROW = "Traffic shaping"
SHAPING_SERIES = {
    "gateway_queue_depth",
    "gateway_queue_wait_seconds_bucket",
    "gateway_queue_shed_total",
    "gateway_deployment_paced",
    "gateway_upstream_paced_total",
    "gateway_routing_rule_applied_total",
    "gateway_shadow_requests_total",
    "gateway_shadow_cost_usd_total",
}
RUNBOOK_SECTIONS = ("GatewayQueueBacklog", "GatewayQueueShedding", "A deployment is paced by its upstream")


def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TRAFFIC.read_text(encoding="utf-8"))
    return loaded


def shaping_panels() -> list[dict[str, Any]]:
    """The panels after the row header, up to the next row."""
    panels = board()["panels"]
    [start] = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == ROW]
    found = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        found.append(panel)
    return found


def test_the_row_spans_the_width_above_its_panels() -> None:
    panels = board()["panels"]
    [row] = [p for p in panels if p["type"] == "row"]
    assert row["title"] == ROW and row["collapsed"] is False and row["panels"] == []
    assert row["gridPos"] == {"h": 1, "w": 24, "x": 0, "y": row["gridPos"]["y"]}
    above = panels[: panels.index(row)]
    assert max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in above) == row["gridPos"]["y"]
    assert min(p["gridPos"]["y"] for p in shaping_panels()) == row["gridPos"]["y"] + 1


def test_the_row_shows_every_shaping_metric() -> None:
    exprs = " ".join(t["expr"] for p in shaping_panels() for t in p["targets"])
    used = set(re.findall(r"\b(gateway_[a-z_]+)\b", exprs))
    assert used >= SHAPING_SERIES, f"not shown: {sorted(SHAPING_SERIES - used)}"
    assert used <= SHAPING_SERIES, f"the row shows other metrics: {sorted(used - SHAPING_SERIES)}"


def test_the_queue_wait_panel_draws_its_objective() -> None:
    [wait] = [p for p in shaping_panels() if p["title"] == "Queue wait p50 / p95 by priority"]
    assert [t["legendFormat"] for t in wait["targets"]] == ["p50 {{priority}}", "p95 {{priority}}"]
    assert [t["expr"].split(",")[0] for t in wait["targets"]] == ["histogram_quantile(0.5", "histogram_quantile(0.95"]
    defaults = wait["fieldConfig"]["defaults"]
    assert defaults["unit"] == "s"
    assert {"color": "red", "value": 1.0} in defaults["thresholds"]["steps"]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}
    assert "queue wait p95 <= 1 s" in wait["description"]


def test_the_backlog_line_is_the_alerts_threshold() -> None:
    [depth] = [p for p in shaping_panels() if p["title"] == "Queue depth by alias and priority"]
    defaults = depth["fieldConfig"]["defaults"]
    assert {"color": "red", "value": 100} in defaults["thresholds"]["steps"]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}
    alerts = (ROOT / "alerts" / "rules" / "gateway.alerts.yml").read_text(encoding="utf-8")
    assert "expr: sum by (job) (gateway_queue_depth) > 100" in alerts


def section(heading: str) -> str:
    text = RUNBOOK.read_text(encoding="utf-8")
    match = re.search(rf"^###+ {re.escape(heading)}.*?$(.*?)(?=^##)", text, flags=re.M | re.S)
    assert match, f"docs/runbook.md has no section {heading!r}"
    return match.group(1)


def test_the_runbook_names_panels_that_exist() -> None:
    titles = {p["title"] for p in shaping_panels()}
    for heading in RUNBOOK_SECTIONS:
        prose = re.sub(r"`[^`]*`", "", section(heading))  # quotes inside code are not panel names
        quoted = {" ".join(q.split()) for q in re.findall(r'"([^"]+)"', prose)}
        panels = {q for q in quoted - {ROW} if q[0].isupper()}  # not the manual's "queue > 100 ..."
        assert panels, f"{heading}: names no panel"
        assert panels <= titles, f"{heading} names panels the dashboard lacks: {sorted(panels - titles)}"
