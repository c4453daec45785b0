"""``python -m bench.ratio``: traffic control's cost as a ratio to the bare
gateway, measured in interleaved rounds.

``python -m bench --traffic`` measures the bare gateway, then embedded, then
Redis, a minute apart; on a shared machine the load of the host drifts in
between and the ratios with it (the same code measured 74 % and 84 % on
embedded in two runs). Here the three gateways run side by side (each on the
server core, idle while the others are measured), and every round measures
bare, embedded and Redis back to back, in a rotating order; each round gives
its own ratios, and the report is their median.

    GATEWAY_MASTER_KEY=... python -m bench.ratio --rounds 5 --duration 5

The Redis gateway's request-path scripts travel on redis-py pipelines; until the lean
RESP connection was removed, ``--redis-py`` compared the two round by round (commit
ab70c9d; the numbers are in docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway_proc import JSON_ALIAS, GatewayServer, master_key
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals
from bench.redis_proc import RedisServer
from bench.traffic import embedded_state, provision, redis_state, traffic_config
from bench.wrk import run_wrk

VARIANTS = ("bare", "embedded", "redis")
TARGETS = {"embedded": 0.80, "redis": 0.65}  # the traffic-control issue's


@dataclass
class Rounds:
    """Requests/s per variant, one entry per round."""

    rps: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})

    def ratios(self, variant: str) -> list[float]:
        return [x / bare for x, bare in zip(self.rps[variant], self.rps["bare"], strict=True) if bare > 0]

    def median_ratio(self, variant: str) -> float:
        ratios = self.ratios(variant)
        return statistics.median(ratios) if ratios else 0.0

    def lines(self) -> list[str]:
        out = [f"{'round':>5}  " + "  ".join(f"{v:>9}" for v in VARIANTS) + "  embedded/bare  redis/bare"]
        for i in range(len(self.rps["bare"])):
            row = [self.rps[v][i] for v in VARIANTS]
            shares = [row[1] / row[0], row[2] / row[0]] if row[0] > 0 else [0.0, 0.0]
            cells = "  ".join(f"{x:9,.0f}" for x in row)
            out.append(f"{i + 1:>5}  {cells}  {shares[0]:13.1%}  {shares[1]:10.1%}")
        if not self.rps["bare"]:
            return out
        medians = "  ".join(f"{statistics.median(self.rps[v]):9,.0f}" for v in VARIANTS)
        middle = f"{self.median_ratio('embedded'):13.1%}  {self.median_ratio('redis'):10.1%}"
        out.append(f"{'median':>5}  {medians}  {middle}")
        for variant, target in TARGETS.items():
            got = self.median_ratio(variant)
            verdict = "met" if got >= target else "NOT MET"
            out.append(f"{variant}: median of the per-round ratios {got:.1%} (target >= {target:.0%}): {verdict}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "ratios": {v: self.ratios(v) for v in TARGETS},
            "median_ratio": {v: self.median_ratio(v) for v in TARGETS},
        }


def order(round_index: int) -> list[str]:
    """Each round starts with a different variant (bare, embedded, redis, bare ...)."""
    shift = round_index % len(VARIANTS)
    return [*VARIANTS[shift:], *VARIANTS[:shift]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ratio", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=5, help="rounds of bare, embedded, redis (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=16, help="connections (default 16)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the rounds as JSON")
    return p


def run(args: argparse.Namespace, out: Any = print) -> Rounds:
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        raise BenchError("--rounds, --duration and --connections must be at least 1")
    pinning = Pinning.detect()
    out(f"bench.ratio: {pinning.reason}")
    rounds = Rounds()
    with tempfile.TemporaryDirectory(prefix="gw-ratio-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        redis = stack.enter_context(RedisServer(workdir, pinning))
        states = {"embedded": embedded_state(workdir), "redis": redis_state(redis.url)}
        gateways: dict[str, GatewayServer] = {}
        key = master_key()
        for variant in VARIANTS:
            state = states.get(variant)
            gw = GatewayServer(
                workdir,
                pinning,
                json_base_url=f"{nginx.base}/json/v1",
                sse_base_url=f"{nginx.base}/sse/v1",
                key=key,
                name=f"ratio-{variant}",
                transform=None if state is None else _with_traffic_control(state),
            )
            gateways[variant] = stack.enter_context(gw)
            if state is not None:
                gw.key = provision(gw.base, gw.master_key)
        for variant in VARIANTS:  # warm-up, not counted
            _rps(gateways[variant], variant, args, pinning, max(2, args.duration // 2))
        for i in range(args.rounds):
            for variant in order(i):
                rounds.rps[variant].append(_rps(gateways[variant], variant, args, pinning, args.duration))
            out(rounds.lines()[i + 1])
    for line in rounds.lines():
        out(line)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rounds.to_json(), indent=2))
    return rounds


def _with_traffic_control(state: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda bare: traffic_config(bare, state=state)


def _rps(gw: GatewayServer, variant: str, args: argparse.Namespace, pinning: Pinning, seconds: int) -> float:
    result = run_wrk(
        gw.chat_url,
        scenario="json",
        target=variant,
        connections=args.connections,
        duration_s=seconds,
        pinning=pinning,
        model=JSON_ALIAS,
        stream=False,
        api_key=gw.key,
    )
    if result.has_errors:
        raise BenchError(f"{variant}: {result.error_summary()}")
    return result.rps


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_signals()
    try:
        run(parser().parse_args(argv))
    except BenchError as exc:
        print(f"bench.ratio: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
