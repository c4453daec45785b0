"""scripts/stack.py and scripts/stack_sink.py: the generated configs keep the project's files'
meaning (only addresses, and with --time-scale durations, change), and every failure is a clear
error that leaves nothing running. The stack itself runs in tests/e2e/test_observability_live.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config.jobs import JOB_NAMES
from scripts import stack
from scripts.stack_sink import AlertSink
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
AM_CONFIG = (ROOT / "alerts" / "alertmanager.yml").read_text()


def rules_of(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


# --- durations and the time scale -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("0m", 0), ("90s", 90), ("1h30m", 5400), ("1w", 604800), ("250ms", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert stack.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1.5h", "-1m"])
def test_parse_duration_refuses_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        stack.parse_duration(text)


def test_format_duration() -> None:
    assert [stack.format_duration(s) for s in (0, 5, 300, 10 / 60, 0.0001)] == ["0s", "5s", "300s", "167ms", "1ms"]
    with pytest.raises(ValueError, match="negative"):
        stack.format_duration(-1)


def test_scale_ranges_touches_only_ranges() -> None:
    expr = 'sum(rate(x{le="2.56", a=~"[a-z]+"}[5m])) / avg_over_time(y[1w]) > 3 and z[6h:5m] offset 1h'
    assert stack.scale_ranges(expr, 60) == (
        'sum(rate(x{le="2.56", a=~"[a-z]+"}[5s])) / avg_over_time(y[10080s]) > 3 and z[360s:5s] offset 1h'
    )


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_scaled_rules_differ_only_in_durations(path: Path) -> None:
    """The documented transformation: for: and ranges divided by the factor, nothing else."""
    real = rules_of(path.read_text())
    scaled = rules_of(stack.scale_rules(path.read_text(), 60))
    assert len(real) == len(scaled)
    for before, after in zip(real, scaled, strict=True):
        assert {k: v for k, v in before.items() if k not in ("expr", "for")} == {
            k: v for k, v in after.items() if k not in ("expr", "for")
        }
        assert stack._RANGE.sub("[]", before["expr"]) == stack._RANGE.sub("[]", after["expr"])
        assert stack.scale_ranges(before["expr"], 60) == after["expr"]
        if "for" in before:
            assert stack.parse_duration(after["for"]) == stack.parse_duration(before["for"]) / 60


def test_scaled_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make test` installs it: scripts/install-os-deps.sh)")
    for path in RULES:
        (tmp_path / path.name).write_text(stack.scale_rules(path.read_text(), 60))
    files = [str(tmp_path / p.name) for p in RULES]
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("factor", [0, 0.5, -60])
def test_time_scale_below_one_is_refused(factor: float) -> None:
    with pytest.raises(stack.StackError, match="time-scale must be a number >= 1"):
        stack.scale_rules(RULES[0].read_text(), factor)


def test_scale_rules_refuses_a_file_without_groups() -> None:
    with pytest.raises(stack.StackError, match="list of groups"):
        stack.scale_rules("rules: []\n", 60)


def test_scaled_gateway_config_changes_only_the_health_check_interval_and_turns_jobs_off() -> None:
    text = (ROOT / "config" / "gateway.yaml").read_text()
    real, scaled = yaml.safe_load(text), yaml.safe_load(stack.scale_gateway_config(text, 60))
    interval = real.get("health_checks", {}).get("interval_s")
    if interval is not None:
        assert scaled["health_checks"].pop("interval_s") == interval / 60
        real["health_checks"].pop("interval_s")
    leap = {"schedule": {name: {"cron": "0 0 29 2 *"} for name in JOB_NAMES}}
    assert stack.JOB_NAMES == JOB_NAMES
    assert scaled.pop("jobs") == {**real.pop("jobs", {}), **leap}
    assert scaled == real
    tiny = yaml.safe_load(stack.scale_gateway_config("health_checks: {interval_s: 1}\n", 1000))
    assert tiny == {"health_checks": {"interval_s": 0.05}, "jobs": leap}, "not below the minimum"
    assert yaml.safe_load(stack.scale_gateway_config("models: {}\n", 60)) == {"models": {}, "jobs": leap}
    with pytest.raises(stack.StackError, match="must be a mapping"):
        stack.scale_gateway_config("- a list\n", 60)


# --- generated configs ------------------------------------------------------------------------


def test_alertmanager_config_sends_every_receiver_to_the_sink() -> None:
    real = yaml.safe_load(AM_CONFIG)
    local = yaml.safe_load(stack.alertmanager_config(AM_CONFIG, "http://127.0.0.1:9999/"))
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in real["receivers"]]
    for receiver in local["receivers"]:
        assert receiver == {
            "name": receiver["name"],
            "webhook_configs": [{"url": f"http://127.0.0.1:9999/{receiver['name']}", "send_resolved": True}],
        }
    assert local["route"] == real["route"] and local["inhibit_rules"] == real["inhibit_rules"]


def test_alertmanager_config_scaled_timers() -> None:
    real = yaml.safe_load(AM_CONFIG)
    local = yaml.safe_load(stack.alertmanager_config(AM_CONFIG, "http://127.0.0.1:9999", time_scale=60))
    assert local["route"]["group_interval"] == "5s" and local["route"]["repeat_interval"] == "240s"
    for before, after in zip(real["route"]["routes"], local["route"]["routes"], strict=True):
        assert before["matchers"] == after["matchers"] and before["receiver"] == after["receiver"]
        if "group_wait" in before:
            assert stack.parse_duration(after["group_wait"]) == pytest.approx(
                stack.parse_duration(before["group_wait"]) / 60, abs=0.001
            )
    assert local["inhibit_rules"] == real["inhibit_rules"]


def test_alertmanager_config_without_receivers_is_refused() -> None:
    with pytest.raises(stack.StackError, match="route and a list of receivers"):
        stack.alertmanager_config("route: {receiver: x}\n", "http://127.0.0.1:1")


def test_prometheus_config_points_at_loopback() -> None:
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    rules = [Path("/r/a.yml")]
    config = yaml.safe_load(
        stack.prometheus_config(
            text, gateways=["127.0.0.1:1", "127.0.0.1:2"], alertmanager="127.0.0.1:3", rule_files=rules
        )
    )
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:3"]}]
    assert config["rule_files"] == ["/r/a.yml"]
    assert config["global"]["scrape_interval"] == "15s"  # deploy/prometheus.yml's own
    fast = yaml.safe_load(
        stack.prometheus_config(text, gateways=[], alertmanager="a:1", rule_files=[], scrape_interval="1s")
    )
    assert fast["global"]["scrape_interval"] == "1s" and fast["global"]["scrape_timeout"] == "1s"


def test_prometheus_config_needs_the_gateway_job() -> None:
    with pytest.raises(stack.StackError, match="scrape job named gateway"):
        stack.prometheus_config("scrape_configs: []\n", gateways=[], alertmanager="a:1", rule_files=[])


def test_nginx_config_on_loopback(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    conf = stack.nginx_config(text, listen=18080, upstreams=[18081, 18082], workdir=tmp_path, as_root=False)
    assert "listen 127.0.0.1:18080;" in conf
    assert "server 127.0.0.1:18081 " in conf and "server 127.0.0.1:18082 " in conf
    assert "gateway-1" not in conf and "user root" not in conf
    assert f"pid {tmp_path / 'nginx.pid'};" in conf
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is not None:
        (tmp_path / "nginx.conf").write_text(conf)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / f"tmp_{name}").mkdir()
        checked = subprocess.run(
            [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr


def test_nginx_config_refuses_a_changed_upstream_list(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    with pytest.raises(stack.StackError, match=r"gateway-1\.\.3"):
        stack.nginx_config(text, listen=1, upstreams=[2, 3, 4], workdir=tmp_path, as_root=False)


# --- settings -----------------------------------------------------------------------------------


def test_ports_from_env() -> None:
    ports = stack.Ports.from_env({"STACK_NGINX_PORT": "18080", "STACK_GATEWAY_1_PORT": "18081"})
    assert ports.nginx == 18080 and ports.gateway_1 == 18081 and ports.prometheus == 9090


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STACK_NGINX_PORT": "eighty"}, "STACK_NGINX_PORT must be a port number"),
        ({"STACK_REDIS_PORT": "70000"}, "STACK_REDIS_PORT must be a port number"),
        ({"STACK_MOCK_PORT": "9090"}, "two components share a port"),
    ],
)
def test_bad_ports_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(stack.StackError, match=message):
        stack.Ports.from_env(env)


def test_a_missing_program_names_its_package() -> None:
    with pytest.raises(stack.StackError, match=r"no-such-program-x is not installed \(Debian package pkg-x\)"):
        stack.find_binary("no-such-program-x", package="pkg-x")


def run_main(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        code = stack.main(list(argv), env=env or {})
    return code, err.getvalue()


def test_cli_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    code, err = run_main("up", "--state-dir", str(tmp_path), "--time-scale", "0.5")
    assert code == 2 and "time-scale must be a number >= 1" in err
    code, err = run_main("up", "--state-dir", str(tmp_path), "--scrape-interval", "soon")
    assert code == 2 and "not a Prometheus duration" in err
    code, err = run_main("status", "--state-dir", str(tmp_path), env={"STACK_NGINX_PORT": "x"})
    assert code == 2 and "STACK_NGINX_PORT" in err


def test_status_of_a_stopped_stack_and_a_stale_pid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A pid file whose process is gone (or whose pid now belongs to another process).
    stale = run_dir / "redis.pid"
    stale.write_text(json.dumps({"pid": os.getpid(), "start_time": "1", "argv": ["redis-server"]}))
    code, _ = run_main("status", "--state-dir", str(tmp_path))
    assert code == 3
    out = capsys.readouterr().out
    assert "redis" in out and "running" not in out
    assert not stale.exists(), "the stale pid file is removed"
    code, _ = run_main("down", "--state-dir", str(tmp_path))
    assert code == 0 and "nothing was running" in capsys.readouterr().out


def test_the_shell_wrapper_runs_the_module(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "stack.sh"
    status = subprocess.run(
        [str(script), "status", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 3, status.stderr
    assert "gateway-1" in status.stdout and "stopped" in status.stdout
    bad = subprocess.run([str(script), "restart"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "invalid choice: 'restart'" in bad.stderr


# --- up: failures leave nothing running ------------------------------------------------------------


def needs_programs() -> None:
    for exe in ("redis-server", "prometheus", "prometheus-alertmanager"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} is not installed (`make test` installs it: scripts/install-os-deps.sh)")


def loopback_settings(tmp_path: Path, **changes: Any) -> stack.StackSettings:
    names = [f.replace("-", "_") for f in stack.Ports().as_dict()]
    ports = stack.Ports(**dict(zip(names, free_ports(len(names)), strict=True)))
    return stack.StackSettings(state_dir=tmp_path, ports=ports, sink_url="http://127.0.0.1:1", **changes)


def test_a_busy_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    needs_programs()
    settings = loopback_settings(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.ports.redis))
        busy.listen()
        with pytest.raises(stack.StackError, match=r"redis: port \d+ on 127.0.0.1 is in use.*STACK_REDIS_PORT"):
            stack.Stack(settings).up()
    assert not list((tmp_path / "run").glob("*.pid"))


def test_a_component_that_dies_at_start_stops_the_others(tmp_path: Path) -> None:
    needs_programs()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {broken: {deployments: [{provider: nowhere}]}}\n")
    s = stack.Stack(loopback_settings(tmp_path / "state", gateway_config=bad))
    with pytest.raises(stack.StackError, match=r"gateway-\d exited at start; its log:\n(.|\n)*provider"):
        s.up()
    assert not list((tmp_path / "state" / "run").glob("*.pid")), "everything started was stopped"
    assert all(running is None for _, running, _ in s.status())


# --- the sink ---------------------------------------------------------------------------------------


def test_sink_records_posts_and_refuses_bad_bodies(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    with AlertSink(out=out) as sink, httpx.Client(base_url=sink.url, trust_env=False, timeout=5) as http:
        body = {"receiver": "pager", "status": "firing", "alerts": [{"labels": {"alertname": "A"}}]}
        assert http.post("/pager", json=body).status_code == 200
        assert http.post("/pager", content=b"not json").status_code == 400
        assert http.post("/pager", content=b"[1]").status_code == 400
        assert http.post("/pager").status_code == 400
        assert http.get("/").json() == {"notifications": 1}
        (seen,) = sink.notifications()
    assert seen.path == "/pager" and seen.receiver == "pager" and seen.alertnames() == {"A"}
    assert json.loads(out.read_text())["body"] == body


def test_sink_records_otlp_spans_and_refuses_garbage(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    export = ExportTraceServiceRequest()
    resource = export.resource_spans.add()
    attr = resource.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "gateway-1"
    span = resource.scope_spans.add().spans.add()
    span.name, span.trace_id, span.span_id = "chat demo-gpt", bytes(range(16)), bytes(range(8))
    tokens = span.attributes.add()
    tokens.key, tokens.value.int_value = "gen_ai.usage.input_tokens", 12
    out = tmp_path / "alerts.jsonl"
    with AlertSink(out=out) as sink, httpx.Client(base_url=sink.url, trust_env=False, timeout=5) as http:
        protobuf = {"content-type": "application/x-protobuf"}
        assert http.post("/v1/traces", content=export.SerializeToString(), headers=protobuf).status_code == 200
        assert http.post("/v1/traces", content=b"\xff\xff not protobuf", headers=protobuf).status_code == 400
        (seen,) = sink.spans()
        assert sink.notifications() == [], "spans are not alert notifications"
    assert seen["name"] == "chat demo-gpt" and seen["service"] == "gateway-1"
    assert seen["trace_id"] == bytes(range(16)).hex() and seen["attributes"] == {"gen_ai.usage.input_tokens": 12}
    assert json.loads((tmp_path / "traces.jsonl").read_text())["name"] == "chat demo-gpt"


def test_the_gateways_send_their_traces_to_the_sink(tmp_path: Path) -> None:
    s = stack.Stack(loopback_settings(tmp_path))
    gateways = [c for wave in s.components() for c in wave if c.name.startswith("gateway-")]
    assert [c.name for c in gateways] == ["gateway-1", "gateway-2"]
    for c in gateways:
        assert c.env is not None
        assert c.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == s.sink_url
        assert c.env["OTEL_SERVICE_NAME"] == c.name


def test_prometheus_scrapes_the_gateways_metrics_ports_not_their_client_ports(tmp_path: Path) -> None:
    s = stack.Stack(loopback_settings(tmp_path))
    p = s.ports
    gateways = {c.name: c for wave in s.components() for c in wave if c.name.startswith("gateway-")}
    assert gateways["gateway-1"].env is not None and gateways["gateway-2"].env is not None
    assert gateways["gateway-1"].env["METRICS_PORT"] == str(p.gateway_1_metrics)
    assert gateways["gateway-2"].env["METRICS_PORT"] == str(p.gateway_2_metrics)
    prometheus = next(c for wave in s.components() for c in wave if c.name == "prometheus")
    assert prometheus.prepare is not None
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    prometheus.prepare()
    config = yaml.safe_load((tmp_path / "config" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"127.0.0.1:{p.gateway_1_metrics}", f"127.0.0.1:{p.gateway_2_metrics}"]
