"""The whole stack from OS packages, on loopback: ``scripts/stack.sh up|down|status``.

Components, all on 127.0.0.1, in start order: ``redis`` (redis-server, append-only file), the
``mock`` upstream, two gateway replicas (``gateway-1``, ``gateway-2``: config/gateway.yaml on the
redis backend), the alert ``sink`` (scripts/stack_sink.py: records what Alertmanager sends),
``alertmanager`` (alerts/alertmanager.yml, every receiver delivered to the sink), ``prometheus``
(deploy/prometheus.yml, the rules of alerts/rules, scraping both replicas' metrics ports: their
client ports answer /metrics with 404, as in docker-compose.yml) and ``nginx``
(deploy/nginx.conf) in front of the replicas. The same topology as docker-compose.yml; Grafana and
the trace backend (Jaeger) are not OS packages here, so they are not started.

Everything lives under one state directory (default ``.stack/``)::

    run/<component>.pid    pid, start time and command of each process started
    logs/<component>.log   its output
    config/                the generated configs (and the scaled rules with --time-scale)
    data/                  redis, Prometheus and Alertmanager data, nginx temp files
    alerts.jsonl           one line per notification the sink received

``up`` starts what is not running (a second ``up`` changes nothing; changed settings reach a
running component only after ``down``), ``down`` stops what the pid files name, and only processes
whose start time still matches (never a reused pid), ``status`` lists each component. Ports come
from ``STACK_<COMPONENT>_PORT`` (see :class:`Ports`).

``--time-scale N`` (for demos and the live test) divides every duration of the rules and of the
Alertmanager routes by N, and the gateways' health-check interval with them: see
:func:`scale_rules`, :func:`scale_alertmanager_timers` and :func:`scale_gateway_config`.
tests/e2e/test_observability_live.py starts the stack through this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = ROOT / ".stack"
DEFAULT_MASTER_KEY = "sk-gateway-local-dev"  # the documented local default (Makefile, README)
INSTALL_HINT = "run scripts/install-os-deps.sh (or `make os-deps`)"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# As in docker-compose.yml: the append-only file, synced every second; no RDB snapshots.
REDIS_PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no")
_NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class StackError(RuntimeError):
    """A component cannot be set up or started; the message says which and why."""


# --- durations and the time scale -----------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[((?:\d+(?:ms|[smhdwy]))+)(?::((?:\d+(?:ms|[smhdwy]))+))?\]")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``90s``, ``1h30m``, ``0m``)."""
    if not _DURATION.match(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds as ``Ns``, otherwise milliseconds (at least 1 ms)."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def scale_duration(text: str, factor: float) -> str:
    return format_duration(parse_duration(text) / factor)


def scale_ranges(expr: str, factor: float) -> str:
    """``expr`` with every range selector and subquery range divided by ``factor``
    (``[5m]`` -> ``[5s]`` for 60); nothing else in the expression changes."""

    def one(match: re.Match[str]) -> str:
        scaled = scale_duration(match.group(1), factor)
        step = match.group(2)
        return f"[{scaled}:{scale_duration(step, factor)}]" if step else f"[{scaled}]"

    return _RANGE.sub(one, expr)


def _check_factor(factor: float) -> None:
    if not factor >= 1:
        raise StackError(f"--time-scale must be a number >= 1, got {factor}")


def scale_rules(text: str, factor: float) -> str:
    """A Prometheus rule file with time compressed by ``factor``: each rule's ``for:`` and each
    range in its ``expr`` divided by ``factor`` (a group's ``interval`` too). Names, labels,
    annotations, thresholds and the rest of each expression are unchanged. For factor 60 an
    alert with ``for: 5m`` over ``rate(...[5m])`` becomes ``for: 5s`` over ``rate(...[5s])``."""
    _check_factor(factor)
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise StackError("a rule file must be a mapping with a list of groups")
    for group in data["groups"]:
        if "interval" in group:
            group["interval"] = scale_duration(str(group["interval"]), factor)
        for rule in group.get("rules", []):
            rule["expr"] = scale_ranges(str(rule["expr"]), factor)
            if "for" in rule:
                rule["for"] = scale_duration(str(rule["for"]), factor)
    return _dump(data)


def scale_alertmanager_timers(config: dict[str, Any], factor: float) -> None:
    """Divide ``group_wait``, ``group_interval`` and ``repeat_interval`` of every route, and
    ``global.resolve_timeout``, by ``factor`` (in place). Matchers, grouping and inhibition stay."""
    _check_factor(factor)

    def walk(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scale_duration(str(route[key]), factor)
        for child in route.get("routes", []):
            walk(child)

    walk(config["route"])
    settings = config.get("global") or {}
    if "resolve_timeout" in settings:
        settings["resolve_timeout"] = scale_duration(str(settings["resolve_timeout"]), factor)


LEAP_DAY_CRON = "0 0 29 2 *"
"""Midnight on February 29th: the jobs' time in a compressed (test) stack."""
JOB_NAMES = ("backup", "weekly_report", "monthly_report", "security_review", "retention")
"""gateway/config/jobs.py's (this script runs without the package: tests/unit/test_stack_script.py checks)."""


def scale_gateway_config(text: str, factor: float) -> str:
    """The gateway config with ``health_checks.interval_s`` divided by ``factor`` (at least 0.05 s,
    the smallest the config takes), so the scheduled checks keep pace with the scaled rules, and every
    scheduled job at :data:`LEAP_DAY_CRON`. Nothing else changes (``${ENV}`` references stay as they
    are: the gateway expands them)."""
    _check_factor(factor)
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise StackError("the gateway config must be a mapping")
    checks = config.get("health_checks")
    if isinstance(checks, dict):
        checks["interval_s"] = max(0.05, float(checks.get("interval_s", 60.0)) / factor)
    # Jobs run on wall-clock cron times, which cannot be compressed: a compressed run is a test, and a
    # job (a backup into data/, a report sent out) must not start in it by the clock. They stay
    # scheduled (their metrics and alerts live) on a leap day at midnight; runs by hand
    # (POST /admin/jobs/{name}/run) work as always.
    jobs = config.setdefault("jobs", {})
    if isinstance(jobs, dict):
        jobs["schedule"] = {name: {"cron": LEAP_DAY_CRON} for name in JOB_NAMES}
    return _dump(config)


def _dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))


