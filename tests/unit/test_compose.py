"""docker-compose.yml, checked without a container engine: every mounted file
exists, the services that configs name exist, ports do not clash, and the
Prometheus config is valid with the project's rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def test_the_stack_has_every_part() -> None:
    names = set(services())
    assert {
        "gateway-1",
        "gateway-2",
        "nginx",
        "redis",
        "mock",
        "prometheus",
        "alertmanager",
        "grafana",
        "jaeger",
    } <= names


def test_every_bind_mounted_path_exists() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_named_volumes_are_declared_and_redis_persists() -> None:
    declared = set(compose().get("volumes", {}))
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    assert "--appendonly" in services()["redis"]["command"]


def test_depends_on_names_services() -> None:
    names = set(services())
    for name, svc in services().items():
        for dep in svc.get("depends_on", []):
            assert dep in names, f"{name} depends on unknown service {dep}"


def test_published_ports_do_not_clash() -> None:
    published = [p.split(":")[0] for svc in services().values() for p in svc.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_replicas_share_redis_and_reach_the_mock() -> None:
    for name in ("gateway-1", "gateway-2"):
        env = services()[name]["environment"]
        assert env["GATEWAY_STATE_BACKEND"] == "redis"
        assert urlparse(env["REDIS_URL"]).hostname in services()
        assert urlparse(env["MOCK_BASE_URL"]).hostname in services()
        assert env["HOST"] == "0.0.0.0"


def test_config_files_name_existing_services() -> None:
    names = set(services())
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets = [t for sc in prometheus["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]]
    targets += [t for am in prometheus["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    for target in targets:
        assert target.split(":")[0] in names, target
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", (ROOT / "deploy/nginx.conf").read_text(), re.M)
    assert {host for host, _ in upstreams} == {"gateway-1", "gateway-2"}
    datasource = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())
    for ds in datasource["datasources"]:
        assert urlparse(ds["url"]).hostname in names


def test_grafana_mounts_match_the_provisioning() -> None:
    volumes = services()["grafana"]["volumes"]
    targets = {v.split(":")[1] for v in volumes}
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/gateway.yml").read_text())
    for p in provider["providers"]:
        assert p["options"]["path"] in targets


def test_prometheus_config_is_valid_with_the_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make test installs it)")
    # Lay the files out as the container sees them: the config beside rules/.
    shutil.copy(ROOT / "deploy/prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "alerts/rules", tmp_path / "rules")
    proc = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_metrics_are_not_served_on_the_client_port() -> None:
    """The production default: each gateway serves /metrics (team ids, spend) on a port of its
    own, published nowhere; Prometheus scrapes that port; nginx forwards only the client port."""
    gateway = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    assert gateway["metrics"]["port"] == "${METRICS_PORT:-}", "config/gateway.yaml reads METRICS_PORT"
    metrics_ports = set()
    for name in ("gateway-1", "gateway-2"):
        svc = services()[name]
        metrics_ports.add(svc["environment"]["METRICS_PORT"])
        assert not svc.get("ports"), f"{name} publishes no port"
    (metrics_port,) = metrics_ports
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    (job,) = [sc for sc in prometheus["scrape_configs"] if sc["job_name"] == "gateway"]
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"gateway-1:{metrics_port}", f"gateway-2:{metrics_port}"]
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", (ROOT / "deploy/nginx.conf").read_text(), re.M)
    assert {port for _, port in upstreams} == {"8080"} and metrics_port != "8080"
