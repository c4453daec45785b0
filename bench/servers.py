"""``python -m bench.servers``: does another ASGI server raise the floor?

The performance issue asks whether another ASGI server or event-loop setup raises the floor
itself (the throughput of the floor app, ``bench.clients_app``: uvicorn + uvloop + httptools,
one shared aiohttp session, one process pinned to core 0). This runs that app under uvicorn
(as ``bench.ratio`` does) and under granian (Rust HTTP server, ASGI interface; one worker,
uvloop, HTTP/1.1, its runtime single-threaded), in interleaved rounds, whole answers and
streams at 16 connections against the bench nginx, and prints each round's requests/s and
CPU per request (all the server's processes and threads), their medians and granian's share
of uvicorn's. granian is the lock's ``servers`` group (``uv sync --locked --group test
--group servers``), not needed to run or test the gateway.

    python -m bench.servers [--rounds 5] [--duration 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.clients_app import SERVERS, granian_missing
from bench.floor import FloorServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals, tree_cpu_seconds
from bench.rounds import Rounds, order
from bench.scenarios import Scenario, scenarios
from bench.wrk import run_wrk

BASE = SERVERS[0]


LOADED = ("json", "sse")
"""The standing check's scenarios at 16 connections (the one-connection latency is not the server's question)."""


def measure(server: FloorServer, name: str, sc: Scenario, pinning: Pinning, seconds: int) -> tuple[float, float]:
    """Requests/s of ``server`` in ``sc`` and its CPU per request meanwhile (µs)."""
    before = tree_cpu_seconds(server.pid)
    result = run_wrk(
        server.chat_url,
        scenario=sc.name,
        target=name,
        connections=sc.connections,
        duration_s=seconds,
        pinning=pinning,
        model="bench-json",
        stream=sc.stream,
    )
    after = tree_cpu_seconds(server.pid)
    if result.has_errors:
        raise BenchError(f"{name} {sc.name}: {result.error_summary()}")
    if before is None or after is None:
        raise BenchError(f"{name}: /proc cannot tell the server's CPU time")
    return result.rps, (after - before) / max(result.requests, 1) * 1e6


def run(args: argparse.Namespace, out: Callable[[str], object] = print) -> dict[str, Rounds]:
    pinning = Pinning.detect()
    out(f"bench.servers: {pinning.reason}")
    shapes = [sc for sc in scenarios(args.connections) if sc.name in LOADED]
    table: dict[str, Rounds] = {}
    for sc in shapes:
        table[sc.name] = Rounds({s: [] for s in SERVERS}, BASE, {})
        table[sc.name + "-cpu"] = Rounds({s: [] for s in SERVERS}, BASE, {}, lower_is_better=True)
    with tempfile.TemporaryDirectory(prefix="gw-servers-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        nginx = stack.enter_context(NginxServer(work, pinning))
        json_url, sse_url = nginx.url("openai", stream=False), nginx.url("openai", stream=True)
        servers = {
            s: stack.enter_context(FloorServer(work, pinning, json_url=json_url, sse_url=sse_url, server=s))
            for s in SERVERS
        }
        for name, server in servers.items():  # warm-up, not counted
            for sc in shapes:
                measure(server, name, sc, pinning, 1)
        for i in range(args.rounds):
            for sc in shapes:
                for name in order(i, SERVERS):
                    rps, cpu_us = measure(servers[name], name, sc, pinning, args.duration)
                    table[sc.name].rps[name].append(rps)
                    table[sc.name + "-cpu"].rps[name].append(cpu_us)
            out(f"round {i + 1}: " + ", ".join(f"{sc.name} " + _cells(table[sc.name], i) for sc in shapes))
    for sc in shapes:
        out(f"\n{sc.name}: the floor app, {sc.description}")
        out("\n".join(table[sc.name].lines()))
        out(f"\n{sc.name}: the floor app's CPU per request (µs, all its processes and threads)")
        out("\n".join(table[sc.name + "-cpu"].lines()))
    for sc in shapes:
        share = table[sc.name].median_ratio(SERVERS[1])
        out(f"{sc.name}: granian serves {share:.1%} of uvicorn's requests/s (median of the per-round ratios)")
    return table


def _cells(rounds: Rounds, i: int) -> str:
    return " ".join(f"{name} {values[i]:,.0f}/s" for name, values in rounds.rps.items())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--duration", type=int, default=3, help="seconds per server, scenario and round (default 3)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    args = p.parse_args(argv)
    for name in ("rounds", "duration", "connections"):
        if getattr(args, name) < 1:
            print(f"bench.servers: --{name} must be at least 1", file=sys.stderr)
            return 2
    missing = granian_missing()
    if missing is not None:
        print(f"bench.servers: {missing}", file=sys.stderr)
        return 2
    exit_cleanly_on_signals()
    try:
        run(args)
    except BenchError as exc:
        print(f"bench.servers: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
