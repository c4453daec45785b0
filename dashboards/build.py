"""Builds the gateway's Grafana dashboards (dashboards/*.json).

The JSON files are generated from this script and committed; edit this script,
then run ``python dashboards/build.py`` (``--out DIR`` writes elsewhere).
``tests/unit/test_dashboards.py`` checks that the committed files are exactly
what this script produces, and lints every panel against the metrics catalog
(docs/metrics.md, gateway/observability/metrics.py).

Conventions: every panel has a title, a description, a unit and the
``${datasource}`` data source; rates use ``$__rate_interval``; quantiles are
``histogram_quantile`` over ``sum by (le, ...) (rate(..._bucket[...]))``.
Fixed windows appear only where they are the point: the 30-day SLO window, and
``$__range`` for totals over the dashboard's time range.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
TAGS = ["llm-gateway"]
# The uid of the data source in provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "llm-gateway-prometheus"
DS: JSON = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

# SLO: 99.9 % of client requests answered without a 5xx, over 30 days.
SLO_TARGET = 0.999
SLO_WINDOW = "30d"
# Latency objectives of the server request duration, by quantile.
LATENCY_SLO = {"p50": 1.0, "p95": 2.0, "p99": 5.0}


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[Target]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float | None, str]] | None = None
    mappings: list[JSON] = field(default_factory=list)
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    stack: bool = False
    bars: bool = False
    threshold_lines: bool = False


@dataclass
class Row:
    """A row header across the dashboard (open): the panels after it, up to the next row, are its."""

    title: str


def _target(t: Target, ref: str) -> JSON:
    out: JSON = {"refId": ref, "datasource": DS, "expr": t.expr, "legendFormat": t.legend or "__auto"}
    if t.instant:
        out["instant"] = True
        out["range"] = False
    else:
        out["range"] = True
    if t.table:
        out["format"] = "table"
    return out


def _panel(p: Panel, pid: int, x: int, y: int) -> JSON:
    grid = {"h": p.height, "w": p.width, "x": x, "y": y}
    steps: list[JSON] = [{"color": color, "value": value} for value, color in (p.thresholds or [(None, "green")])]
    defaults: JSON = {"unit": p.unit, "thresholds": {"mode": "absolute", "steps": steps}, "mappings": p.mappings}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    options: JSON
    if p.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "bars" if p.bars else "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if p.threshold_lines else "off"},
        }
        options = {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif p.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    elif p.kind == "bargauge":
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    elif p.kind == "state-timeline":
        defaults["color"] = {"mode": "thresholds"}
        options = {"mergeValues": True, "showValue": "auto", "rowHeight": 0.9, "legend": {"showLegend": True}}
    elif p.kind == "table":
        options = {"showHeader": True, "cellHeight": "sm"}
    else:
        raise ValueError(f"unknown panel kind {p.kind!r}")
    out: JSON = {
        "type": p.kind,
        "id": pid,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [_target(t, chr(ord("A") + i)) for i, t in enumerate(p.targets)],
    }
    if p.kind == "table":
        out["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {"Value": "value"}}}
        ]
    return out


def _row(r: Row, pid: int, y: int) -> JSON:
    grid = {"h": 1, "w": 24, "x": 0, "y": y}
    return {"type": "row", "id": pid, "title": r.title, "collapsed": False, "gridPos": grid, "panels": []}


def _layout(panels: Sequence[Panel | Row]) -> list[JSON]:
    """Places panels left to right, wrapping at Grafana's 24 columns; a row starts a new line."""
    out: list[JSON] = []
    x = y = line_height = 0
    for pid, p in enumerate(panels, start=1):
        if isinstance(p, Row):
            y += line_height
            out.append(_row(p, pid, y))
            y += 1
            x = line_height = 0
            continue
        if x + p.width > 24:
            y += line_height
            x = line_height = 0
        out.append(_panel(p, pid, x, y))
        x += p.width
        line_height = max(line_height, p.height)
    return out


def datasource_variable() -> JSON:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "Prometheus", "value": DATASOURCE_UID},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }


def query_variable(name: str, label: str, metric: str, label_name: str) -> JSON:
    query = f"label_values({metric}, {label_name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
    }


def dashboard(uid: str, title: str, description: str, variables: list[JSON], panels: Sequence[Panel | Row]) -> JSON:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "LLM gateway",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": _layout(panels),
    }


def quantile(q: float, metric: str, by: str, selector: str) -> str:
    labels = ", ".join(["le", *[b.strip() for b in by.split(",") if b.strip()]])
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{matchers}[{RI}])))"


# --- Overview -----------------------------------------------------------------

REQ = 'gateway_requests_total{alias=~"$alias"}'
REQ_5XX = 'gateway_requests_total{alias=~"$alias", status_class="5xx"}'
SLI_BAD = f'sum(increase(gateway_requests_total{{status_class="5xx"}}[{SLO_WINDOW}]))'
SLI_ALL = f"sum(increase(gateway_requests_total[{SLO_WINDOW}]))"
SRV = 'gen_ai_server_request_duration_seconds{gen_ai_request_model=~"$alias"}'


def _route_share(status_class: str) -> str:
    """The share of each route's requests answered with ``status_class``, 0 where none were."""
    by_route = f"sum by (route) (rate({REQ}[{RI}]))"
    selected = f'gateway_requests_total{{alias=~"$alias", status_class="{status_class}"}}'
    return f"(sum by (route) (rate({selected}[{RI}])) or 0 * {by_route}) / {by_route}"


