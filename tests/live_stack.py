"""Helpers for the live observability test (tests/e2e/test_observability_live.py): the stack of
scripts/stack.py on free ports with time compressed, the Prometheus and Alertmanager HTTP APIs,
the dashboards' queries as Grafana would send them, and bounded background traffic."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.stack import Ports, Stack, StackSettings
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
MASTER_KEY = "sk-live-stack-master-0001"
# One minute of the rules (for:, ranges) and of Alertmanager's timers becomes one second.
TIME_SCALE = 60.0
SCRAPE_INTERVAL = "1s"
# What the dashboards' variables become, as Grafana sends them: the "All" value (allValue ".*")
# for every template variable, $__rate_interval for a 1 s scrape interval (Grafana: at least four
# scrape intervals), $__range the whole run.
ALL = ".*"
RATE_INTERVAL = "10s"


def live_stack(state_dir: Path, sink_url: str) -> Stack:
    """The stack of scripts/stack.py on free ports, scraping and evaluating every second,
    rules and Alertmanager timers scaled by TIME_SCALE, notifications to ``sink_url``."""
    names = [f.replace("-", "_") for f in Ports().as_dict()]
    ports = Ports(**dict(zip(names, free_ports(len(names)), strict=True)))
    settings = StackSettings(
        state_dir=state_dir,
        ports=ports,
        master_key=MASTER_KEY,
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
        time_scale=TIME_SCALE,
        sink_url=sink_url,
    )
    return Stack(settings)


# --- Prometheus and Alertmanager APIs --------------------------------------------------------


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=20, trust_env=False)

    def _data(self, path: str, params: dict[str, str | float]) -> Any:
        response = self.http.get(path, params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {response.status_code} {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        result: list[dict[str, Any]] = self._data("/api/v1/query", params)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        result: list[dict[str, Any]] = self._data("/api/v1/query_range", params)["result"]
        return result

    def label_values(self, label: str, metric: str) -> list[str]:
        values: list[str] = self._data(f"/api/v1/label/{label}/values", {"match[]": metric})
        return values

    def alert_states(self) -> dict[str, str]:
        """alertname -> its most advanced state now (firing over pending)."""
        states: dict[str, str] = {}
        for alert in self._data("/api/v1/alerts", {})["alerts"]:
            name = alert["labels"]["alertname"]
            if states.get(name) != "firing":
                states[name] = alert["state"]
        return states

    def close(self) -> None:
        self.http.close()


class Alertmanager:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10, trust_env=False)

    def alerts(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/v2/alerts")
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def inhibited(self) -> dict[str, list[str]]:
        """alertname -> the alertnames that inhibit it (only alerts inhibited now)."""
        alerts = self.alerts()
        by_fingerprint = {a["fingerprint"]: a["labels"]["alertname"] for a in alerts}
        return {
            a["labels"]["alertname"]: [by_fingerprint.get(f, f) for f in a["status"]["inhibitedBy"]]
            for a in alerts
            if a["status"]["inhibitedBy"]
        }

    def close(self) -> None:
        self.http.close()


# --- dashboards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    board: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.board, self.panel, self.ref)


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def substitute(expr: str, range_s: int) -> str:
    """``expr`` as Grafana sends it: template variables at "All", the built-in intervals."""
    builtins = {"__rate_interval": RATE_INTERVAL, "__range": f"{range_s}s"}

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return builtins.get(name, ALL)

    return _VARIABLE.sub(one, expr)


def dashboard_queries() -> Iterator[PanelQuery]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield PanelQuery(
                    path.name, panel["title"], target["refId"], target["expr"], bool(target.get("instant"))
                )


def dashboard_variables() -> Iterator[tuple[str, str, str, str]]:
    """(dashboard, variable, metric, label) of each ``label_values(metric, label)`` variable."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
            assert match, f"{path.name}: variable {variable['name']} is not label_values(metric, label)"
            yield path.name, variable["name"], match.group(1), match.group(2)


POSTGRES_METRICS = ("gateway_state_postgres_", "gateway_request_detail_", "gateway_retention_")
"""Metrics exported only on the postgres state backend (its pool, the request-detail tier)."""


def postgres_panels() -> list[PanelQuery]:
    """The dashboard queries that read only PostgreSQL backend metrics: empty on the live stack
    (the redis shape), checked by tests/e2e/test_postgres_live.py on a gateway on PostgreSQL."""
    return [q for q in dashboard_queries() if any(m in q.expr for m in POSTGRES_METRICS)]


def has_value(result: list[dict[str, Any]]) -> bool:
    """True when a query result holds at least one sample that is a number (not NaN)."""
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(v)) for _, v in samples):
            return True
    return False


# --- traffic ---------------------------------------------------------------------------------


def chat(model: str, text: str = "live observability", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


class Traffic:
    """Worker threads sending requests until :meth:`stop`; each worker waits ``pause_s`` between
    requests and the workers start ``stagger_s`` apart (so slow answers complete steadily)."""

    def __init__(
        self,
        base_url: str,
        send: Callable[[httpx.Client, int], None],
        *,
        workers: int,
        pause_s: float = 0.0,
        stagger_s: float = 0.0,
        timeout_s: float = 30.0,
    ) -> None:
        self._stop = threading.Event()
        self._send = send
        self._pause = pause_s
        self._stagger = stagger_s
        self._base_url = base_url
        self._timeout = timeout_s
        self.sent = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def _run(self, n: int) -> None:
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=self._base_url, timeout=self._timeout, headers=headers, trust_env=False) as client:
            if self._stop.wait(n * self._stagger):
                return
            i = 0
            while not self._stop.is_set():
                try:
                    self._send(client, n + i)
                except httpx.HTTPError as exc:  # the stack going down under a slow request
                    with self._lock:
                        self.failures.append(repr(exc))
                with self._lock:
                    self.sent += 1
                i += 1
                self._stop.wait(self._pause)

    def stop(self, join_s: float = 0.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + join_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
