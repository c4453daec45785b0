"""docker-compose.yml, checked without a container engine: `docker-compose config` (Debian's
docker-compose 1.29) validates it with a filled .env and refuses it without each secret; every
service has a healthcheck on an endpoint it really serves and is waited for healthy; restart
policies and resource limits everywhere; only nginx's client port is published (the operator UIs
on 127.0.0.1); Redis and the mock on the internal network alone; the mock only in the `demo`
profile; the gateways read-only with a data volume each; every mounted file exists, the services
that configs name exist, and the Prometheus config is valid with the project's rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from gateway.config.settings import ServerSettings
from tests.deploy_files import gateway_paths, mock_paths

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


def port_mappings() -> list[tuple[str, str, str, str]]:
    """(service, host address or "" for all, published port, container port) of every ``ports`` entry."""
    out = []
    for name, svc in services().items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            host, published, target = parts if len(parts) == 3 else ["", *parts]
            out.append((name, host, published, target))
    return out


def test_published_ports_do_not_clash() -> None:
    published = [(host, port) for _, host, port, _ in port_mappings()]
    assert len(published) == len(set(published)), published


def test_replicas_share_redis_and_reach_the_mock() -> None:
    for name in ("gateway-1", "gateway-2"):
        env = services()[name]["environment"]
        assert env["GATEWAY_STATE_BACKEND"] == "redis"
        # (the password is ${REDIS_PASSWORD:?...}: its "?" would start a query)
        assert urlparse(re.sub(r"\$\{[^}]*\}", "password", env["REDIS_URL"])).hostname == "redis"
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


# --- hardening ----------------------------------------------------------------------------------

REQUIRED = (
    "GATEWAY_MASTER_KEY",
    "GATEWAY_SECRETS_KEY",
    "GATEWAY_JWT_SECRET",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
FILLED = {
    "GATEWAY_MASTER_KEY": "sk-compose-test-0123456789abcdef0123456789abcdef",
    "GATEWAY_SECRETS_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "GATEWAY_JWT_SECRET": "0123456789abcdef0123456789abcdef0123456789abcdef",
    "REDIS_PASSWORD": "0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "fedcba9876543210",
}
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[^'\" ]*)")


def required_variables() -> set[str]:
    """Every ``${VAR:?message}`` of the file: the stack does not start without them."""
    return set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))


def healthcheck_command(name: str) -> str:
    test = services()[name]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
    return " ".join(test[1:])


def health_url(name: str) -> tuple[int, str]:
    """(port, path) that the service's healthcheck asks for."""
    (found,) = HEALTH_URL.findall(healthcheck_command(name))
    return int(found[0]), found[1]


