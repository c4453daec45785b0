"""One benchmark run: nginx baseline, then the gateway in front of the same nginx."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report, traffic_report
from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS, GatewayServer, Probe, master_key, probe
from bench.nginx import NginxServer, nginx_version
from bench.procs import Pinning
from bench.report import GATEWAY, NGINX, MemoryReport
from bench.scenarios import CACHED_SCENARIO, SCENARIO_NAMES, Scenario, cached_scenario, scenarios, selected
from bench.soak import SoakResult, run_soak
from bench.traffic_run import Load, TrafficOutcome, preflight, run_traffic
from bench.wrk import WrkResult, run_wrk, wrk_version

__all__ = ["SCENARIO_NAMES", "Options", "Outcome", "run"]

Out = Callable[[str], None]


@dataclass
class Options:
    duration_s: int = 10
    connections: int = 16
    only: Sequence[str] = ()  # scenario names; "soak" alone skips the scenarios
    soak: int = 0
    soak_max_s: float = 900.0
    warmup_s: int = 3
    gateway_args: Sequence[str] = ()
    json_out: Path | None = None
    traffic: bool = False  # then again with traffic control on (embedded, then redis)


@dataclass
class Outcome:
    runs: list[WrkResult] = field(default_factory=list)
    warmups: list[WrkResult] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    memory: MemoryReport | None = None
    soak: SoakResult | None = None
    traffic: TrafficOutcome | None = None

    @property
    def failed(self) -> bool:
        measured = [*self.runs, *self.warmups]
        return (
            any(r.has_errors for r in measured)
            or any(not p.ok for p in self.probes)
            or bool(self.soak and self.soak.errors)
            or bool(self.traffic and self.traffic.failed)
        )

    @property
    def all_runs(self) -> list[WrkResult]:
        return [*self.runs, *(self.traffic.runs if self.traffic else [])]


def _selected(opts: Options) -> list[Scenario]:
    return selected(scenarios(opts.connections), opts.only)


def traffic_scenarios(opts: Options) -> list[Scenario]:
    """The bare gateway's scenarios, plus the cache-hit one (also when ``--only`` names it)."""
    extra = [cached_scenario(opts.connections)] if not opts.only or CACHED_SCENARIO in opts.only else []
    return [*_selected(opts), *extra]


def _line(res: WrkResult) -> str:
    flag = f"  !! ERRORS: {res.error_summary()}" if res.has_errors else ""
    return (
        f"  {res.scenario:<17} {res.target:<8} {res.rps:>10,.0f} req/s  p50 {res.latency_ms['p50']:.3f} ms"
        f"  p99 {res.latency_ms['p99']:.3f} ms{flag}"
    )


def _probe_all(gw: GatewayServer, outcome: Outcome, out: Out) -> None:
    """One request per alias, so that a broken gateway shows its answer, not just counts."""
    for alias, stream in ((JSON_ALIAS, False), (SSE_ALIAS, True)):
        p = probe(gw.chat_url, key=gw.key, model=alias, stream=stream)
        outcome.probes.append(p)
        if not p.ok:
            out(f"!! probe {alias} (stream={stream}): {p.problem}; content-type {p.content_type!r}")
            out(f"!!   body: {p.body_sample[:400]}")


def _gateway_phase(gw: GatewayServer, opts: Options, pinning: Pinning, outcome: Outcome, out: Out) -> None:
    def load(scenario: str, alias: str, stream: bool, connections: int, duration_s: int) -> WrkResult:
        return run_wrk(
            gw.chat_url,
            scenario=scenario,
            target=GATEWAY,
            connections=connections,
            duration_s=duration_s,
            pinning=pinning,
            model=alias,
            stream=stream,
            api_key=gw.key,
        )

    out(f"bench: gateway pid {gw.pid} on {gw.base}")
    start_mem = gw.mem()
    _probe_all(gw, outcome, out)
    for alias, stream in ((JSON_ALIAS, False), (SSE_ALIAS, True)):
        outcome.warmups.append(load(f"warmup-{alias}", alias, stream, opts.connections, opts.warmup_s))
        out(_line(outcome.warmups[-1]))
    warm_mem = gw.mem()
    for sc in _selected(opts):
        outcome.runs.append(load(sc.name, sc.alias, sc.stream, sc.connections, opts.duration_s))
        out(_line(outcome.runs[-1]))
    if opts.soak > 0:
        outcome.soak = run_soak(
            gw,
            pinning=pinning,
            requests=opts.soak,
            connections=opts.connections,
            max_s=opts.soak_max_s,
            warmup_s=opts.warmup_s,
            out=out,
        )
    outcome.memory = MemoryReport.from_samples(start_mem, warm_mem, gw.mem())
    if gw.proc is not None and gw.proc.poll() is not None:
        out(f"!! the gateway exited during the run (status {gw.proc.returncode})")


