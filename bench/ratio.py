"""``python -m bench.ratio``: the gateway's share of the floor app, and traffic control's
cost, measured in interleaved rounds.

``python -m bench --traffic`` measures the bare gateway, then embedded, then
Redis, a minute apart; on a shared machine the load of the host drifts in
between and the ratios with it (the same code measured 74 % and 84 % on
embedded in two runs). Here the floor app (``bench.floor``: uvicorn + aiohttp,
forwarding only) and the three gateways run side by side (each on the server
core, idle while the others are measured), and every round measures each
scenario (requests/s at 16 connections, streams/s, the p50 added at one
connection; ``--only`` picks some) for all of them back to back, in a rotating
order; each round gives its own ratios, and the report is their median, with the
targets of ``bench/standing.py`` and the line the README's table takes.

    GATEWAY_MASTER_KEY=... python -m bench.ratio --rounds 7 --duration 5

``--before REV`` adds a fourth gateway to every round: embedded traffic control run from
a git worktree of ``REV`` (its own state file), and reports the per-round ratio of today's
embedded gateway to it: what everything since ``REV`` costs, measured in the same run.

``--fresh`` starts every server (with ``--apis``: the gateway) anew before each round after
the first and warms it up again, so that each round measures new processes. Two starts of the
same code differ in speed by a few per cent for as long as they run (four identical gateways
side by side, 7 rounds: medians 415-444 µs of CPU a request); with one process per variant
for the whole run, that difference sits in every round's ratio and the median cannot remove
it. Use it wherever the difference to be seen is that small (Redis against embedded; ``--before``
turns it on by itself); it adds a restart and a warm-up per server and round.

``--postgres`` adds a gateway with traffic control on PostgreSQL + Redis (``state.backend:
postgres``; its own PostgreSQL, the same redis-server as the Redis gateway, its own db) and
reports the per-round ratio postgres/redis: the PostgreSQL issue allows 5 %, since nothing on
the request path waits for PostgreSQL.

    GATEWAY_MASTER_KEY=... python -m bench.ratio --postgres --rounds 7 --duration 5

``--apis`` compares the client APIs instead, through one bare gateway in front of the
same nginx: chat completions to an OpenAI-format upstream (the baseline), Anthropic
Messages to an Anthropic-format upstream (passed through), Messages and OpenAI
Responses to the OpenAI-format one (translated both ways). Every round measures each
scenario (``--only`` picks some) for the four routes back to back, in a rotating order:
requests/s at 16 connections, streams/s, and the p50 latency added at one connection
(gateway p50 - nginx p50, nginx measured once at the start).

    GATEWAY_MASTER_KEY=... python -m bench.ratio --apis --rounds 5 --duration 2   # about 2.5 minutes

The Redis gateway's request-path scripts travel on redis-py pipelines; until the lean
RESP connection was removed, ``--redis-py`` compared the two round by round (commit
ab70c9d; the numbers are in docs/architecture.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.apis import CHAT, Api
from bench.floor import FloorServer
from bench.gateway_proc import JSON_ALIAS, GatewayServer, probe
from bench.nginx import NginxServer
from bench.postgres_proc import PostgresServer
from bench.procs import BenchError, Pinning, cpu_seconds, exit_cleanly_on_signals
from bench.redis_proc import RedisServer
from bench.report import ONE_CONN_SCENARIO
from bench.rounds import BEFORE, POSTGRES, VARIANTS, Rounds, order
from bench.scenarios import NATIVE_API, ROUTES, SCENARIO_NAMES, Route, Scenario, scenarios, selected
from bench.standing import FLOOR, README_HEADER, cpu_table, readme_row, standing_rounds
from bench.traffic import embedded_state, postgres_state, provision, redis_state, traffic_config
from bench.wrk import WrkResult, run_wrk

API_THROUGHPUT_TARGET = 0.90
API_LATENCY_TARGET = 1.10
"""``--apis``: each route's throughput and added latency within 10 % of chat completions' (the dialects issue's)."""
API_CPU_TARGET = 1 / API_THROUGHPUT_TARGET
"""``--apis``: the gateway's CPU per request, the cost behind throughput (90 % of the throughput is 1/0.9 the CPU)."""
CPU_SUFFIX = "-cpu"
"""``--apis``: the table of a scenario's gateway CPU per request is the scenario's name + this."""
Server = FloorServer | GatewayServer
POSTGRES_REDIS_DB = 1
"""``--postgres``: the Redis database of the PostgreSQL gateway (the Redis gateway's is 0)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ratio", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=16, help="connections (default 16)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the rounds as JSON")
    p.add_argument(
        "--before",
        default=None,
        metavar="REV",
        help="add embedded traffic control from a git worktree of REV, to weigh what came since",
    )
    p.add_argument(
        "--postgres",
        action="store_true",
        help="add traffic control on PostgreSQL + Redis, weighed against Redis only round by round",
    )
    p.add_argument(
        "--apis",
        action="store_true",
        help="instead: one bare gateway, chat completions vs Anthropic Messages (passed through and "
        "translated) vs Responses (translated), per scenario",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start every server anew (and warm it up) before each round after the first: two starts "
        "of the same code differ by a few per cent, which would otherwise favour one variant all run",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        choices=SCENARIO_NAMES,
        help="measure only this scenario (repeatable; default all)",
    )
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse bad counts and combinations before anything starts."""
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        raise BenchError("--rounds, --duration and --connections must be at least 1")
    if args.apis and args.before:
        raise BenchError("--before weighs traffic control against an earlier commit; it does not combine with --apis")
    if args.apis and args.postgres:
        raise BenchError("--postgres weighs traffic control on PostgreSQL; it does not combine with --apis")


def run(args: argparse.Namespace, out: Any = print) -> dict[str, Rounds]:
    check(args)
    pinning = Pinning.detect()
    out(f"bench.ratio: {pinning.reason}")
    if fresh_processes(args):
        why = "--fresh" if args.fresh else "--before, as --fresh"
        out(f"bench.ratio: every server starts anew before each round after the first ({why})")
    variants = [FLOOR, *VARIANTS, *([BEFORE] if args.before else []), *([POSTGRES] if args.postgres else [])]
    shapes = selected(scenarios(args.connections), args.only)
    table = {sc.name: standing_rounds(sc, variants) for sc in shapes}
    table |= {sc.name + CPU_SUFFIX: cpu_table(variants) for sc in shapes}  # one connection too: steadier
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
            envs[BEFORE] = code_from(tree)
        pg = stack.enter_context(PostgresServer(workdir, pinning)) if args.postgres else None
        if pg is not None:
            redis_db = f"redis://127.0.0.1:{redis.port}/{POSTGRES_REDIS_DB}"
            states[POSTGRES] = postgres_state(redis_db, pg.url, workdir)
        floor = FloorServer(workdir, pinning, json_url=nginx.json_url, sse_url=nginx.sse_url)
        servers: dict[str, Server] = {FLOOR: stack.enter_context(floor)}
        for variant in variants[1:]:
            state = states.get(variant)
            transform = None if state is None else _with_traffic_control(state)
            name = f"ratio-{variant}"
            gw = GatewayServer.behind(
                nginx.base, workdir, pinning, name=name, transform=transform, env=envs.get(variant)
            )
            servers[variant] = stack.enter_context(gw)
            if state is not None:
                gw.key = provision(gw.base, gw.master_key)
        nginx_p50 = 0.0
        if any(sc.name == ONE_CONN_SCENARIO for sc in shapes):
            direct = _wrk(nginx.json_url, "nginx direct", CHAT, "", scenarios(1)[1], JSON_ALIAS, pinning, args.duration)
            nginx_p50 = direct.latency_ms["p50"]
            out(f"bench.ratio: nginx direct p50 at 1 connection: {nginx_p50:.3f} ms")

        def warm_up(variant: str) -> None:  # not counted
            for sc in shapes:
                measure(servers[variant], variant, sc, pinning, max(1, args.duration // 2), nginx_p50)

        for variant in variants:
            warm_up(variant)
        for i in range(args.rounds):
            if fresh_processes(args) and i > 0:
                for variant in variants:
                    servers[variant].restart()
                    warm_up(variant)
            for sc in shapes:
                for variant in order(i, variants):
                    value, cpu_us = measure(servers[variant], variant, sc, pinning, args.duration, nginx_p50)
                    table[sc.name].rps[variant].append(value)
                    if cpu_us is not None:
                        table[sc.name + CPU_SUFFIX].rps[variant].append(cpu_us)
                out(f"{sc.name:<10} {table[sc.name].lines()[i + 1]}")
        if pg is not None:  # what reached PostgreSQL: the team and key records, the spend batches
            tables = ("gw_records", "gw_spend_batches")
            out("bench.ratio: in PostgreSQL: " + ", ".join(f"{t} {pg.count(t)} rows" for t in tables))
    print_tables(table, shapes, out, "server")
    out(f"\nthe README's line (docs: bench/standing.py):\n{README_HEADER}\n{readme_row(table, run_label())}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({name: rounds.to_json() for name, rounds in table.items()}, indent=2))
    return table


def fresh_processes(args: argparse.Namespace) -> bool:
    """Whether every server starts anew before each round: ``--fresh``, and always with
    ``--before``, whose differences are as small as two processes' (module docstring)."""
    return bool(args.fresh or args.before)


def run_label() -> str:
    """This run's name in the README: the date and the commit measured (``+`` if the tree has changes)."""
    repo = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = "+" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{time.strftime('%Y-%m-%d')} {commit}{dirty}"


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


def code_from(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m gateway`` import the gateway from ``tree``.

    ``-m`` puts the current directory first on ``sys.path``, ahead of ``PYTHONPATH``: run from
    the repository (as the benchmark is), the child would import today's code from there, and
    "before" would be today measured twice. ``PYTHONSAFEPATH`` (Python 3.11) leaves it out."""
    return {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}


def _with_traffic_control(state: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda bare: traffic_config(bare, state=state)


def measure(
    server: Server, variant: str, sc: Scenario, pinning: Pinning, seconds: int, nginx_p50: float = 0.0
) -> tuple[float, float | None]:
    """Requests/s (or streams/s) of ``server``'s chat completions in scenario ``sc`` (at one
    connection the p50 latency it adds to nginx direct's, ms), and its CPU per request."""
    return _measured(server.chat_url, server.pid, variant, CHAT, server.key, sc, sc.alias, pinning, seconds, nginx_p50)


def _measured(
    url: str,
    pid: int,
    target: str,
    api: Api,
    key: str,
    sc: Scenario,
    model: str,
    pinning: Pinning,
    seconds: int,
    direct_p50: float,
) -> tuple[float, float | None]:
    """The value of one run of scenario ``sc`` at ``url`` (requests/s; at one connection the
    p50 added to ``direct_p50``, ms), and the CPU per request of process ``pid`` meanwhile
    (µs, all its threads; None where /proc cannot tell)."""
    before = cpu_seconds(pid)
    result = _wrk(url, target, api, key, sc, model, pinning, seconds)
    after = cpu_seconds(pid)
    cpu_us = None
    if before is not None and after is not None and result.requests:
        cpu_us = (after - before) / result.requests * 1e6
    value = result.latency_ms["p50"] - direct_p50 if sc.name == ONE_CONN_SCENARIO else result.rps
    return value, cpu_us


def api_rounds(scenario: Scenario) -> Rounds:
    """The rounds of one ``--apis`` scenario: per route, requests/s, or at one connection
    the added p50 latency (ms, lower is better); each weighed against chat completions."""
    names = [route.name for route in ROUTES]
    if scenario.name == ONE_CONN_SCENARIO:
        targets = dict.fromkeys(names[1:], API_LATENCY_TARGET)
        return Rounds({n: [] for n in names}, names[0], targets, lower_is_better=True, cell=".3f")
    return Rounds({n: [] for n in names}, names[0], dict.fromkeys(names[1:], API_THROUGHPUT_TARGET))


def cpu_rounds() -> Rounds:
    """The rounds of a loaded ``--apis`` scenario's gateway CPU per request (µs, all its
    threads): what the route costs, the other side of requests/s (a process taking the core
    lowers requests/s but not the CPU each request uses; contention for caches and the
    scheduler still moves it, so it too needs many rounds on a shared machine)."""
    names = [route.name for route in ROUTES]
    targets = dict.fromkeys(names[1:], API_CPU_TARGET)
    return Rounds({n: [] for n in names}, names[0], targets, lower_is_better=True, cell=",.0f")


def run_apis(args: argparse.Namespace, out: Any = print) -> dict[str, Rounds]:
    check(args)
    pinning = Pinning.detect()
    out(f"bench.ratio --apis: {pinning.reason}")
    if fresh_processes(args):
        out("bench.ratio --apis: the gateway starts anew before each round after the first (--fresh)")
    shapes = selected(scenarios(args.connections), args.only)
    table = {sc.name: api_rounds(sc) for sc in shapes}
    table |= {sc.name + CPU_SUFFIX: cpu_rounds() for sc in shapes if sc.name != ONE_CONN_SCENARIO}
    routes = {route.name: route for route in ROUTES}
    floor: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gw-ratio-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        gw = GatewayServer.behind(nginx.base, workdir, pinning, name="ratio-apis")
        stack.enter_context(gw)
        for route in ROUTES:
            _probe_route(gw, route)
        for sc in shapes:
            if sc.name == ONE_CONN_SCENARIO:
                for upstream, api in NATIVE_API.items():
                    direct = nginx.url(upstream, stream=False)
                    result = _wrk(direct, f"nginx {upstream}", api, "", sc, JSON_ALIAS, pinning, args.duration)
                    floor[upstream] = result.latency_ms["p50"]
                out(f"bench.ratio --apis: nginx direct p50 at 1 connection: {floor} ms")

        def warm_up() -> None:  # not counted
            for route in ROUTES:
                for sc in shapes:
                    _route_value(gw, route, sc, pinning, max(1, args.duration // 2), floor)

        warm_up()
        for i in range(args.rounds):
            if fresh_processes(args) and i > 0:
                gw.restart()
                warm_up()
            for sc in shapes:
                for name in order(i, list(routes)):
                    value, cpu_us = _route_value(gw, routes[name], sc, pinning, args.duration, floor)
                    table[sc.name].rps[name].append(value)
                    if sc.name + CPU_SUFFIX in table and cpu_us is not None:
                        table[sc.name + CPU_SUFFIX].rps[name].append(cpu_us)
                out(f"{sc.name:<10} {table[sc.name].lines()[i + 1]}")
    print_tables(table, shapes, out, "gateway")
    if args.json_out is not None:
        data = {"nginx_p50_ms": floor, "scenarios": {name: rounds.to_json() for name, rounds in table.items()}}
        args.json_out.write_text(json.dumps(data, indent=2))
    return table


def print_tables(table: dict[str, Rounds], shapes: Sequence[Scenario], out: Any, server: str) -> None:
    """Each scenario's rounds, then its table of CPU per request where it has one."""
    for sc in shapes:
        what = f"added p50 ms ({server} - nginx direct)" if sc.name == ONE_CONN_SCENARIO else "per second"
        out(f"\n{sc.name}: {sc.description}, {what}")
        for line in table[sc.name].lines():
            out(line)
        cpu = table.get(sc.name + CPU_SUFFIX)
        if cpu is not None and cpu.rps[cpu.base]:
            out(f"\n{sc.name + CPU_SUFFIX}: {sc.description}, {server} CPU per request (µs, all its threads)")
            for line in cpu.lines():
                out(line)


def _probe_route(gw: GatewayServer, route: Route) -> None:
    """One request per route and mode first, so that a broken route shows its answer."""
    for stream in (False, True):
        got = probe(gw.base + route.api.path, key=gw.key, model=route.alias(stream), stream=stream, api=route.api)
        if not got.ok:
            raise BenchError(f"probe {route.name} (stream={stream}): {got.problem}; body: {got.body_sample[:400]}")


def _wrk(
    url: str, target: str, api: Api, key: str, sc: Scenario, model: str, pinning: Pinning, seconds: int
) -> WrkResult:
    result = run_wrk(
        url,
        scenario=sc.name,
        target=target,
        connections=sc.connections,
        duration_s=seconds,
        pinning=pinning,
        model=model,
        stream=sc.stream,
        api_key=key,
        api=api,
    )
    if result.has_errors:
        raise BenchError(f"{target} {sc.name}: {result.error_summary()}")
    return result


def _route_value(
    gw: GatewayServer, route: Route, sc: Scenario, pinning: Pinning, seconds: int, floor: dict[str, float]
) -> tuple[float, float | None]:
    """Requests/s of ``route`` in scenario ``sc`` (at one connection its added p50 latency, ms),
    and the gateway's CPU per request meanwhile (µs; None where /proc cannot tell)."""
    url, model = gw.base + route.api.path, route.alias(sc.stream)
    direct_p50 = floor.get(route.upstream, 0.0)  # measured only with the one-connection scenario
    return _measured(url, gw.pid, route.name, route.api, gw.key, sc, model, pinning, seconds, direct_p50)


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_signals()
    try:
        args = parser().parse_args(argv)
        if args.apis:
            run_apis(args)
        else:
            run(args)
    except BenchError as exc:
        print(f"bench.ratio: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