def docker_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (make test installs it: scripts/install-os-deps.sh)")
    return subprocess.run(
        [
            exe,
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            *args,
        ],
        # Nothing from this shell's environment: only the env file speaks.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_the_required_secrets_are_the_ones_documented() -> None:
    assert required_variables() == set(REQUIRED)
    example = (ROOT / ".env.example").read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", example, re.M))
    assert set(REQUIRED) <= set(assigned), "every required variable is in .env.example"
    assert all(value == "" for value in assigned.values()), "no value, placeholder or key in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert ".env.example" in readme and "docs/deployment.md" in readme
    assert "docker-compose" in (ROOT / "scripts" / "install-os-deps.sh").read_text()


def test_docker_compose_validates_the_stack_with_a_filled_env(tmp_path: Path) -> None:
    proc = docker_compose(write_env(tmp_path / "filled.env", FILLED), "config")
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)["services"]
    assert set(resolved) == set(services())
    for name in ("gateway-1", "gateway-2"):
        env = resolved[name]["environment"]
        assert env["GATEWAY_MASTER_KEY"] == FILLED["GATEWAY_MASTER_KEY"]
        assert urlparse(env["REDIS_URL"]).password == FILLED["REDIS_PASSWORD"]
    assert resolved["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == FILLED["GRAFANA_ADMIN_PASSWORD"]
    assert FILLED["REDIS_PASSWORD"] in resolved["redis"]["command"]
    # As docker-compose reads the ports: one on a public address, nginx's 8080.
    public = []
    for name, svc in resolved.items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                host, published = port.get("host_ip", ""), str(port["published"])
            else:
                *host_part, published, _ = str(port).split("/")[0].split(":")
                host = host_part[0] if host_part else ""
            if host != "127.0.0.1":
                public.append((name, published))
    assert public == [("nginx", "8080")]


@pytest.mark.parametrize("missing", REQUIRED)
def test_docker_compose_refuses_the_stack_without_a_secret(missing: str, tmp_path: Path) -> None:
    values = {k: v for k, v in FILLED.items() if k != missing}
    proc = docker_compose(write_env(tmp_path / "partial.env", values), "config")
    assert proc.returncode != 0, proc.stdout
    assert f"set {missing}" in proc.stderr, proc.stderr
    # An empty value is refused the same way (the .env.example as copied).
    proc = docker_compose(write_env(tmp_path / "empty.env", {**values, missing: ""}), "config")
    assert proc.returncode != 0 and f"set {missing}" in proc.stderr, proc.stderr


def test_docker_compose_refuses_the_example_env_as_it_is(tmp_path: Path) -> None:
    proc = docker_compose(ROOT / ".env.example", "config")
    assert proc.returncode != 0 and "in .env" in proc.stderr, proc.stderr


def test_every_service_has_a_healthcheck_on_an_endpoint_it_serves() -> None:
    gateway_routes, mock_routes = gateway_paths(), mock_paths()
    for name in ("gateway-1", "gateway-2"):
        assert health_url(name) == (8080, "/ready") and "/ready" in gateway_routes
    assert health_url("mock") == (8090, "/_mock/health") and "/_mock/health" in mock_routes
    # nginx: its client port, forwarded to a replica's liveness route
    port, path = health_url("nginx")
    assert port == 8080 and path in gateway_routes
    assert health_url("prometheus") == (9090, "/-/ready")
    assert health_url("alertmanager") == (9093, "/-/ready")
    assert health_url("grafana") == (3000, "/api/health")
    assert health_url("jaeger") == (14269, "/")  # the all-in-one's admin port: health
    assert "redis-cli ping" in healthcheck_command("redis")
    assert services()["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")
    for name, svc in services().items():
        assert svc["healthcheck"]["interval"] and svc["healthcheck"]["retries"] >= 3, name


def test_dependencies_are_waited_for_healthy() -> None:
    for name, svc in services().items():
        for dep, condition in svc.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dep}"
            assert "healthcheck" in services()[dep], f"{name} waits for {dep}, which has no healthcheck"
            assert not services()[dep].get("profiles") or svc.get("profiles"), f"{name} needs {dep}'s profile"
    assert set(services()["gateway-1"]["depends_on"]) == {"redis"}
    assert set(services()["nginx"]["depends_on"]) == {"gateway-1", "gateway-2"}


def test_the_mock_runs_only_in_the_demo_profile() -> None:
    profiled = {name: svc["profiles"] for name, svc in services().items() if svc.get("profiles")}
    assert profiled == {"mock": ["demo"]}


def test_restart_policies_and_resource_limits_everywhere() -> None:
    for name, svc in services().items():
        assert svc["restart"] == "unless-stopped", name
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"]), name


def test_only_the_client_port_is_published() -> None:
    public = [(name, published, target) for name, host, published, target in port_mappings() if host != "127.0.0.1"]
    assert public == [("nginx", "8080", "8080")]
    networks = compose()["networks"]
    for name in ("redis", "mock"):
        assert not services()[name].get("ports")
        assert all(networks[n].get("internal") for n in services()[name]["networks"]), name


def test_gateway_containers_run_read_only_with_a_data_volume_each() -> None:
    data_volumes = set()
    for name in ("gateway-1", "gateway-2", "mock"):
        svc = services()[name]
        assert svc["read_only"] is True and any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"]), name
        assert svc["cap_drop"] == ["ALL"], name
    for name in ("gateway-1", "gateway-2"):
        (data,) = [v.split(":")[0] for v in services()[name]["volumes"] if v.split(":")[1] == "/app/data"]
        assert data in compose()["volumes"], name
        data_volumes.add(data)
        grace = services()[name]["stop_grace_period"]
        assert float(grace.rstrip("s")) > ServerSettings().shutdown_grace_s, "stop after the gateway's own drain"
    assert len(data_volumes) == 2, "a data volume per replica"


def test_prometheus_and_grafana_keep_their_data() -> None:
    prometheus, grafana = services()["prometheus"], services()["grafana"]
    assert "prometheus-data:/prometheus" in prometheus["volumes"]
    assert "--storage.tsdb.path=/prometheus" in prometheus["command"]
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
