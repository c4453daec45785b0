"""``python -m bench.ablate``: what a part of the request path costs, weighed inside one gateway.

Starts the bench's nginx and one bare gateway (as ``bench.ratio --apis`` does: pinned to the
server core, wrk on the other) with the ablation switch of bench/ablations.py installed,
then runs interleaved rounds: in each, for each route, the gateway as built and with each
chosen ablation (switched by signal, each round starting with the next variant), one wrk
run of ``--duration`` seconds apiece. It reports per route and variant the requests/s, the
gateway's CPU per request (all its threads, from /proc) and how much of that ran on the
event loop's thread, each as the median of the rounds with the per-round ratio to the
gateway as built, and each ablation's change of CPU per request: the median of its
per-round differences to the gateway as built (each round's pair measured minutes apart
at most, so the host's drift cancels). One process throughout: the few per cent two starts of the same code
differ by (docs/performance.md, "One process is one sample") do not enter the comparison.

    GATEWAY_MASTER_KEY=sk-bench-key-123 .venv/bin/python -m bench.ablate \\
        --ablation no-stored-row --route responses-gpt --rounds 9 --duration 3

Exit status: 0 done, 2 bad usage or a setup failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ablations import ABLATIONS, AS_BUILT, CONTROL_ENV, write_sitecustomize
from bench.gateway_proc import GatewayServer, probe
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, at_least_one, cpu_seconds_split, exit_cleanly_on_signals
from bench.rounds import Rounds, order
from bench.scenarios import ROUTES, Route
from bench.wrk import run_wrk

REPO = Path(__file__).resolve().parents[1]
ACK_TIMEOUT_S = 10.0
MEASURES = ("rps", "cpu", "loop")
"""Per route: requests/s; CPU per request, all threads (µs); of it, the event loop's thread (µs)."""


