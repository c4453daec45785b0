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

``--before REV`` adds a fourth gateway to every round: embedded traffic control run from
a git worktree of ``REV`` (its own state file), and reports the per-round ratio of today's
embedded gateway to it: what everything since ``REV`` costs, measured in the same run.

The Redis gateway's request-path scripts travel on redis-py pipelines; until the lean
RESP connection was removed, ``--redis-py`` compared the two round by round (commit
ab70c9d; the numbers are in docs/architecture.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
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
BEFORE = "before"
"""The optional fourth variant: embedded traffic control from an earlier commit (``--before``)."""
TARGETS = {"embedded": 0.80, "redis": 0.65}  # the traffic-control issue's
BEFORE_TARGET = 0.95
"""A change may cost at most 5 % of throughput (the hardening issue's bar for its caps and journal)."""


@dataclass
class Rounds:
    """Requests/s per variant, one entry per round."""

    rps: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})

    @property
    def variants(self) -> list[str]:
        return list(self.rps)

    def ratios(self, variant: str, to: str = "bare") -> list[float]:
        return [x / base for x, base in zip(self.rps[variant], self.rps[to], strict=True) if base > 0]

    def median_ratio(self, variant: str, to: str = "bare") -> float:
        ratios = self.ratios(variant, to)
        return statistics.median(ratios) if ratios else 0.0

    def lines(self) -> list[str]:
        shown = [v for v in self.variants if v != "bare"]
        head = "  ".join(f"{v:>9}" for v in self.variants) + "".join(f"  {v + '/bare':>13}" for v in shown)
        out = [f"{'round':>5}  {head}"]
        for i in range(len(self.rps["bare"])):
            cells = "  ".join(f"{self.rps[v][i]:9,.0f}" for v in self.variants)
            base = self.rps["bare"][i]
            shares = "".join(f"  {(self.rps[v][i] / base if base > 0 else 0.0):13.1%}" for v in shown)
            out.append(f"{i + 1:>5}  {cells}{shares}")
        if not self.rps["bare"]:
            return out
        medians = "  ".join(f"{statistics.median(self.rps[v]):9,.0f}" for v in self.variants)
        middle = "".join(f"  {self.median_ratio(v):13.1%}" for v in shown)
        out.append(f"{'median':>5}  {medians}{middle}")
        for variant, target in TARGETS.items():
            got = self.median_ratio(variant)
            verdict = "met" if got >= target else "NOT MET"
            out.append(f"{variant}: median of the per-round ratios {got:.1%} (target >= {target:.0%}): {verdict}")
        if BEFORE in self.rps:
            got = self.median_ratio("embedded", to=BEFORE)
            verdict = "met" if got >= BEFORE_TARGET else "NOT MET"
            out.append(
                f"embedded now / before: median of the per-round ratios {got:.1%} "
                f"(target >= {BEFORE_TARGET:.0%}): {verdict}"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        ratios = {v: self.ratios(v) for v in TARGETS}
        medians = {v: self.median_ratio(v) for v in TARGETS}
        if BEFORE in self.rps:
            ratios["embedded/before"] = self.ratios("embedded", to=BEFORE)
            medians["embedded/before"] = self.median_ratio("embedded", to=BEFORE)
        return {"rps": self.rps, "ratios": ratios, "median_ratio": medians}


def order(round_index: int, variants: Sequence[str] = VARIANTS) -> list[str]:
    """Each round starts with a different variant (bare, embedded, redis, bare ...)."""
    shift = round_index % len(variants)
    return [*variants[shift:], *variants[:shift]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ratio", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=5, help="rounds of bare, embedded, redis (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=16, help="connections (default 16)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the rounds as JSON")
    p.add_argument(
        "--before",
        default=None,
        metavar="REV",
        help="add embedded traffic control from a git worktree of REV, to weigh what came since",
    )
    return p


def run(args: argparse.Namespace, out: Any = print) -> Rounds:
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        raise BenchError("--rounds, --duration and --connections must be at least 1")
    pinning = Pinning.detect()
    out(f"bench.ratio: {pinning.reason}")
    variants = [*VARIANTS, BEFORE] if args.before else list(VARIANTS)
    rounds = Rounds({v: [] for v in variants})
    with tempfile.TemporaryDirectory(prefix="gw-ratio-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        redis = stack.enter_context(RedisServer(workdir, pinning))
        states = {"embedded": embedded_state(workdir), "redis": redis_state(redis.url)}
        envs: dict[str, dict[str, str]] = {}
        if args.before:
            tree = stack.enter_context(worktree(args.before, workdir / "before-tree"))
            out(f"bench.ratio: 'before' runs {args.before} from {tree}")
            states[BEFORE] = {**states["embedded"], "path": str(workdir / "traffic-before.db")}
            envs[BEFORE] = {"PYTHONPATH": str(tree)}
        gateways: dict[str, GatewayServer] = {}
        key = master_key()
        for variant in variants:
            state = states.get(variant)
            gw = GatewayServer(
                workdir,
                pinning,
                json_base_url=f"{nginx.base}/json/v1",
                sse_base_url=f"{nginx.base}/sse/v1",
                key=key,
                name=f"ratio-{variant}",
                transform=None if state is None else _with_traffic_control(state),
                env=envs.get(variant),
            )
            gateways[variant] = stack.enter_context(gw)
            if state is not None:
                gw.key = provision(gw.base, gw.master_key)
        for variant in variants:  # warm-up, not counted
            _rps(gateways[variant], variant, args, pinning, max(2, args.duration // 2))
        for i in range(args.rounds):
            for variant in order(i, variants):
                rounds.rps[variant].append(_rps(gateways[variant], variant, args, pinning, args.duration))
            out(rounds.lines()[i + 1])
    for line in rounds.lines():
        out(line)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rounds.to_json(), indent=2))
    return rounds


@contextlib.contextmanager
def worktree(rev: str, path: Path) -> Iterator[Path]:
    """A detached git worktree of ``rev`` at ``path``, removed afterwards."""
    repo = Path(__file__).resolve().parents[1]
    made = subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(path), rev],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise BenchError(f"--before {rev}: git worktree add failed: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False)


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
