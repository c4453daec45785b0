"""``python -m bench.shaping``: what traffic shaping costs when nothing waits, as a ratio,
measured in interleaved rounds (the method of bench.ratio).

Two gateways run side by side on the server core, in front of the same nginx, each with
traffic control on (bench/traffic.py: embedded state, a gateway-wide concurrency cap that
the load never reaches, cache, budgets, per-alias limits, prices):

- ``plain``: ``queue.enabled: false`` and no routing rules;
- ``shaping``: the admission queue on, and routing rules on the measured alias that are
  evaluated on every request but never change it: a ``match`` on a header the load does
  not send, a ``budget_downgrade`` at 99 % of the team's budget (the load spends far less),
  and a ``time_window`` whose override is in force all day (applied when the config is
  built and by the timer, not per request).

Every round measures both back to back in a rotating order; the verdict is the median of
the per-round ratios shaping / plain (target >= 97 %: the traffic-shaping issue's "under 3 %"),
and the same for the gateway's CPU per request (all its threads, /proc schedstat; target
<= 1/0.97), which a neighbour taking the core moves less than requests/s.

    GATEWAY_MASTER_KEY=... python -m bench.shaping --rounds 9 --duration 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS, GatewayServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals
from bench.ratio import measure
from bench.rounds import Rounds, order
from bench.scenarios import scenarios
from bench.traffic import provision, traffic_config

VARIANTS = ("plain", "shaping")
TARGET = 0.97


def rules(alias: str, other: str) -> list[dict[str, Any]]:
    """Rules on ``alias`` that hold no request of the load (see the module docstring)."""
    return [
        {
            "name": "never-sent",
            "alias": alias,
            "kind": "match",
            "when": {"header": {"x-bench-tier": "batch"}},
            "to": other,
        },
        {"name": "team-99", "alias": alias, "kind": "budget_downgrade", "scope": "team", "share": 0.99, "to": other},
        {"name": "all-day", "alias": alias, "kind": "time_window", "deployments": {0: {"priority": 0}}},
    ]


def shaped(workdir: Path, variant: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    state = {"backend": "embedded", "path": str(workdir / f"shaping-{variant}.db")}

    def transform(bare: dict[str, Any]) -> dict[str, Any]:
        config = traffic_config(bare, state=state)
        if variant == "plain":
            config["queue"] = {"enabled": False}
        else:
            config["queue"] = {"enabled": True}
            config["routing_rules"] = rules(JSON_ALIAS, SSE_ALIAS)
        return config

    return transform


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.shaping", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--rounds", type=int, default=9, help="rounds of plain and shaping (default 9)")
    p.add_argument("--duration", type=int, default=3, help="seconds per measurement (default 3)")
    p.add_argument("--connections", type=int, default=16, help="connections (default 16)")
    return p


def run(args: argparse.Namespace, out: Any = print) -> Rounds:
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        raise BenchError("--rounds, --duration and --connections must be at least 1")
    pinning = Pinning.detect()
    out(f"bench.shaping: {pinning.reason}")
    rounds = Rounds({v: [] for v in VARIANTS}, base="plain", targets={"shaping": TARGET})
    cpu = Rounds({v: [] for v in VARIANTS}, base="plain", targets={"shaping": 1 / TARGET}, lower_is_better=True)
    """The gateway's CPU per request (/proc schedstat, all threads): the cost behind requests/s."""
    with tempfile.TemporaryDirectory(prefix="gw-shaping-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        gateways: dict[str, GatewayServer] = {}
        json = scenarios(args.connections)[0]
        for variant in VARIANTS:
            gw = GatewayServer.behind(
                nginx.base, workdir, pinning, name=f"shaping-{variant}", transform=shaped(workdir, variant)
            )
            gateways[variant] = stack.enter_context(gw)
            gw.key = provision(gw.base, gw.master_key)
        for variant in VARIANTS:  # warm-up, not counted
            measure(gateways[variant], variant, json, pinning, max(2, args.duration // 2))
        for i in range(args.rounds):
            for variant in order(i, VARIANTS):
                rps, cpu_us = measure(gateways[variant], variant, json, pinning, args.duration)
                rounds.rps[variant].append(rps)
                if cpu_us is not None:
                    cpu.rps[variant].append(cpu_us)
            out(rounds.lines()[i + 1])
    for line in rounds.lines():
        out(line)
    if len(cpu.rps["plain"]) == len(cpu.rps["shaping"]) == args.rounds:
        out("\ngateway CPU per request (µs, all its threads; lower is better)")
        for line in cpu.lines():
            out(line)
    return rounds


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_signals()
    try:
        run(parser().parse_args(argv))
    except BenchError as exc:
        print(f"bench.shaping: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
