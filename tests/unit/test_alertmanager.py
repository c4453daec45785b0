"""alerts/alertmanager.yml: amtool accepts it, routes each severity where it should go, and keeps the
de-duplication, inhibition and resolution conventions; a real Alertmanager applies the inhibition."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "alerts" / "alertmanager.yml"
AMTOOL_HINT = (
    "amtool is not installed (`make test` installs it: scripts/install-os-deps.sh, Debian's prometheus-alertmanager)"
)
RECEIVER_CONFIG_KEYS = (
    "email_configs",
    "slack_configs",
    "webhook_configs",
    "pagerduty_configs",
    "opsgenie_configs",
    "msteams_configs",
    "telegram_configs",
    "pushover_configs",
    "victorops_configs",
)


def load() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def duration_s(text: str) -> float:
    """Seconds in an Alertmanager/Prometheus duration such as ``1h30m`` or ``0s``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit():
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        assert number and unit in units, f"bad duration {text!r}"
        total += int(number) * units[unit]
        number = ""
        i += len(unit)
    assert not number, f"bad duration {text!r}"
    return total


def routes_for(severity: str) -> list[dict[str, Any]]:
    return [r for r in load()["route"]["routes"] if f'severity="{severity}"' in r.get("matchers", [])]


# --- amtool --------------------------------------------------------------------------------------


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("amtool")
    if exe is None:
        pytest.skip(AMTOOL_HINT)
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def routed(*labels: str) -> list[str]:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, f"amtool exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout.strip().split(",")


def test_amtool_check_config_accepts_it() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, f"amtool exit {result.returncode}: {result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical"], ["pager", "email"]),
        (["alertname=GatewayErrorRateCritical", "severity=critical", "family=GatewayErrorRate"], ["pager", "email"]),
        (["severity=warning"], ["slack", "email"]),
        (["alertname=GatewayErrorRateWarning", "severity=warning", "team=llm"], ["slack", "email"]),
        (["severity=info"], ["email"]),
        (["alertname=GatewayCriticalUnresolved", "escalate=true", "severity=critical"], ["escalation"]),
        (["alertname=Unlabelled"], ["email"]),
        (["severity=bogus"], ["email"]),
    ],
)
def test_amtool_routes_each_severity(labels: list[str], receivers: list[str]) -> None:
    assert routed(*labels) == receivers


def test_amtool_verify_receivers_flags_a_wrong_expectation() -> None:
    # The assertion style above relies on amtool's output; --verify.receivers is the tool's own check.
    ok = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=pager,email", "severity=critical"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = amtool("config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=email", "severity=critical")
    assert bad.returncode != 0


# --- the conventions, from the YAML --------------------------------------------------------------


def test_every_receiver_config_sends_resolved() -> None:
    receivers = load()["receivers"]
    assert {r["name"] for r in receivers} >= {"pager", "email", "slack", "escalation"}
    for receiver in receivers:
        configs = [(key, c) for key in RECEIVER_CONFIG_KEYS for c in receiver.get(key, [])]
        assert configs, f"receiver {receiver['name']} has no integration"
        for key, config in configs:
            assert config.get("send_resolved") is True, f"{receiver['name']}.{key} lacks send_resolved: true"


def test_deduplication_window_is_five_minutes() -> None:
    route = load()["route"]
    assert duration_s(route["group_interval"]) == 300
    for child in [route, *route["routes"]]:
        assert "group_interval" not in child or duration_s(child["group_interval"]) == 300
        repeat = duration_s(child.get("repeat_interval", route["repeat_interval"]))
        assert repeat % 300 == 0 and repeat >= 300, f"repeat_interval {repeat}s is not a multiple of 5m"


def test_grouping_labels() -> None:
    assert set(load()["route"]["group_by"]) >= {"alertname", "severity", "family", "team", "deployment", "alias"}