# --- generated configs ----------------------------------------------------------------------


def alertmanager_config(text: str, sink_url: str, time_scale: float = 1.0) -> str:
    """alerts/alertmanager.yml with each receiver's integrations replaced by one webhook to
    ``<sink_url>/<receiver name>`` (``send_resolved: true``); routes, grouping and inhibition
    unchanged. The e-mail, Slack and paging placeholders have no server on a laptop: the sink
    shows what each receiver would have been sent."""
    config = yaml.safe_load(text)
    if not isinstance(config, dict) or not isinstance(config.get("receivers"), list) or "route" not in config:
        raise StackError("the Alertmanager config needs a route and a list of receivers")
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{sink_url.rstrip('/')}/{r['name']}", "send_resolved": True}]}
        for r in config["receivers"]
    ]
    if time_scale != 1:
        scale_alertmanager_timers(config, time_scale)
    return _dump(config)


def prometheus_config(
    text: str,
    *,
    gateways: Sequence[str],
    alertmanager: str,
    rule_files: Sequence[Path],
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> str:
    """deploy/prometheus.yml pointed at loopback: the ``gateway`` job scrapes ``gateways``
    (host:port), alerts go to ``alertmanager`` (host:port), rules from ``rule_files``."""
    config = yaml.safe_load(text)
    jobs = [j for j in config.get("scrape_configs", []) if str(j.get("job_name", "")).startswith("gateway")]
    if len(jobs) != 1:
        raise StackError("deploy/prometheus.yml must have exactly one scrape job named gateway...")
    jobs[0]["static_configs"] = [{"targets": list(gateways)}]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config["rule_files"] = [str(p) for p in rule_files]
    settings = config.setdefault("global", {})
    if scrape_interval is not None:
        settings["scrape_interval"] = scrape_interval
        # The default scrape timeout (10 s) may not exceed the interval.
        settings["scrape_timeout"] = format_duration(min(10.0, parse_duration(scrape_interval)))
    if evaluation_interval is not None:
        settings["evaluation_interval"] = evaluation_interval
    return _dump(config)


def nginx_config(text: str, *, listen: int, upstreams: Sequence[int], workdir: Path, as_root: bool) -> str:
    """deploy/nginx.conf on loopback: listens on 127.0.0.1:``listen``, upstream ``gateway-N:8080``
    becomes 127.0.0.1:``upstreams[N-1]``, and pid, logs and temp files go under ``workdir``."""
    found = re.findall(r"server\s+gateway-(\d+):8080", text)
    if sorted(int(n) for n in found) != list(range(1, len(upstreams) + 1)):
        raise StackError(f"deploy/nginx.conf must list upstreams gateway-1..{len(upstreams)}:8080, found {found}")
    text = re.sub(r"server\s+gateway-(\d+):8080", lambda m: f"server 127.0.0.1:{upstreams[int(m[1]) - 1]}", text)
    text, listens = re.subn(r"listen\s+8080;", f"listen 127.0.0.1:{listen};", text)
    if listens != 1 or not re.search(r"^http\s*\{", text, re.M):
        raise StackError("deploy/nginx.conf must have one `listen 8080;` inside an http block")
    temp = "".join(f"  {name}_temp_path {workdir / ('tmp_' + name)};\n" for name in _NGINX_TEMP_DIRS)
    http_head = f"http {{\n  access_log {workdir / 'access.log'};\n{temp}"
    text = re.sub(r"^http\s*\{\n", lambda _: http_head, text, count=1, flags=re.M)
    head = (
        "# generated by scripts/stack.py from deploy/nginx.conf\n"
        f"daemon off;\n{'user root;' if as_root else ''}\n"
        f"pid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} warn;\n"
    )
    return head + text


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    """Loopback ports; each can be set with ``STACK_<NAME>_PORT`` (e.g. ``STACK_NGINX_PORT``)."""

    nginx: int = 8080
    gateway_1: int = 8081
    gateway_2: int = 8082
    gateway_1_metrics: int = 9464  # each gateway's /metrics, as in docker-compose.yml (METRICS_PORT)
    gateway_2_metrics: int = 9465
    mock: int = 8090
    redis: int = 6380  # not 6379: leaves a system redis-server alone
    prometheus: int = 9090
    alertmanager: int = 9093
    sink: int = 9095  # where alerts/alertmanager.yml's webhook placeholders point

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        values: dict[str, int] = {}
        for f in fields(cls):
            name = f"STACK_{f.name.upper()}_PORT"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
            values[f.name] = int(raw)
        ports = cls(**values)
        taken = [p for p in ports.as_dict().values()]
        if len(set(taken)) != len(taken):
            raise StackError(f"two components share a port: {ports.as_dict()}")
        return ports

    def as_dict(self) -> dict[str, int]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = DEFAULT_STATE_DIR
    ports: Ports = field(default_factory=Ports)
    master_key: str = DEFAULT_MASTER_KEY
    python: str = sys.executable
    gateway_config: Path = ROOT / "config" / "gateway.yaml"
    scrape_interval: str | None = None
    """None: deploy/prometheus.yml's own (15 s)."""
    evaluation_interval: str | None = None
    time_scale: float = 1.0
    sink_url: str | None = None
    """Where Alertmanager delivers; None starts the stack's own sink on ``ports.sink``."""


# --- processes ------------------------------------------------------------------------------


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def find_binary(*names: str, package: str) -> str:
    """The first of ``names`` on PATH (or in /usr/sbin, /usr/bin); StackError naming the package."""
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)),
            None,
        )
        if found:
            return found
    raise StackError(f"{names[0]} is not installed (Debian package {package}): {INSTALL_HINT}")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return None if after[0] == "Z" else after[19]


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    port: int
    ready: Callable[[], bool]
    url: str
    env: dict[str, str] | None = None
    prepare: Callable[[], None] | None = None
    """Writes its config (and checks it) just before the start."""


