"""The Prometheus rules of ``alerts/``: ``promtool check rules`` and ``promtool test rules``
pass, every alert is labelled, annotated and linked to its section of ``docs/runbook.md``,
every metric an expression reads is in ``docs/metrics.md``, and every alert has a firing and
a silent case in ``alerts/tests``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK_BASE = "https://github.com/example/llm-gateway/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning", "info"}
PROMTOOL_HINT = "promtool is not installed (`make test` installs it: scripts/install-os-deps.sh, Debian's prometheus)"

# Series that exist without being in the catalog: Prometheus's own.
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Words of PromQL that look like names: functions, aggregations, keywords.
_PROMQL_WORDS = (
    "abs absent absent_over_time and avg avg_over_time bool by clamp_max clamp_min count count_over_time "
    "day_of_month days_in_month group_left group_right histogram_quantile ignoring increase label_replace "
    "max max_over_time min min_over_time offset on or predict_linear rate scalar stddev_over_time sum "
    "time unless vector without irate delta deriv topk bottomk quantile stddev"
)
PROMQL_WORDS = set(_PROMQL_WORDS.split())


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} +(.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


def catalog_metrics() -> set[str]:
    """Series names of the catalog: counters and gauges as named, histograms with their suffixes."""
    names: set[str] = set()
    for name, kind in re.findall(r"^\| `([a-z_:]+)` \| (counter|gauge|histogram) \|", METRICS_DOC.read_text(), re.M):
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def expr_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers not in strings, label matchers or grouping lists."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]|e\d*", n)}


def test_rule_files_exist() -> None:
    assert {p.name for p in RULES} >= {"gateway.recording.yml", "gateway.alerts.yml"}
    assert TESTS, "no promtool tests in alerts/tests"


# --- promtool ---------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(PROMTOOL_HINT)
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *(str(p.relative_to(ROOT)) for p in RULES))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(RULES), output
    assert "WARNING" not in output.upper(), output


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", *(str(p.relative_to(ROOT)) for p in TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


# --- alert hygiene ----------------------------------------------------------------------


def test_alert_names_unique() -> None:
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_labels_and_annotations(alert: dict[str, Any]) -> None:
    assert alert.get("labels", {}).get("severity") in SEVERITIES
    annotations = alert.get("annotations", {})
    assert annotations.get("summary")
    description = annotations.get("description", "")
    assert "$labels" in description or "$value" in description, description
    url = annotations.get("runbook_url", "")
    assert url.startswith(RUNBOOK_BASE), url
    anchor = url.removeprefix(RUNBOOK_BASE)
    assert anchor == alert["alert"].lower(), url
    assert anchor in runbook_anchors(), f"docs/runbook.md has no heading for #{anchor}"


def test_escalation_alert() -> None:
    (alert,) = (a for a in alerts() if a["alert"] == "GatewayCriticalUnresolved")
    assert alert["labels"] == {"severity": "critical", "escalate": "true"}
    assert alert["for"] == "30m"
    assert 'ALERTS{alertstate="firing", severity="critical"' in alert["expr"]


def test_memory_limit_constant_documented() -> None:
    text = (ROOT / "alerts" / "rules" / "gateway.recording.yml").read_text()
    assert "record: gateway:memory_limit_bytes" in text
    assert "2 GiB" in text and "real limit" in text


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r["record"])
def test_expr_metrics_in_catalog(rule: dict[str, Any]) -> None:
    known = catalog_metrics() | recorded() | BUILTIN_SERIES
    unknown = expr_names(rule["expr"]) - known
    assert not unknown, f"not in docs/metrics.md nor a recording rule: {sorted(unknown)}"


def test_catalog_parsed() -> None:
    names = catalog_metrics()
    assert {"gateway_requests_total", "gen_ai_server_request_duration_seconds_bucket"} <= names
    assert "process_cpu_seconds_total" in names
    assert expr_names('sum by (job) (rate(gateway_typo_total{le="2.56"}[5m])) / on () up') == {
        "gateway_typo_total",
        "up",
    }


# --- promtool tests cover every alert ------------------------------------------------------


def alert_cases() -> list[dict[str, Any]]:
    return [case for path in TESTS for test in load(path)["tests"] for case in test.get("alert_rule_test", [])]


@pytest.mark.parametrize("name", [a["alert"] for a in alerts()])
def test_every_alert_fires_and_stays_silent_in_a_test(name: str) -> None:
    cases = [c for c in alert_cases() if c["alertname"] == name]
    assert any(c.get("exp_alerts") for c in cases), f"no promtool case where {name} fires"
    assert any(not c.get("exp_alerts") for c in cases), f"no promtool case where {name} stays silent"


def test_firing_cases_check_annotations() -> None:
    for case in alert_cases():
        for exp in case.get("exp_alerts") or []:
            assert exp.get("exp_labels", {}).get("severity") in SEVERITIES, case["alertname"]
            assert exp.get("exp_annotations", {}).get("runbook_url", "").startswith(RUNBOOK_BASE), case["alertname"]


@pytest.mark.parametrize(
    ("warning", "critical"),
    [
        ("GatewayHighLatency", "GatewayLatencyCritical"),
        ("GatewayHighErrorRate", "GatewayErrorRateCritical"),
        ("GatewayErrorBudgetBurnSlow", "GatewayErrorBudgetBurnFast"),
        ("GatewayLatencyBudgetBurnSlow", "GatewayLatencyBudgetBurnFast"),
        ("GatewayStateBackendErrors", "GatewayDegradedMode"),
    ],
)
def test_paired_alerts_share_a_family_for_inhibition(warning: str, critical: str) -> None:
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load((ROOT / "alerts/rules/gateway.alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert rules[warning]["labels"]["severity"] == "warning"
    assert rules[critical]["labels"]["severity"] == "critical"
    assert rules[warning]["labels"]["family"] == rules[critical]["labels"]["family"]