def test_group_wait_per_severity() -> None:
    root_wait = load()["route"]["group_wait"]
    critical, warning = routes_for("critical"), routes_for("warning")
    assert critical and warning
    assert all(duration_s(r.get("group_wait", root_wait)) <= 30 for r in critical)
    assert all(duration_s(r.get("group_wait", root_wait)) <= 300 for r in warning)


def test_matchers_not_deprecated_match() -> None:
    def walk(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield route
        for child in route.get("routes", []):
            yield from walk(child)

    config = load()
    for route in walk(config["route"]):
        assert "match" not in route and "match_re" not in route
    for rule in config["inhibit_rules"]:
        assert not {"source_match", "source_match_re", "target_match", "target_match_re"} & rule.keys()


def test_inhibit_warning_while_matching_critical_fires() -> None:
    rules = load()["inhibit_rules"]
    rule = next(r for r in rules if r["target_matchers"] == ['severity="warning"'])
    assert 'severity="critical"' in rule["source_matchers"]
    # The documented convention: paired alerts share `family`; the source must carry one, since labels
    # missing on both sides count as equal.
    assert 'family=~".+"' in rule["source_matchers"]
    assert rule["equal"] == ["family", "deployment", "alias"]


def test_escalation_route_precedes_critical_and_is_terminal() -> None:
    routes = load()["route"]["routes"]
    assert routes[0]["matchers"] == ['escalate="true"']
    assert routes[0]["receiver"] == "escalation"
    assert not routes[0].get("continue", False)
    escalation = next(r for r in load()["receivers"] if r["name"] == "escalation")
    assert escalation.get("webhook_configs") and escalation.get("email_configs")


def test_no_external_addresses() -> None:
    text = CONFIG.read_text()
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if "http" in code:
            assert "http://127.0.0.1:" in code, line
        if "@" in code and "{{" not in code:
            assert "@example.invalid" in code, line


# --- a real Alertmanager applies the inhibition --------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if exe is None:
        pytest.skip(AMTOOL_HINT)
    port = free_port()
    storage = tmp_path_factory.mktemp("alertmanager")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={CONFIG}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "alertmanager exited at start"
            assert time.monotonic() < deadline, "alertmanager not ready in 20s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_alerts(url: str, *labelsets: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
        for labels in labelsets
    ]
    httpx.post(
        f"{url}/api/v2/alerts",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
        trust_env=False,
        timeout=5,
    ).raise_for_status()


def inhibited(url: str, alertname: str, deadline_s: float = 10) -> dict[str, bool]:
    """alias -> inhibited?, for ``alertname``'s alerts, once every alert's state is settled."""
    deadline = time.monotonic() + deadline_s
    last: dict[str, bool] = {}
    while time.monotonic() < deadline:
        alerts = httpx.get(
            f"{url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, trust_env=False, timeout=5
        ).json()
        last = {a["labels"].get("alias", ""): bool(a["status"]["inhibitedBy"]) for a in alerts}
        if any(last.values()):
            return last
        time.sleep(0.2)
    return last


def test_alertmanager_inhibits_the_warning_of_a_firing_critical_pair(alertmanager: str) -> None:
    post_alerts(
        alertmanager,
        {"alertname": "GatewayErrorRateCritical", "severity": "critical", "family": "GatewayErrorRate", "alias": "a"},
        {"alertname": "GatewayErrorRateWarning", "severity": "warning", "family": "GatewayErrorRate", "alias": "a"},
        # Same family, other alias: not the same problem, stays active.
        {"alertname": "GatewayErrorRateWarning", "severity": "warning", "family": "GatewayErrorRate", "alias": "b"},
        # A family-less critical must not mute a family-less warning.
        {"alertname": "SomethingCritical", "severity": "critical"},
        {"alertname": "SomethingWarning", "severity": "warning"},
    )
    assert inhibited(alertmanager, "GatewayErrorRateWarning") == {"a": True, "b": False}
    assert inhibited(alertmanager, "SomethingWarning", deadline_s=1) == {"": False}
    assert inhibited(alertmanager, "GatewayErrorRateCritical", deadline_s=1) == {"a": False}