@dataclass
class Running:
    pid: int
    start_time: str
    argv: list[str]


class Stack:
    """The stack's components under one state directory (see the module docstring)."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.ports = settings.ports
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # --- where things are -------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.as_dict()[name]}"

    @property
    def gateway_url(self) -> str:
        """The front door: nginx."""
        return self.url("nginx")

    @property
    def sink_url(self) -> str:
        return self.settings.sink_url or self.url("sink")

    def path(self, *parts: str) -> Path:
        return self.state.joinpath(*parts)

    # --- the components -----------------------------------------------------------------------

    def components(self) -> list[list[Component]]:
        """The components in start waves: each wave starts after the previous one is ready."""
        s, p, py = self.settings, self.ports, self.settings.python
        redis = find_binary("redis-server", package="redis-server")
        gateway_env = {
            **os.environ,
            "GATEWAY_MASTER_KEY": s.master_key,
            "GATEWAY_STATE_BACKEND": "redis",
            "REDIS_URL": f"redis://127.0.0.1:{p.redis}/0",
            "MOCK_BASE_URL": self.url("mock"),
        }

        config = s.gateway_config if s.time_scale == 1 else self.path("config", "gateway.yaml")

        def write_config() -> None:
            if config != s.gateway_config:
                config.write_text(scale_gateway_config(s.gateway_config.read_text(), s.time_scale))

        def gateway(n: int, port: int, metrics_port: int) -> Component:
            argv = [py, "-m", "gateway", "serve", "--config", str(config)]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
            url = f"http://127.0.0.1:{port}"
            env = {
                **gateway_env,
                "METRICS_PORT": str(metrics_port),  # /metrics there; the client port answers 404
                # traces to the sink (the stack's trace backend), exported within a second
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.sink_url,
                "OTEL_SERVICE_NAME": f"gateway-{n}",
                "OTEL_BSP_SCHEDULE_DELAY": "1000",
            }
            return Component(
                f"gateway-{n}", argv, port, lambda: _http_ok(url + "/ready"), url, env, prepare=write_config
            )

        redis_dir = self.path("data", "redis")
        first = [
            Component(
                "redis",
                [redis, "--port", str(p.redis), "--bind", "127.0.0.1", "--dir", str(redis_dir), *REDIS_PERSISTENCE],
                p.redis,
                lambda: _redis_pong(p.redis),
                f"redis://127.0.0.1:{p.redis}/0",
                prepare=lambda: redis_dir.mkdir(parents=True, exist_ok=True),
            )
        ]
        second = [
            Component(
                "mock",
                [py, "-m", "gateway", "mock", "--host", "127.0.0.1", "--port", str(p.mock)],
                p.mock,
                lambda: _http_ok(self.url("mock") + "/_mock/health"),
                self.url("mock"),
            ),
            gateway(1, p.gateway_1, p.gateway_1_metrics),
            gateway(2, p.gateway_2, p.gateway_2_metrics),
            self._alertmanager(),
        ]
        if s.sink_url is None:
            out = self.path("alerts.jsonl")
            second.append(
                Component(
                    "sink",
                    [py, "-m", "scripts.stack_sink", "--port", str(p.sink), "--out", str(out)],
                    p.sink,
                    lambda: _http_ok(self.url("sink") + "/"),
                    self.url("sink"),
                )
            )
        return [first, second, [self._prometheus(), self._nginx()]]

    def _alertmanager(self) -> Component:
        exe = find_binary("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
        conf, data = self.path("config", "alertmanager.yml"), self.path("data", "alertmanager")
        port = self.ports.alertmanager

        def prepare() -> None:
            data.mkdir(parents=True, exist_ok=True)
            source = (ROOT / "alerts" / "alertmanager.yml").read_text()
            conf.write_text(alertmanager_config(source, self.sink_url, self.settings.time_scale))

        argv = [exe, f"--config.file={conf}", f"--storage.path={data}", f"--web.listen-address=127.0.0.1:{port}"]
        argv.append("--cluster.listen-address=")  # a single instance: no gossip port
        url = self.url("alertmanager")
        return Component("alertmanager", argv, port, lambda: _http_ok(url + "/-/ready"), url, prepare=prepare)

    def rule_files(self) -> list[Path]:
        """The rule files Prometheus loads: alerts/rules as they are, or scaled copies."""
        sources = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
        if self.settings.time_scale == 1:
            return sources
        return [self.path("config", "rules", f.name) for f in sources]

    def _prometheus(self) -> Component:
        exe = find_binary("prometheus", package="prometheus")
        s, conf, data = self.settings, self.path("config", "prometheus.yml"), self.path("data", "prometheus")
        port = self.ports.prometheus

        def prepare() -> None:
            data.mkdir(parents=True, exist_ok=True)
            if s.time_scale != 1:
                rules = self.path("config", "rules")
                rules.mkdir(parents=True, exist_ok=True)
                for source in sorted((ROOT / "alerts" / "rules").glob("*.yml")):
                    (rules / source.name).write_text(scale_rules(source.read_text(), s.time_scale))
            text = prometheus_config(
                (ROOT / "deploy" / "prometheus.yml").read_text(),
                gateways=[f"127.0.0.1:{self.ports.gateway_1_metrics}", f"127.0.0.1:{self.ports.gateway_2_metrics}"],
                alertmanager=f"127.0.0.1:{self.ports.alertmanager}",
                rule_files=self.rule_files(),
                scrape_interval=s.scrape_interval,
                evaluation_interval=s.evaluation_interval,
            )
            conf.write_text(text)
            promtool = shutil.which("promtool")
            if promtool is not None:  # the same package ships it; a clear error beats a dead server
                checked = subprocess.run(
                    [promtool, "check", "config", str(conf)], capture_output=True, text=True, timeout=60, check=False
                )
                if checked.returncode != 0:
                    raise StackError(f"promtool rejected {conf}:\n{checked.stdout}{checked.stderr}")

        argv = [exe, f"--config.file={conf}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}"]
        url = self.url("prometheus")
        return Component("prometheus", argv, port, lambda: _http_ok(url + "/-/ready"), url, prepare=prepare)

    def _nginx(self) -> Component:
        exe = find_binary("nginx", package="nginx-light")
        conf, work, port = self.path("config", "nginx.conf"), self.path("data", "nginx"), self.ports.nginx

        def prepare() -> None:
            for name in _NGINX_TEMP_DIRS:
                (work / f"tmp_{name}").mkdir(parents=True, exist_ok=True)
            text = nginx_config(
                (ROOT / "deploy" / "nginx.conf").read_text(),
                listen=port,
                upstreams=[self.ports.gateway_1, self.ports.gateway_2],
                workdir=work,
                as_root=os.geteuid() == 0,
            )
            conf.write_text(text)
            checked = subprocess.run(
                [exe, "-t", "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if checked.returncode != 0:
                raise StackError(f"nginx -t rejected {conf}:\n{checked.stderr}")

        argv = [exe, "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")]
        url = self.url("nginx")
        return Component("nginx", argv, port, lambda: _http_ok(url + "/health"), url, prepare=prepare)

    # --- pid files ----------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.path("run", f"{name}.pid")

    def running(self, name: str) -> Running | None:
        """The process started for ``name``, if it still runs (a stale pid file is removed)."""
        pid_file = self._pid_file(name)
        try:
            data = json.loads(pid_file.read_text())
            record = Running(int(data["pid"]), str(data["start_time"]), list(data["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if _start_time(record.pid) != record.start_time:
            self._reap(name, record.pid)
            pid_file.unlink(missing_ok=True)
            return None
        return record

    def _reap(self, name: str, pid: int) -> None:
        child = self._children.pop(name, None)
        if child is not None:
            child.wait()
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    # --- up, down, status ---------------------------------------------------------------------

    def up(self, log: TextIO | None = None) -> list[str]:
        """Start every component not running yet, wave by wave; the names started.
        On a failure, what this call started is stopped again and StackError says why."""
        _check_factor(self.settings.time_scale)
        waves = self.components()  # finds every binary first: nothing starts if one is missing
        for sub in ("run", "logs", "config", "data"):
            self.path(sub).mkdir(parents=True, exist_ok=True)
        started: list[str] = []
        try:
            for wave in waves:
                pending = [c for c in wave if self.running(c.name) is None]
                for component in pending:
                    self._start(component)
                    started.append(component.name)
                for component in pending:
                    self._wait_ready(component)
                    if log is not None:
                        print(f"  {component.name:<13} {component.url}", file=log)
        except BaseException:
            self.down(only=started)
            raise
        return started

    def _start(self, c: Component) -> None:
        if not port_free(c.port):
            raise StackError(
                f"{c.name}: port {c.port} on 127.0.0.1 is in use; stop what listens there or set "
                f"STACK_{c.name.replace('-', '_').upper()}_PORT"
            )
        if c.prepare is not None:
            c.prepare()
        with self.path("logs", f"{c.name}.log").open("ab") as out:
            proc = subprocess.Popen(
                c.argv,
                cwd=ROOT,
                env=c.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `stack.sh up`; not hit by the terminal's Ctrl-C
            )
        self._children[c.name] = proc
        start_time = _start_time(proc.pid)
        record = {"pid": proc.pid, "start_time": start_time, "argv": c.argv}
        self._pid_file(c.name).write_text(json.dumps(record) + "\n")

    def _wait_ready(self, c: Component) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not c.ready():
            if self.running(c.name) is None:
                raise StackError(f"{c.name} exited at start; its log:\n{self.log_tail(c.name)}")
            if time.monotonic() > deadline:
                raise StackError(f"{c.name} not ready in {READY_TIMEOUT_S:.0f} s; its log:\n{self.log_tail(c.name)}")
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.path("logs", f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def names(self) -> list[str]:
        names = ["redis", "mock", "gateway-1", "gateway-2", "alertmanager", "prometheus", "nginx"]
        return [*names, "sink"] if self.settings.sink_url is None else names

    def down(self, only: Sequence[str] | None = None) -> list[str]:
        """Stop the components (all, or ``only``) in reverse start order: SIGTERM, then SIGKILL
        after STOP_TIMEOUT_S. Only pids whose start time matches their pid file are signalled."""
        stopped: list[str] = []
        for name in reversed(self.names()):
            if only is not None and name not in only:
                continue
            record = self.running(name)
            if record is None:
                continue
            self._signal(record, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.running(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            record = self.running(name)
            if record is not None:
                self._signal(record, signal.SIGKILL)
                while self.running(name) is not None:
                    time.sleep(0.05)
            stopped.append(name)
        return stopped

    @staticmethod
    def _signal(record: Running, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)

    def status(self) -> list[tuple[str, Running | None, str]]:
        urls = {
            "redis": f"redis://127.0.0.1:{self.ports.redis}/0",
            **{n: self.url(n) for n in self.names() if n != "redis"},
        }
        return [(name, self.running(name), urls[name]) for name in self.names()]


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/stack.sh",
        description="The gateway's whole stack from OS packages on loopback (Grafana and Jaeger excepted).",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .stack/")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="divide the rules' for:/range durations and Alertmanager's timers by this (demo: 60 makes a "
        "minute a second); default 1, the real rules",
    )
    parser.add_argument("--scrape-interval", default=None, help="Prometheus scrape and rule evaluation interval")
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> StackSettings:
    return StackSettings(
        state_dir=args.state_dir,
        ports=Ports.from_env(env),
        master_key=env.get("GATEWAY_MASTER_KEY") or DEFAULT_MASTER_KEY,
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.scrape_interval,
        time_scale=args.time_scale,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.scrape_interval is not None:
            parse_duration(args.scrape_interval)
        stack = Stack(settings_from(args, os.environ if env is None else env))
        if args.command == "up":
            print(f"stack: starting under {stack.state}")
            started = stack.up(log=sys.stdout)
            print(f"stack: up ({', '.join(started) or 'everything was already running'})")
            print(f"gateway (nginx): {stack.gateway_url}/v1   master key: {stack.settings.master_key}")
            print(f"Prometheus: {stack.url('prometheus')}   Alertmanager: {stack.url('alertmanager')}")
            print(f"notifications: {stack.path('alerts.jsonl')}   logs: {stack.path('logs')}")
            print("Grafana is not started (no OS package): see README, 'Run the whole stack locally'.")
            return 0
        if args.command == "down":
            stopped = stack.down()
            print(f"stack: stopped {', '.join(stopped) or 'nothing (nothing was running)'}")
            return 0
        rows = stack.status()
        for name, running, url in rows:
            state = f"running (pid {running.pid})" if running else "stopped"
            print(f"{name:<13} {state:<22} {url}")
        return 0 if all(r for _, r, _ in rows) else 3
    except (StackError, ValueError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