def overview() -> JSON:
    server_sel = 'gen_ai_request_model=~"$alias"'
    error_budget = 1 - SLO_TARGET
    panels = [
        Panel(
            "Availability (30 d)",
            f"Share of client requests answered without a 5xx over the last 30 days, all aliases "
            f"(the SLI of the {SLO_TARGET:.1%} availability SLO). Red below the objective.",
            "percentunit",
            [Target(f"1 - ({SLI_BAD} / {SLI_ALL})", "availability", instant=True)],
            kind="stat",
            width=6,
            height=5,
            decimals=3,
            thresholds=[(None, "red"), (SLO_TARGET, "green")],
        ),
        Panel(
            "Error budget left (30 d)",
            f"Share of the 30-day error budget ({error_budget:.1%} of requests may fail with a 5xx) not yet "
            f"spent: 1 - (5xx share over 30 d) / {error_budget:g}. Negative once the SLO is missed.",
            "percentunit",
            [Target(f"1 - ({SLI_BAD} / {SLI_ALL}) / {error_budget:g}", "budget left", instant=True)],
            kind="stat",
            width=6,
            height=5,
            decimals=1,
            thresholds=[(None, "red"), (0.0, "orange"), (0.25, "yellow"), (0.5, "green")],
        ),
        Panel(
            "Requests/s",
            "Client requests answered per second (every client API: chat completions, embeddings, Anthropic "
            "Messages, OpenAI Responses, Gemini), selected aliases.",
            "reqps",
            [Target(f"sum(rate({REQ}[{RI}]))", "requests/s", instant=True)],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "In-flight requests",
            "Client requests being handled now, summed over the gateway processes scraped.",
            "short",
            [Target("sum(gateway_inflight_requests)", "in flight", instant=True)],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Traffic by route and status class",
            "Client requests per second by route (one per client API route: chat, embeddings, messages, "
            "responses, gemini_generate, ...) and the status class the client got (a client that "
            "disconnected counts as 4xx).",
            "reqps",
            [Target(f"sum by (route, status_class) (rate({REQ}[{RI}]))", "{{route}} {{status_class}}")],
            stack=True,
        ),
        Panel(
            "Error rate (5xx share)",
            f"Share of client requests answered with a 5xx (the SLO's bad events), with the 4xx share for "
            f"context. The line marks the SLO's allowed error rate ({error_budget:.1%}).",
            "percentunit",
            [
                Target(f"sum(rate({REQ_5XX}[{RI}])) / sum(rate({REQ}[{RI}]))", "5xx share"),
                Target(
                    f'sum(rate(gateway_requests_total{{alias=~"$alias", status_class="4xx"}}[{RI}])) '
                    f"/ sum(rate({REQ}[{RI}]))",
                    "4xx share",
                ),
            ],
            thresholds=[(None, "green"), (error_budget, "red")],
            threshold_lines=True,
            min=0,
        ),
        Panel(
            "Request latency p50 / p95 / p99",
            "Time from request received to response complete as the client sees it "
            "(gen_ai_server_request_duration_seconds; streams: to the last chunk). Threshold lines at the "
            "latency objectives: p50 under 1 s, p95 under 2 s, p99 under 5 s.",
            "s",
            [
                Target(quantile(0.5, "gen_ai_server_request_duration_seconds", "", server_sel), "p50"),
                Target(quantile(0.95, "gen_ai_server_request_duration_seconds", "", server_sel), "p95"),
                Target(quantile(0.99, "gen_ai_server_request_duration_seconds", "", server_sel), "p99"),
            ],
            thresholds=[
                (None, "green"),
                (LATENCY_SLO["p50"], "yellow"),
                (LATENCY_SLO["p95"], "orange"),
                (LATENCY_SLO["p99"], "red"),
            ],
            threshold_lines=True,
            min=0,
        ),
        Panel(
            "Request latency p95 by alias",
            "95th percentile of the client-side request duration by alias (gen_ai_request_model on the "
            "server metrics is the alias). Threshold line at the p95 objective (2 s).",
            "s",
            [
                Target(
                    quantile(0.95, "gen_ai_server_request_duration_seconds", "gen_ai_request_model", server_sel),
                    "{{gen_ai_request_model}}",
                )
            ],
            thresholds=[(None, "green"), (LATENCY_SLO["p95"], "red")],
            threshold_lines=True,
            min=0,
        ),
        Panel(
            "Traffic by alias",
            "Client requests per second by alias (`unknown`: not a configured alias, or failed before the "
            "model was read).",
            "reqps",
            [Target(f"sum by (alias) (rate({REQ}[{RI}]))", "{{alias}}")],
            stack=True,
        ),
        Panel(
            "In-flight requests by route",
            "Client requests being handled now, by route, summed over the gateway processes scraped.",
            "short",
            [Target("sum by (route) (gateway_inflight_requests)", "{{route}}")],
            min=0,
        ),
        Panel(
            "Requests by API dialect",
            "Client requests per second by route, which names the client API: OpenAI chat completions "
            "(chat, embeddings), Anthropic Messages (messages, messages_count_tokens), OpenAI Responses "
            "(responses, responses_input_tokens, responses_stored) and Gemini (gemini_generate, "
            "gemini_count_tokens, gemini_embed); selected aliases (docs/dialects.md).",
            "reqps",
            [Target(f"sum by (route) (rate({REQ}[{RI}]))", "{{route}}")],
            stack=True,
        ),
        Panel(
            "Error share by API dialect",
            "Per route, the share of requests answered with a 5xx (the SLO's bad events) and with a 4xx "
            "(the client's request refused: an unmapped model name, a field only the provider's own API "
            "takes, an unknown previous_response_id, ...); 0 for a route without such answers. The line "
            f"marks the SLO's allowed error rate ({error_budget:.1%}).",
            "percentunit",
            [
                Target(_route_share("5xx"), "{{route}} 5xx"),
                Target(_route_share("4xx"), "{{route}} 4xx"),
            ],
            thresholds=[(None, "green"), (error_budget, "red")],
            threshold_lines=True,
            min=0,
        ),
    ]
    return dashboard(
        "llm-gateway-overview",
        "LLM gateway / Overview",
        f"Client traffic, errors, latency and the {SLO_TARGET:.1%} availability SLO (5xx share over 30 days).",
        [query_variable("alias", "Alias", "gateway_requests_total", "alias")],
        panels,
    )


# --- Models and providers ------------------------------------------------------

CLIENT_SEL = 'gen_ai_request_model=~"$model", gen_ai_provider_name=~"$provider"'
DEP = 'deployment=~"$deployment"'