def run(opts: Options, out: Out = print) -> Outcome:
    """nginx direct for each scenario, then the gateway (probe, warm-up, scenarios, soak),
    then with ``traffic`` the gateway with traffic control on, per state backend."""
    if opts.traffic and traffic_scenarios(opts):
        preflight()
    pinning = Pinning.detect()
    out(f"bench: {pinning.reason}")
    out(f"bench: {nginx_version()}, {wrk_version()}, {opts.duration_s}s per run")
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, NginxServer(Path(tmp), pinning) as nginx:
        out(f"bench: nginx on {nginx.base}")
        for sc in _selected(opts):
            url = nginx.sse_url if sc.stream else nginx.json_url
            outcome.runs.append(
                run_wrk(
                    url,
                    scenario=sc.name,
                    target=NGINX,
                    connections=sc.connections,
                    duration_s=opts.duration_s,
                    pinning=pinning,
                    model=sc.alias,
                    stream=sc.stream,
                )
            )
            out(_line(outcome.runs[-1]))
        with GatewayServer(
            Path(tmp),
            pinning,
            json_base_url=f"{nginx.base}/json/v1",
            sse_base_url=f"{nginx.base}/sse/v1",
            key=master_key(),
            extra_args=opts.gateway_args,
        ) as gw:
            _gateway_phase(gw, opts, pinning, outcome, out)
        if opts.traffic and traffic_scenarios(opts):
            load = Load(
                traffic_scenarios(opts),
                opts.duration_s,
                opts.connections,
                opts.warmup_s,
                opts.gateway_args,
                master_key(),
            )
            outcome.traffic = run_traffic(Path(tmp), nginx, load, pinning, out, _line)
    out(report.summary(outcome.runs, outcome.memory))
    if outcome.traffic is not None:
        out("\ntraffic control on (client key; team, key and alias limits; budgets; prices; cache):")
        out(report.runs_table(outcome.traffic.runs))
        out(traffic_report.summary(outcome.all_runs))
    if outcome.soak is not None:
        out("")
        for text in outcome.soak.lines():
            out(text)
    if opts.json_out is not None:
        write_json(opts.json_out, opts, pinning, outcome)
        out(f"\nbench: results written to {opts.json_out}")
    return outcome


def write_json(path: Path, opts: Options, pinning: Pinning, outcome: Outcome) -> None:
    comps = report.comparisons(outcome.runs)
    data: dict[str, Any] = {
        "meta": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "python": platform.python_version(),
            "nginx": nginx_version(),
            "wrk": wrk_version(),
            "pinning": {"enabled": pinning.enabled, "reason": pinning.reason},
            "duration_s": opts.duration_s,
            "connections": opts.connections,
            "gateway_args": list(opts.gateway_args),
            "traffic": opts.traffic,
        },
        "runs": [r.to_json() for r in outcome.runs],
        "warmups": [r.to_json() for r in outcome.warmups],
        "probes": [p.to_json() for p in outcome.probes],
        "comparisons": [c.to_json() for c in comps],
        "added_latency_p50_1conn_ms": report.added_latency_one_conn(comps),
        "memory": outcome.memory.to_json() if outcome.memory else None,
        "soak": outcome.soak.to_json() if outcome.soak else None,
        "traffic": (
            {**outcome.traffic.to_json(), **traffic_report.to_json(outcome.all_runs)} if outcome.traffic else None
        ),
        "failed": outcome.failed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