def parser() -> argparse.ArgumentParser:
    first = __doc__.splitlines()[0] if __doc__ else None
    p = argparse.ArgumentParser(prog="python -m bench.ablate", description=first)
    p.add_argument(
        "--ablation",
        action="append",
        choices=sorted(ABLATIONS),
        help="an ablation to weigh (repeatable; default: every one)",
    )
    p.add_argument(
        "--route",
        action="append",
        choices=[r.name for r in ROUTES],
        help="a client API route (repeatable; default: responses-gpt)",
    )
    p.add_argument("--stream", action="store_true", help="streams instead of whole answers")
    p.add_argument("--rounds", type=at_least_one, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--duration", type=at_least_one, default=3, help="seconds per run (default 3)")
    p.add_argument("--connections", type=at_least_one, default=16, help="wrk connections (default 16)")
    return p


@dataclass(frozen=True)
class Run:
    rps: float
    cpu_us: float
    """The gateway's CPU per request, every thread."""
    loop_us: float
    """Of it, the main thread's: the event loop's."""


class Switch:
    """Chooses the gateway's variant through the control file and SIGUSR1, and waits until
    the gateway says it has switched (bench/ablations.py)."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.ack = control.with_name(control.name + ".ack")

    def to(self, pid: int, name: str) -> None:
        self.ack.unlink(missing_ok=True)
        self.control.write_text(name)
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            raise BenchError(f"the gateway (pid {pid}) has exited; its log says why") from None
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.ack.exists() and self.ack.read_text() == name:
                return
            time.sleep(0.01)
        got = self.ack.read_text() if self.ack.exists() else "nothing"
        raise BenchError(
            f"the gateway did not switch to {name} within {ACK_TIMEOUT_S:g}s (it said {got}; "
            "a switch that was never installed, see the gateway's log, leaves SIGUSR1 deadly)"
        )


def measure(gw: GatewayServer, route: Route, args: argparse.Namespace, seconds: int, pinning: Pinning) -> Run:
    """One wrk run of ``route`` and the gateway's CPU meanwhile."""
    before = cpu_seconds_split(gw.pid)
    result = run_wrk(
        gw.base + route.api.path,
        scenario="stream" if args.stream else "json",
        target=route.name,
        connections=args.connections,
        duration_s=seconds,
        pinning=pinning,
        model=route.alias(args.stream),
        stream=args.stream,
        api_key=gw.key,
        api=route.api,
    )
    after = cpu_seconds_split(gw.pid)
    if result.has_errors:
        raise BenchError(f"{route.name}: {result.error_summary()}")
    if not result.requests:
        raise BenchError(f"{route.name}: no request was answered in {seconds}s")
    if before is None or after is None:
        raise BenchError("cannot read the gateway's CPU time from /proc")
    loop, others = after[0] - before[0], after[1] - before[1]
    return Run(result.rps, (loop + others) / result.requests * 1e6, loop / result.requests * 1e6)


def _tables(variants: list[str]) -> dict[str, Rounds]:
    def rounds(lower_is_better: bool) -> Rounds:
        return Rounds({v: [] for v in variants}, AS_BUILT, {}, lower_is_better=lower_is_better, cell=",.0f")

    return {"rps": rounds(False), "cpu": rounds(True), "loop": rounds(True)}


def run(args: argparse.Namespace, out: Any = print) -> dict[str, dict[str, Rounds]]:
    ablations: list[str] = list(dict.fromkeys(args.ablation or sorted(ABLATIONS)))
    routes = [r for name in dict.fromkeys(args.route or ["responses-gpt"]) for r in ROUTES if r.name == name]
    if not args.stream and (whole := [a for a in ablations if ABLATIONS[a].streams_only]):
        raise BenchError(f"{', '.join(whole)} only changes streams: add --stream")
    variants = [AS_BUILT, *ablations]
    tables = {route.name: _tables(variants) for route in routes}
    pinning = Pinning.detect()
    out(f"bench.ablate: {pinning.reason}")
    with tempfile.TemporaryDirectory(prefix="gw-ablate-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        control = workdir / "ablation"
        control.write_text(AS_BUILT)
        site = write_sitecustomize(workdir / "site")
        path = os.pathsep.join([str(site), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        env = {"PYTHONPATH": path, CONTROL_ENV: str(control)}
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        gw = stack.enter_context(GatewayServer.behind(nginx.base, workdir, pinning, name="ablate", env=env))
        switch = Switch(control)
        for route in routes:
            got = probe(
                gw.base + route.api.path, key=gw.key, model=route.alias(args.stream), stream=args.stream, api=route.api
            )
            if not got.ok:
                raise BenchError(f"probe {route.name}: {got.problem}; body: {got.body_sample[:400]}")
        for route in routes:  # warm-up, not counted
            for variant in variants:
                switch.to(gw.pid, variant)
                measure(gw, route, args, max(1, args.duration // 2), pinning)
        for i in range(args.rounds):
            for route in routes:
                for variant in order(i, variants):
                    switch.to(gw.pid, variant)
                    got_run = measure(gw, route, args, args.duration, pinning)
                    for key, value in zip(MEASURES, (got_run.rps, got_run.cpu_us, got_run.loop_us), strict=True):
                        tables[route.name][key].rps[variant].append(value)
                rps = tables[route.name]["rps"].rps
                cpu = tables[route.name]["cpu"].rps
                cells = "  ".join(f"{v} {rps[v][-1]:,.0f}/s {cpu[v][-1]:,.0f} µs" for v in variants)
                out(f"round {i + 1} {route.name}: {cells}")
        switch.to(gw.pid, AS_BUILT)
    report(tables, ablations, args, out)
    return tables


def report(tables: dict[str, dict[str, Rounds]], ablations: list[str], args: argparse.Namespace, out: Any) -> None:
    kind = "streams" if args.stream else "whole answers"
    out("")
    for name in ablations:
        out(f"{name}: leaves out {ABLATIONS[name].leaves_out}")
    titles = {
        "rps": f"{kind}/s at {args.connections} connections",
        "cpu": "CPU per request (µs, every thread)",
        "loop": "of it on the event loop's thread (µs)",
    }
    for route, measures in tables.items():
        for key in MEASURES:
            out(f"\n{route}, {titles[key]}:")
            for line in measures[key].lines():
                out(line)
        for line in changes(route, measures, ablations):
            out(line)


def changes(route: str, measures: dict[str, Rounds], ablations: list[str]) -> list[str]:
    """Per variant: its median CPU per request and, beside the event loop's, its other threads';
    for an ablation the median of its per-round differences to as built (negative: it saves)."""
    cpu, loop = measures["cpu"].rps, measures["loop"].rps
    lines = []
    for name in [AS_BUILT, *ablations]:
        others = statistics.median(c - lp for c, lp in zip(cpu[name], loop[name], strict=True))
        line = f"{route}, {name}: CPU per request {statistics.median(cpu[name]):,.1f} µs"
        if name != AS_BUILT:
            diff = statistics.median(c - b for c, b in zip(cpu[name], cpu[AS_BUILT], strict=True))
            line += f", {diff:+,.1f} µs against as built (median of the rounds' differences)"
        lines.append(f"{line}; threads besides the event loop's {others:,.1f} µs")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_signals()
    args = parser().parse_args(argv)
    try:
        run(args)
    except BenchError as exc:
        print(f"bench.ablate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