def models() -> JSON:
    op = "gen_ai_client_operation_duration_seconds"
    panels: list[Panel | Row] = [
        Panel(
            "Upstream attempt latency p50 by model",
            "Median duration of each upstream attempt (retries and fallbacks each count), to the response "
            "(streams: to the first chunk), by upstream model and provider.",
            "s",
            [
                Target(
                    quantile(0.5, op, "gen_ai_provider_name, gen_ai_request_model", CLIENT_SEL),
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            min=0,
        ),
        Panel(
            "Upstream attempt latency p95 by model",
            "95th percentile duration of each upstream attempt, by upstream model and provider.",
            "s",
            [
                Target(
                    quantile(0.95, op, "gen_ai_provider_name, gen_ai_request_model", CLIENT_SEL),
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            min=0,
        ),
        Panel(
            "Upstream attempts/s by model",
            "Upstream attempts per second by upstream model and provider, successful or not.",
            "ops",
            [
                Target(
                    f"sum by (gen_ai_provider_name, gen_ai_request_model) (rate({op}_count{{{CLIENT_SEL}}}[{RI}]))",
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Upstream errors by error type",
            "Failed upstream attempts per second by model and bounded error type (timeout, connect_error, "
            "bad_response, http_<status>, ...).",
            "ops",
            [
                Target(
                    f"sum by (gen_ai_request_model, error_type) "
                    f'(rate({op}_count{{{CLIENT_SEL}, error_type!=""}}[{RI}]))',
                    "{{gen_ai_request_model}} {{error_type}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Upstream error share by deployment",
            "Share of each deployment's upstream attempts that did not end `ok`.",
            "percentunit",
            [
                Target(
                    f'sum by (deployment) (rate(gateway_upstream_attempts_total{{{DEP}, outcome!="ok"}}[{RI}])) '
                    f"/ sum by (deployment) (rate(gateway_upstream_attempts_total{{{DEP}}}[{RI}]))",
                    "{{deployment}}",
                )
            ],
            min=0,
            max=1,
        ),
        Panel(
            "Attempt outcomes by deployment",
            "Upstream attempts per second that did not end `ok`, by deployment and outcome.",
            "ops",
            [
                Target(
                    f"sum by (deployment, outcome) "
                    f'(rate(gateway_upstream_attempts_total{{{DEP}, outcome!="ok"}}[{RI}]))',
                    "{{deployment}} {{outcome}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Circuit breaker state",
            "Breaker state of each deployment (closed, half_open, open). With several processes the worst "
            "state any of them reports is shown.",
            "short",
            [
                Target(
                    'max by (deployment) (gateway_breaker_state{deployment=~"$deployment", state="open"}) * 2 '
                    '+ max by (deployment) (gateway_breaker_state{deployment=~"$deployment", state="half_open"})',
                    "{{deployment}}",
                )
            ],
            kind="state-timeline",
            width=24,
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "closed", "color": "green", "index": 0},
                        "1": {"text": "half_open", "color": "orange", "index": 1},
                        "2": {"text": "open", "color": "red", "index": 2},
                    },
                },
            ],
            thresholds=[(None, "green"), (1, "orange"), (2, "red")],
        ),
        Panel(
            "Deployment health score",
            "Health score 0-100 of each deployment: the average of its last scheduled connection tests "
            "(health_checks in the configuration). With several processes the lowest is shown.",
            "none",
            [
                Target(
                    'min by (deployment) (gateway_deployment_health_score{deployment=~"$deployment"})', "{{deployment}}"
                )
            ],
            min=0,
            max=100,
            thresholds=[(None, "red"), (50, "orange"), (90, "green")],
            threshold_lines=True,
        ),
        Panel(
            "Degraded by health checks",
            "Deployments the scheduled checks mark degraded: the router tries them only after the alias's "
            "other deployments, until they pass again.",
            "short",
            [Target('max by (deployment) (gateway_deployment_degraded{deployment=~"$deployment"})', "{{deployment}}")],
            kind="state-timeline",
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "ok", "color": "green", "index": 0},
                        "1": {"text": "degraded", "color": "red", "index": 1},
                    },
                },
            ],
            thresholds=[(None, "green"), (1, "red")],
        ),
        Panel(
            "Connection-test probes/s by result",
            "Probes per second (scheduled checks and on-demand tests) by deployment, test and result.",
            "ops",
            [
                Target(
                    f"sum by (deployment, probe, result) "
                    f'(rate(gateway_probes_total{{deployment=~"$deployment"}}[{RI}]))',
                    "{{deployment}} {{probe}} {{result}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Probe cost over the time range",
            "Cost of connection-test probes over the dashboard's time range, by deployment. Tracked apart: "
            "never charged to a key, team or budget.",
            "currencyUSD",
            [
                Target(
                    'sum by (deployment) (increase(gateway_probe_cost_usd_total{deployment=~"$deployment"}[$__range]))',
                    "{{deployment}}",
                    instant=True,
                )
            ],
            kind="stat",
            decimals=4,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Time to first token p50 / p95 by alias",
            "Streamed chat requests: time from request received to the first chunk sent to the client, "
            "by alias (gen_ai_server_time_to_first_token_seconds).",
            "s",
            [
                Target(
                    quantile(
                        0.5,
                        "gen_ai_server_time_to_first_token_seconds",
                        "gen_ai_request_model",
                        'gen_ai_request_model=~"$alias"',
                    ),
                    "p50 {{gen_ai_request_model}}",
                ),
                Target(
                    quantile(
                        0.95,
                        "gen_ai_server_time_to_first_token_seconds",
                        "gen_ai_request_model",
                        'gen_ai_request_model=~"$alias"',
                    ),
                    "p95 {{gen_ai_request_model}}",
                ),
            ],
            min=0,
        ),
        Panel(
            "Fallbacks/s",
            "Switches from one alias to a fallback alias per second, by source, target and reason.",
            "ops",
            [
                Target(
                    f"sum by (from_alias, to_alias, reason) "
                    f'(rate(gateway_fallbacks_total{{from_alias=~"$alias"}}[{RI}]))',
                    "{{from_alias}} → {{to_alias}} ({{reason}})",
                )
            ],
            stack=True,
        ),
        Panel(
            "Retries/s by deployment",
            "Attempts per second that were retries on the same deployment (they are included in the attempts).",
            "ops",
            [
                Target(
                    f'sum by (deployment) (rate(gateway_retries_total{{deployment=~"$deployment"}}[{RI}]))',
                    "{{deployment}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Truncated streams/s by alias",
            "Streams that broke after their first byte reached the client (the client got an error event "
            "instead of [DONE]).",
            "ops",
            [Target(f'sum by (alias) (rate(gateway_truncated_streams_total{{alias=~"$alias"}}[{RI}]))', "{{alias}}")],
            stack=True,
        ),
        Panel(
            "Upstream tokens/s by model and type",
            "Tokens per second as the upstreams reported them (gen_ai_client_token_usage), by model and token "
            "type. Answers without usage and cache hits are not counted.",
            "short",
            [
                Target(
                    f"sum by (gen_ai_request_model, gen_ai_token_type) "
                    f"(rate(gen_ai_client_token_usage_sum{{{CLIENT_SEL}}}[{RI}]))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            stack=True,
        ),
    ]
    panels += satisfaction()
    return dashboard(
        "llm-gateway-models",
        "LLM gateway / Models and providers",
        "Upstream attempts per deployment, model and provider: latency, errors, circuit breakers, retries and "
        "fallbacks, and the per-deployment health score of the scheduled connection tests.",
        [
            query_variable("alias", "Alias", "gateway_requests_total", "alias"),
            query_variable(
                "provider", "Provider", "gen_ai_client_operation_duration_seconds_count", "gen_ai_provider_name"
            ),
            query_variable(
                "model", "Upstream model", "gen_ai_client_operation_duration_seconds_count", "gen_ai_request_model"
            ),
            query_variable("deployment", "Deployment", "gateway_upstream_attempts_total", "deployment"),
        ],
        panels,
    )


# --- Cost and usage --------------------------------------------------------------

TEAM_ALIAS = 'team=~"$team", alias=~"$alias"'


def cost() -> JSON:
    spend_rate = f"sum(rate(gateway_cost_usd_total{{{TEAM_ALIAS}}}[{RI}]))"
    budget = 'scope=~"team|global", team=~"$team"'
    panels = [
        Panel(
            "Spend over the time range",
            "Cost of priced requests over the dashboard's time range, selected teams and aliases. "
            "Unpriced requests are not costed (see Unpriced requests).",
            "currencyUSD",
            [Target(f"sum(increase(gateway_cost_usd_total{{{TEAM_ALIAS}}}[$__range]))", "spend", instant=True)],
            kind="stat",
            width=6,
            height=5,
            decimals=2,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Spend run rate (per day)",
            "Current spend rate extrapolated to a day: rate of gateway_cost_usd_total x 86400.",
            "currencyUSD",
            [Target(f"{spend_rate} * 86400", "USD/day", instant=True)],
            kind="stat",
            width=6,
            height=5,
            decimals=2,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Tokens over the time range",
            "Tokens as the upstreams reported them over the dashboard's time range, selected teams and aliases "
            "(cache hits are not counted).",
            "short",
            [Target(f"sum(increase(gateway_tokens_total{{{TEAM_ALIAS}}}[$__range]))", "tokens", instant=True)],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Unpriced requests over the time range",
            "Requests answered by a model with no price over the dashboard's time range: they are counted, "
            "not costed at $0. Anything above zero means spend is under-reported.",
            "short",
            [Target("sum(increase(gateway_unpriced_requests_total[$__range]))", "unpriced", instant=True)],
            kind="stat",
            width=6,
            height=5,
            decimals=0,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        Panel(
            "Spend per hour by team and alias",
            "Spend rate in USD per hour (rate of gateway_cost_usd_total x 3600), by team and alias "
            "(team is empty for keys without a team and the master key).",
            "currencyUSD",
            [
                Target(
                    f"sum by (team, alias) (rate(gateway_cost_usd_total{{{TEAM_ALIAS}}}[{RI}])) * 3600",
                    "{{team}} {{alias}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Tokens/s by team, alias and type",
            "Tokens per second as the upstreams reported them, by team, alias and type (input, output).",
            "short",
            [
                Target(
                    f"sum by (team, alias, type) (rate(gateway_tokens_total{{{TEAM_ALIAS}}}[{RI}]))",
                    "{{team}} {{alias}} {{type}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Spend by team over the time range",
            "Cost of priced requests by team over the dashboard's time range.",
            "currencyUSD",
            [
                Target(
                    f"sum by (team) (increase(gateway_cost_usd_total{{{TEAM_ALIAS}}}[$__range]))",
                    "{{team}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            decimals=2,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Spend by alias over the time range",
            "Cost of priced requests by alias over the dashboard's time range.",
            "currencyUSD",
            [
                Target(
                    f"sum by (alias) (increase(gateway_cost_usd_total{{{TEAM_ALIAS}}}[$__range]))",
                    "{{alias}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            decimals=2,
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Budget spent vs limit",
            "Spend in the current period as a share of the budget, per team budget and the gateway-wide budget "
            "(empty team), daily and monthly. Replicas report the same shared spend, so they are aggregated "
            "with max. Orange at the warning ratio (80 %), red when exhausted.",
            "percentunit",
            [
                Target(
                    f"max by (scope, team, period) (gateway_budget_spent_usd{{{budget}}}) "
                    f"/ max by (scope, team, period) (gateway_budget_limit_usd{{{budget}}})",
                    "{{scope}} {{team}} {{period}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            min=0,
            max=1,
            thresholds=[(None, "green"), (0.8, "orange"), (1, "red")],
        ),
        Panel(
            "Budget spent and limit (USD)",
            "Spend in the current period and the budget of that period, per team and period (max over "
            "replicas). A gauge keeps its last value until the next priced request, also across midnight.",
            "currencyUSD",
            [
                Target(f"max by (team, period) (gateway_budget_spent_usd{{{budget}}})", "spent {{team}} {{period}}"),
                Target(f"max by (team, period) (gateway_budget_limit_usd{{{budget}}})", "limit {{team}} {{period}}"),
            ],
            min=0,
        ),
        Panel(
            "Daily spend forecast",
            "Spend per day at the current rate (rate x 86400), and a linear forecast of that daily spend "
            "24 hours ahead from its trend over the last 6 hours (predict_linear).",
            "currencyUSD",
            [
                Target(f"{spend_rate} * 86400", "daily spend (run rate)"),
                Target(f"predict_linear(({spend_rate} * 86400)[6h:5m], 86400)", "forecast in 24 h"),
            ],
            min=0,
        ),
        Panel(
            "Unpriced requests/s by provider and model",
            "Requests per second answered by a model with no price, by provider kind and upstream model: "
            "add a price for them, their cost is missing from the spend panels.",
            "reqps",
            [
                Target(
                    f"sum by (provider, model) (rate(gateway_unpriced_requests_total[{RI}]))", "{{provider}} {{model}}"
                )
            ],
            stack=True,
        ),
        Panel(
            "Upstream-reported cost vs the gateway's",
            "Drift of the cost upstreams report themselves (usage.cost: OpenRouter and other OpenAI-compatible "
            "servers) from the gateway's own price of the same requests, by provider and alias: reported / "
            "gateway - 1. Above 0 the upstream bills more than the gateway counts; GatewayCostDrift fires "
            "beyond 5 % over an hour. No series: no upstream reported a cost.",
            "percentunit",
            [
                Target(
                    f'sum by (provider, alias) (rate(gateway_cost_reported_usd_total{{alias=~"$alias"}}[{RI}]))'
                    f' / sum by (provider, alias) (rate(gateway_cost_compared_usd_total{{alias=~"$alias"}}[{RI}]))'
                    " - 1",
                    "{{provider}} {{alias}}",
                )
            ],
        ),
        Panel(
            "Budget events over the time range",
            "Budget threshold (warn ratio reached) and exhausted events over the dashboard's time range, by "
            "scope and period. Each process counts a crossing once, so replicas may count it again.",
            "short",
            [
                Target(
                    "sum by (scope, period, kind) (increase(gateway_budget_events_total[$__range]))",
                    "{{scope}} {{period}} {{kind}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            decimals=0,
            thresholds=[(None, "green"), (1, "orange")],
        ),
    ]
    return dashboard(
        "llm-gateway-cost",
        "LLM gateway / Cost and usage",
        "Tokens and spend by team and alias, budgets against their limits, a spend forecast and unpriced "
        "requests (which are counted, never costed at $0).",
        [
            query_variable("team", "Team", "gateway_tokens_total", "team"),
            query_variable("alias", "Alias", "gateway_tokens_total", "alias"),
        ],
        panels,
    )


# --- Traffic control -------------------------------------------------------------


def traffic() -> JSON:
    panels: list[Panel | Row] = [
        Panel(
            "Rate-limit rejections/s by scope",
            "Requests refused with 429 by a rate or concurrency limit, by the scope whose limit refused "
            "(global, team, key, model); scope `deployment` counts deployments skipped for being over their "
            "own limits.",
            "reqps",
            [Target(f"sum by (scope) (rate(gateway_ratelimit_rejections_total[{RI}]))", "{{scope}}")],
            stack=True,
        ),
        Panel(
            "Rate-limited share of requests",
            "Requests refused by a rate or concurrency limit as a share of client requests answered "
            "(deployment skips excluded: they are not refusals).",
            "percentunit",
            [
                Target(
                    f'sum(rate(gateway_ratelimit_rejections_total{{scope!="deployment"}}[{RI}])) '
                    f"/ sum(rate(gateway_requests_total[{RI}]))",
                    "rate-limited",
                )
            ],
            min=0,
        ),
        Panel(
            "Cache results/s",
            "Response cache decision of each admitted request: hit, miss, refresh (no lookup, answer stored) "
            "or off (cache disabled, bypassed or not cacheable).",
            "reqps",
            [Target(f"sum by (result) (rate(gateway_cache_requests_total[{RI}]))", "{{result}}")],
            stack=True,
        ),
        Panel(
            "Cache hit ratio",
            "Hits as a share of cache lookups (hit + miss).",
            "percentunit",
            [
                Target(
                    f'sum(rate(gateway_cache_requests_total{{result="hit"}}[{RI}])) '
                    f'/ sum(rate(gateway_cache_requests_total{{result=~"hit|miss"}}[{RI}]))',
                    "hit ratio",
                )
            ],
            min=0,
            max=1,
        ),
        Panel(
            "Degraded decisions/s by policy",
            "Decisions taken without the state backend because it was unreachable, by policy (limits, cache, "
            "budgets); see state.failure_mode in the configuration.",
            "ops",
            [Target(f"sum by (policy) (rate(gateway_degraded_decisions_total[{RI}]))", "{{policy}}")],
            stack=True,
        ),
        Panel(
            "State backend errors/s",
            "State backend operations that failed, by operation (spend_flush: buffered spend is kept and retried).",
            "ops",
            [Target(f"sum by (operation) (rate(gateway_state_backend_errors_total[{RI}]))", "{{operation}}")],
            stack=True,
        ),
        Panel(
            "Authentication failures/s",
            "Chat and embeddings requests refused for their credentials, by error code.",
            "reqps",
            [Target(f"sum by (reason) (rate(gateway_auth_failures_total[{RI}]))", "{{reason}}")],
            stack=True,
        ),
        Panel(
            "4xx answers/s by alias",
            "Client requests answered with a 4xx per second by alias, for comparison with the rejections "
            "(4xx also includes invalid requests and client disconnects).",
            "reqps",
            [Target(f'sum by (alias) (rate(gateway_requests_total{{status_class="4xx"}}[{RI}]))', "{{alias}}")],
            stack=True,
        ),
        Row("Traffic shaping"),
        *traffic_shaping(),
    ]
    return dashboard(
        "llm-gateway-traffic",
        "LLM gateway / Traffic control",
        "Rate and concurrency limits, the response cache, decisions degraded by an unreachable state backend, "
        "state backend errors and authentication failures; traffic shaping: the admission queue, upstream "
        "pacing, routing rules and shadow traffic.",
        [],
        panels,
    )


# Objective of the admission queue: p95 of the wait within 1 s, per priority class.
QUEUE_WAIT_SLO_S = 1.0


def traffic_shaping() -> list[Panel]:
    """The "Traffic shaping" row: the admission queue, upstream pacing, routing rules, shadow traffic."""
    wait = "gateway_queue_wait_seconds"
    return [
        Panel(
            "Queue depth by alias and priority",
            "Requests waiting in the admission queue now, by alias and priority class, summed over the gateway "
            "processes (stacked: the top is the whole queue). The red line marks GatewayQueueBacklog's 100: it "
            "fires when the whole queue stays above it for 1 minute.",
            "short",
            [Target("sum by (alias, priority) (gateway_queue_depth)", "{{alias}} {{priority}}")],
            stack=True,
            thresholds=[(None, "green"), (100, "red")],
            threshold_lines=True,
            min=0,
        ),
        Panel(
            "Queue wait p50 / p95 by priority",
            f"Time a request waited in the admission queue before it was admitted, p50 and p95 by priority class "
            f"(shed requests are not in it). Objective: queue wait p95 <= {QUEUE_WAIT_SLO_S:g} s; the red line "
            f"marks it.",
            "s",
            [
                Target(quantile(0.5, wait, "priority", ""), "p50 {{priority}}"),
                Target(quantile(0.95, wait, "priority", ""), "p95 {{priority}}"),
            ],
            thresholds=[(None, "green"), (QUEUE_WAIT_SLO_S, "red")],
            threshold_lines=True,
            min=0,
        ),
        Panel(
            "Shed requests/s by reason",
            "Requests the admission queue gave up on: queue_full (no room on arrival), deadline (on arrival, "
            "estimated to wait past its limit), timeout (its longest wait passed), disconnected (the client left "
            "while waiting). GatewayQueueShedding fires above 0.1/s for an alias for 5 minutes.",
            "reqps",
            [Target(f"sum by (reason) (rate(gateway_queue_shed_total[{RI}]))", "{{reason}}")],
            stack=True,
        ),
        Panel(
            "Paced deployments",
            "Deployments paced by their upstream's rate-limit signals (a 429 with Retry-After, or rate-limit "
            "headers saying the quota is used up): requests are held off them until the upstream allows. "
            "Paced if any gateway process paces it.",
            "short",
            [Target("max by (deployment) (gateway_deployment_paced)", "{{deployment}}")],
            kind="state-timeline",
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "not paced", "color": "green", "index": 0},
                        "1": {"text": "paced", "color": "orange", "index": 1},
                    },
                },
            ],
            thresholds=[(None, "green"), (1, "orange")],
        ),
        Panel(
            "Pacing signals/s by deployment and source",
            "Times a deployment was paced, per second, by the signal: retry_after (Retry-After on an answer) or "
            "ratelimit_headers (the upstream's rate-limit headers).",
            "ops",
            [
                Target(
                    f"sum by (deployment, source) (rate(gateway_upstream_paced_total[{RI}]))",
                    "{{deployment}} {{source}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Routing rules applied/s by rule",
            "Requests a routing rule changed, per second, by rule and kind (time_window, budget_downgrade, "
            "match, shadow). Requests no rule changed are not shown.",
            "reqps",
            [Target(f"sum by (rule, kind) (rate(gateway_routing_rule_applied_total[{RI}]))", "{{rule}} ({{kind}})")],
            stack=True,
        ),
        Panel(
            "Shadow requests/s by outcome",
            "Shadow requests (copies of an alias's requests sent to a candidate; the client never waits for "
            "them) per second, by candidate and outcome: ok, error, dropped (not sent).",
            "reqps",
            [
                Target(
                    f"sum by (candidate, outcome) (rate(gateway_shadow_requests_total[{RI}]))",
                    "{{candidate}} {{outcome}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Shadow cost (USD/hour) by candidate",
            "Cost of priced shadow requests in USD per hour (rate x 3600), by candidate. Tracked apart: never "
            "charged to a key, team or budget.",
            "currencyUSD",
            [Target(f"sum by (candidate) (rate(gateway_shadow_cost_usd_total[{RI}])) * 3600", "{{candidate}}")],
            stack=True,
            min=0,
        ),
    ]


# --- Runtime -------------------------------------------------------------------------

# Process metrics are restricted to gateway processes (other scraped jobs export the same names).
GW = 'and on (job, instance) gateway_build_info{instance=~"$instance"}'


def runtime() -> JSON:
    panels = [
        Panel(
            "CPU",
            "CPU time used per second by each gateway process (user + system): 100 % is one full core.",
            "percentunit",
            [Target(f"rate(process_cpu_seconds_total[{RI}]) {GW}", "{{instance}}")],
            min=0,
        ),
        Panel(
            "Resident memory",
            "Resident memory of each gateway process.",
            "bytes",
            [Target(f"process_resident_memory_bytes {GW}", "{{instance}}")],
            min=0,
        ),
        Panel(
            "Open file descriptors vs limit",
            "Open file descriptors (sockets included) of each gateway process, and its limit.",
            "short",
            [
                Target(f"process_open_fds {GW}", "open {{instance}}"),
                Target(f"process_max_fds {GW}", "max {{instance}}"),
            ],
            min=0,
        ),
        Panel(
            "File descriptor usage",
            "Open file descriptors as a share of the limit, per gateway process.",
            "percentunit",
            [Target(f"(process_open_fds / process_max_fds) {GW}", "{{instance}}")],
            min=0,
            max=1,
            thresholds=[(None, "green"), (0.8, "red")],
            threshold_lines=True,
        ),
        Panel(
            "Gateway added latency p50 / p99",
            "The gateway's own time per request: total time minus the time in upstream attempts "
            "(authentication, limits, cache, budgets and backoff waits between retries). Non-stream requests "
            "only.",
            "s",
            [
                Target(
                    quantile(0.5, "gateway_added_latency_seconds", "route", 'instance=~"$instance"'), "p50 {{route}}"
                ),
                Target(
                    quantile(0.99, "gateway_added_latency_seconds", "route", 'instance=~"$instance"'), "p99 {{route}}"
                ),
            ],
            min=0,
        ),
        Panel(
            "Event-loop lag p99 / max",
            "How late each process's event loop ran a timer (sampled every 0.5 s): time in which it served "
            "nobody, from a blocking call, a long synchronous step, garbage collection or CPU starvation. Tens of "
            "milliseconds show up directly in every request's latency.",
            "s",
            [
                Target(
                    quantile(0.99, "gateway_event_loop_lag_seconds", "instance", 'instance=~"$instance"'),
                    "p99 {{instance}}",
                ),
                Target(
                    f'max by (instance) (rate(gateway_event_loop_lag_seconds_sum{{instance=~"$instance"}}[{RI}]) '
                    f'/ rate(gateway_event_loop_lag_seconds_count{{instance=~"$instance"}}[{RI}]))',
                    "mean {{instance}}",
                ),
            ],
            min=0,
            thresholds=[(None, "green"), (0.05, "orange"), (0.25, "red")],
            threshold_lines=True,
        ),
        Panel(
            "Garbage collections",
            "Runs of Python's cyclic garbage collector per second, per process and generation (2: a full "
            "collection, which scans every object not frozen at start). Generation 0 many times a second or "
            "generation 2 more than once a minute: server.gc_threshold is below what the requests in flight hold "
            "(runbook, GatewayHighCPU).",
            "ops",
            [
                Target(
                    f'sum by (instance, generation) (rate(python_gc_collections_total{{instance=~"$instance"}}[{RI}]))',
                    "{{instance}} gen {{generation}}",
                )
            ],
            min=0,
        ),
        Panel(
            "Upstream connections",
            "Open connections from each gateway process to the upstreams: in use (carrying a request) and idle "
            "(pooled for the next one). Client-side load is the in-flight request count on the overview.",
            "short",
            [Target(f"gateway_upstream_connections {GW}", "{{instance}} {{state}}")],
            min=0,
        ),
        Panel(
            "Uptime",
            "Time since each gateway process started.",
            "s",
            [Target(f"time() - process_start_time_seconds {GW}", "{{instance}}", instant=True)],
            kind="bargauge",
            thresholds=[(None, "blue")],
        ),
        Panel(
            "Build info",
            "Gateway and Python version of each gateway process (gateway_build_info).",
            "short",
            [
                Target(
                    'max by (instance, version, python) (gateway_build_info{instance=~"$instance"})',
                    "",
                    instant=True,
                    table=True,
                )
            ],
            kind="table",
        ),
        Panel(
            "Config reloads",
            "Config reloads (SIGHUP) per process over the dashboard's time range, by result (a rejected "
            "reload keeps the old configuration).",
            "short",
            [
                Target(
                    "sum by (instance, result) "
                    '(increase(gateway_config_reloads_total{instance=~"$instance"}[$__range]))',
                    "{{instance}} {{result}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            decimals=0,
            thresholds=[(None, "green")],
        ),
        *state_backend(),
        *state_postgres(),
        *scheduled_jobs(),
        *notifications(),
        *security_review(),
    ]
    return dashboard(
        "llm-gateway-runtime",
        "LLM gateway / Gateway runtime",
        "The gateway processes themselves: CPU, memory, file descriptors, event-loop lag, upstream connections, "
        "the gateway's own added latency and build info, and the PostgreSQL state backend's pool.",
        [query_variable("instance", "Instance", "gateway_build_info", "instance")],
        panels,
    )


def state_backend() -> list[Panel | Row]:
    """Whether each process reaches its state backend (the admin API is read-only while not)."""
    return [
        Row("State backend"),
        Panel(
            "State backend reachable",
            "1 when each gateway process's state backend (embedded, redis or postgres) answered its last probe "
            "(every 5 s). While 0 the admin API is read-only (writes answer 503 with Retry-After), the console shows "
            "a banner and client traffic follows each policy's failure mode; GatewayStateBackendDown fires after 1 "
            "minute.",
            "short",
            [Target(f"gateway_state_backend_up {GW}", "{{instance}} {{backend}}")],
            min=0,
            max=1,
            thresholds=[(None, "red"), (1, "green")],
        ),
    ]


def scheduled_jobs() -> list[Panel | Row]:
    """The scheduled jobs (gateway/jobs/): when each last succeeded, how long it took, whether it failed."""
    return [
        Row("Scheduled jobs"),
        Panel(
            "Time since each job last succeeded",
            "Per scheduled job (backup, reports, security review, retention), the time since its last successful "
            "run on any replica; GatewayJobMissed fires past one and a half of its period.",
            "s",
            [
                Target(
                    "time() - max by (name) (gateway_job_last_success_timestamp_seconds > 0)", "{{name}}", instant=True
                )
            ],
            kind="bargauge",
            thresholds=[(None, "green")],
        ),
        Panel(
            "Job runs",
            "Each job's last run: how long it took, and whether it failed (1).",
            "short",
            [
                Target("max by (name) (gateway_job_last_duration_seconds)", "{{name}} seconds", instant=True),
                Target("max by (name) (gateway_job_last_failed)", "{{name}} failed", instant=True),
            ],
            kind="bargauge",
            thresholds=[(None, "green")],
        ),
    ]


def state_postgres() -> list[Panel | Row]:
    """The PostgreSQL state backend (``state.backend: postgres``; empty on the other backends)."""
    return [
        Row("State backend: PostgreSQL"),
        Panel(
            "PostgreSQL reachable",
            "1 when PostgreSQL (records, the spend ledger, stored responses, the audit log) answered each "
            "gateway process's last call or 5-second probe. While it is 0, client traffic goes on (records and "
            "budgets are read through Redis, spend is journaled and retried) and admin writes answer 503.",
            "short",
            [Target(f"gateway_state_postgres_up {GW}", "{{instance}}")],
            min=0,
            max=1,
            thresholds=[(None, "red"), (1, "green")],
        ),
        Panel(
            "PostgreSQL pool",
            "Connections of each process's PostgreSQL pool: in use, open (in use or idle) and the pool's "
            "limit (state.postgres.max_connections). In use at the limit means calls wait for a connection.",
            "short",
            [Target(f"gateway_state_postgres_pool_connections {GW}", "{{instance}} {{state}}")],
            min=0,
        ),
        Panel(
            "PostgreSQL failed calls",
            "Failed PostgreSQL calls per second (server down, a timeout, an error), and those refused because "
            "every pooled connection stayed busy for acquire_timeout_s (saturated).",
            "ops",
            [
                Target(f"rate(gateway_state_postgres_errors_total[{RI}]) {GW}", "failed {{instance}}"),
                Target(f"rate(gateway_state_postgres_pool_saturated_total[{RI}]) {GW}", "saturated {{instance}}"),
            ],
            min=0,
        ),
        Panel(
            "PostgreSQL read replica lag",
            "How far the read replica (state.postgres.read_url, read by `gateway report`) replays behind its "
            "primary, as each process measures it every 5 s; empty without a replica. Over 30 s for 5 minutes "
            "fires GatewayPostgresReplicaLagging.",
            "s",
            [Target(f"gateway_state_postgres_replica_lag_seconds {GW}", "{{instance}}")],
            min=0,
            thresholds=[(None, "green"), (30, "orange")],
            threshold_lines=True,
        ),
        Panel(
            "Request detail written / dropped",
            "Rows of request detail (one per finished request) written to PostgreSQL's gw_requests per second, "
            "and rows dropped because the buffer was full while PostgreSQL was slow or down; and the rows held.",
            "short",
            [
                Target(
                    f'rate(gateway_request_detail_rows_total{{outcome="written"}}[{RI}]) {GW}', "written/s {{instance}}"
                ),
                Target(
                    f'rate(gateway_request_detail_rows_total{{outcome="dropped"}}[{RI}]) {GW}', "dropped/s {{instance}}"
                ),
                Target(f"gateway_request_detail_pending {GW}", "held {{instance}}"),
            ],
            min=0,
        ),
        Panel(
            "Retention job",
            "Time since the request-detail retention job last succeeded (on any replica), and the days it archived "
            "or left in PostgreSQL over the dashboard's range.",
            "s",
            [
                Target(
                    "time() - max(gateway_retention_last_success_timestamp_seconds > 0)",
                    "since last success",
                    instant=True,
                ),
                Target(
                    "sum by (outcome) (increase(gateway_retention_day_exports_total[$__range]))",
                    "days {{outcome}}",
                    instant=True,
                ),
            ],
            kind="bargauge",
            thresholds=[(None, "green")],
        ),
    ]


def notifications() -> list[Panel | Row]:
    """Notifications (gateway/notify/): reports, the security review and info notices, by receiver kind."""
    return [
        Row("Notifications"),
        Panel(
            "Notifications delivered / failed",
            "Notifications (the weekly and monthly reports, the security review, info notices) over the "
            "dashboard's range, by receiver kind (webhook, slack, email) and outcome: ok, or failed after every "
            "attempt. A failure fires GatewayNotificationsFailing; the log gateway.notify says which receiver and why.",
            "short",
            [
                Target(
                    "sum by (receiver_kind, outcome) (increase(gateway_notifications_total[$__range]))",
                    "{{receiver_kind}} {{outcome}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            decimals=0,
            thresholds=[(None, "green")],
        ),
    ]


def security_review() -> list[Panel | Row]:
    """The last security review's findings (gateway/security/review.py), from the replica that ran it."""
    return [
        Row("Security review"),
        Panel(
            "Security review findings",
            "Findings of the last weekly security review, by kind, as exported by the replica that ran it (empty "
            "until a replica has run one since it started): keys and secrets overdue rotation, users and admins "
            "without MFA, admins not seen for admin_idle_days, temporary grants expiring or expired, accounts "
            "locked and failed-login bursts. Rotation overdue or admins without MFA fire GatewaySecurityFindings; "
            "`gateway security review` prints the names.",
            "short",
            [Target("max by (kind) (gateway_security_findings)", "{{kind}}", instant=True)],
            kind="bargauge",
            decimals=0,
            thresholds=[(None, "green"), (1, "orange")],
        ),
    ]


# --- User satisfaction -------------------------------------------------------------

SATISFACTION_TARGET = 4.5
"""The operations manual's 7-day average score (reports.targets.satisfaction; GatewaySatisfactionBelowTarget)."""


def satisfaction() -> list[Panel | Row]:
    """User satisfaction (POST /v1/feedback): the 7-day average score by alias against the target, and counts."""
    score = 'gateway_feedback_score_{}{{alias=~"$alias"}}'
    return [
        Row("User satisfaction"),
        Panel(
            "Average score by alias (7 days)",
            "The average of the users' scores (1-5, POST /v1/feedback) over the 7 days before each point, by the "
            f"alias that served the scored requests, against the {SATISFACTION_TARGET} target (the line). "
            "GatewaySatisfactionBelowTarget fires under it with 20 scores or more. Empty until a score is given.",
            "short",
            [
                Target(
                    f"sum by (alias) (increase({score.format('sum')}[7d])) "
                    f"/ sum by (alias) (increase({score.format('count')}[7d]))",
                    "{{alias}}",
                )
            ],
            thresholds=[(None, "red"), (SATISFACTION_TARGET, "green")],
            threshold_lines=True,
            decimals=2,
            min=1,
            max=5,
        ),
        Panel(
            "Scores and refused feedback",
            "Scores accepted over the dashboard's range by alias, and feedback posts refused by reason (invalid, "
            "unknown_request: another key's or an unknown or expired request id, already_scored, disabled, "
            "unauthenticated, unavailable).",
            "short",
            [
                Target(f"sum by (alias) (increase({score.format('count')}[$__range]))", "{{alias}}", instant=True),
                Target(
                    "sum by (reason) (increase(gateway_feedback_refused_total[$__range])) > 0",
                    "refused: {{reason}}",
                    instant=True,
                ),
            ],
            kind="bargauge",
            decimals=0,
            thresholds=[(None, "green")],
        ),
    ]


DASHBOARDS = {
    "overview.json": overview,
    "models.json": models,
    "cost.json": cost,
    "traffic.json": traffic,
    "runtime.json": runtime,
}


def render(board: JSON) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the JSON files to")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / name).write_text(render(build()), encoding="utf-8")


if __name__ == "__main__":
    main()
