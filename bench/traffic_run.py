"""``--traffic``: after the bare gateway, the same load through the gateway with
traffic control on, once per state backend (embedded SQLite, then Redis),
sent with a client key instead of the master key."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS, GatewayServer, Probe, probe
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, log_tail
from bench.redis_proc import REDIS_SERVER, RedisServer
from bench.scenarios import Scenario
from bench.traffic import TrafficCheck, check_traffic, embedded_state, provision, redis_state, traffic_config
from bench.traffic_report import EMBEDDED, REDIS
from bench.wrk import WrkResult, run_wrk

Out = Callable[[str], None]
Line = Callable[[WrkResult], str]


@dataclass(frozen=True)
class Load:
    """What every measured run shares."""

    scenarios: Sequence[Scenario]
    duration_s: int
    connections: int
    warmup_s: int
    gateway_args: Sequence[str]
    master_key: str


@dataclass
class TrafficOutcome:
    runs: list[WrkResult] = field(default_factory=list)
    warmups: list[WrkResult] = field(default_factory=list)
    checks: list[TrafficCheck] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return (
            any(r.has_errors for r in (*self.runs, *self.warmups))
            or any(not c.ok for c in self.checks)
            or any(not p.ok for p in self.probes)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [r.to_json() for r in self.runs],
            "warmups": [r.to_json() for r in self.warmups],
            "checks": [c.to_json() for c in self.checks],
            "probes": [p.to_json() for p in self.probes],
            "configs": self.configs,
        }


def _measure(
    gw: GatewayServer, backend: str, load: Load, pinning: Pinning, result: TrafficOutcome, out: Out, line: Line
) -> None:
    def wrk(scenario: str, alias: str, stream: bool, conns: int, secs: int, temperature: int | None) -> WrkResult:
        return run_wrk(
            gw.chat_url,
            scenario=scenario,
            target=backend,
            connections=conns,
            duration_s=secs,
            pinning=pinning,
            model=alias,
            stream=stream,
            api_key=gw.key,
            temperature=temperature,
        )

    for alias, stream in ((JSON_ALIAS, False), (SSE_ALIAS, True)):
        result.warmups.append(wrk(f"warmup-{alias}", alias, stream, load.connections, load.warmup_s, None))
        out(line(result.warmups[-1]))
    for sc in load.scenarios:
        result.runs.append(wrk(sc.name, sc.alias, sc.stream, sc.connections, load.duration_s, sc.temperature))
        out(line(result.runs[-1]))


def _backend(
    backend: str,
    state: dict[str, Any],
    workdir: Path,
    nginx: NginxServer,
    load: Load,
    pinning: Pinning,
    result: TrafficOutcome,
    out: Out,
    line: Line,
) -> None:
    with GatewayServer(
        workdir,
        pinning,
        json_base_url=f"{nginx.base}/json/v1",
        sse_base_url=f"{nginx.base}/sse/v1",
        key=load.master_key,
        extra_args=load.gateway_args,
        name=f"gateway-{backend}",
        transform=lambda bare: traffic_config(bare, state=state),
    ) as gw:
        result.configs[backend] = gw.config
        out(f"bench: traffic control on, {backend} backend: gateway pid {gw.pid} on {gw.base}")
        gw.key = provision(gw.base, gw.master_key)  # the load uses the client key from here on
        check = check_traffic(gw.chat_url, gw.key, backend)
        result.checks.append(check)
        for text in check.lines():
            out(text)
        stream_probe = probe(gw.chat_url, key=gw.key, model=SSE_ALIAS, stream=True)
        result.probes.append(stream_probe)
        if not check.ok or not stream_probe.ok:
            problem = "; ".join([*check.problems, *([stream_probe.problem] if not stream_probe.ok else [])])
            raise BenchError(
                f"traffic control is not working with the {backend} backend: {problem}\n{log_tail(gw.log_path)}"
            )
        _measure(gw, backend, load, pinning, result, out, line)
        if gw.proc is not None and gw.proc.poll() is not None:
            out(f"!! the gateway ({backend}) exited during the run (status {gw.proc.returncode})")


def preflight() -> None:
    """Fail before any measurement, not after the bare gateway's."""
    if shutil.which(REDIS_SERVER) is None:
        raise BenchError(
            "--traffic needs redis-server (make bench installs it: scripts/install-os-deps.sh); "
            "or run with --no-traffic"
        )


def run_traffic(
    workdir: Path, nginx: NginxServer, load: Load, pinning: Pinning, out: Out, line: Line
) -> TrafficOutcome:
    """Embedded, then Redis (its own redis-server, pinned to the load core)."""
    result = TrafficOutcome()
    _backend(EMBEDDED, embedded_state(workdir), workdir, nginx, load, pinning, result, out, line)
    with RedisServer(workdir, pinning) as redis:
        out(f"bench: redis-server pid {redis.proc.pid if redis.proc else '?'} on {redis.url}")
        _backend(REDIS, redis_state(redis.url), workdir, nginx, load, pinning, result, out, line)
    return result
