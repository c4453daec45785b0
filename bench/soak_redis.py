"""``python -m bench.soak_redis``: the memory soak on the Redis backend, with many client
keys whose records the gateway reads again and again.

The gateway runs with traffic control on (bench/traffic.py: limits on keys, teams and the
alias, budgets, prices, cache) and the Redis state backend (its own redis-server), with
``state.refresh_interval_s`` short (0.05 s by default), so every key and team record is
read from Redis again many times a second: each read makes new record objects, the case
where a cache keyed by object identity grows without bound. ``--keys`` client keys in
``--teams`` teams are created through the admin API; wrk (``wrk_keys.lua``) sends
``--requests`` non-streaming requests at ``--connections`` connections, taking the keys
in turn. The gateway's RSS is read after a warm-up and at the end (and sampled in
between); the verdict: growth under 2 MiB.

    GATEWAY_MASTER_KEY=... python -m bench.soak_redis                     # 1M requests, 64 connections
    GATEWAY_MASTER_KEY=... python -m bench.soak_redis --requests 200000   # a few minutes

Exit status: 0 the growth is under the target and no request failed, 1 otherwise, 2 bad
usage or a setup failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.apis import CHAT
from bench.gateway_proc import JSON_ALIAS, GatewayServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals
from bench.redis_proc import RedisServer
from bench.soak import Load, SoakResult, run_soak
from bench.traffic import KEY_BODY, TEAM_BODY, _call, put_team, redis_state, traffic_config
from bench.wrk import SCRIPT, WrkResult, run_wrk

KEYS_SCRIPT = Path(__file__).with_name("wrk_keys.lua")
TARGET_GROWTH_MIB = 2.0
"""The issue's bar: RSS growth under 2 MB over 1M requests."""

Out = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """What one soak does (the command line, checked)."""

    requests: int = 1_000_000
    connections: int = 64
    keys: int = 200
    teams: int = 4
    refresh_interval_s: float = 0.05
    warmup_s: int = 120
    """Long enough for the working set at 64 connections and 200 keys: the 1M soak of
    2026-12-07 saw RSS climb for ~42 s after a 15 s warm-up (bounded caches filling,
    allocator arenas), then stay within 0.7 MiB."""
    max_s: float = 3600.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak_redis", description=__doc__.splitlines()[0])
    d = Plan()
    p.add_argument("--requests", type=int, default=d.requests, help=f"requests after the warm-up ({d.requests:,})")
    p.add_argument("--connections", type=int, default=d.connections, help=f"wrk connections ({d.connections})")
    p.add_argument("--keys", type=int, default=d.keys, help=f"client keys, taken in turn ({d.keys})")
    p.add_argument("--teams", type=int, default=d.teams, help=f"teams the keys are spread over ({d.teams})")
    p.add_argument(
        "--refresh-interval",
        type=float,
        default=d.refresh_interval_s,
        help=f"state.refresh_interval_s: how long a key record is served before it is read again "
        f"({d.refresh_interval_s} s)",
    )
    p.add_argument("--warmup", type=int, default=d.warmup_s, help=f"seconds of warm-up, not counted ({d.warmup_s})")
    p.add_argument("--max-seconds", type=float, default=d.max_s, help=f"time cap of the soak ({d.max_s:.0f})")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the result as JSON")
    return p


def plan_of(args: argparse.Namespace) -> Plan:
    """The plan of parsed arguments; BenchError naming every bad one."""
    plan = Plan(
        requests=args.requests,
        connections=args.connections,
        keys=args.keys,
        teams=args.teams,
        refresh_interval_s=args.refresh_interval,
        warmup_s=args.warmup,
        max_s=args.max_seconds,
    )
    problems = [
        f"--{name} must be at least 1"
        for name, value in (
            ("requests", plan.requests),
            ("connections", plan.connections),
            ("keys", plan.keys),
            ("teams", plan.teams),
            ("warmup", plan.warmup_s),
        )
        if value < 1
    ]
    if plan.teams > plan.keys >= 1:
        problems.append("--teams must not be more than --keys (every team has a key)")
    if not plan.refresh_interval_s > 0:
        problems.append("--refresh-interval must be more than 0")
    if not plan.max_s > 0:
        problems.append("--max-seconds must be more than 0")
    if problems:
        raise BenchError("; ".join(problems))
    return plan


def soak_config(bare: dict[str, Any], redis_url: str, refresh_interval_s: float) -> dict[str, Any]:
    """Traffic control on (bench/traffic.py), on Redis, key records read again every ``refresh_interval_s``."""
    return traffic_config(bare, state={**redis_state(redis_url), "refresh_interval_s": refresh_interval_s})


def team_id(i: int) -> str:
    return f"{TEAM_BODY['id']}-{i}"


def key_bodies(keys: int, teams: int) -> list[dict[str, Any]]:
    """The admin API bodies of ``keys`` client keys spread over ``teams`` teams (limits and
    budgets far above what the soak reaches, as bench/traffic.py's key)."""
    return [{**KEY_BODY, "name": f"soak-{i}", "team": team_id(i % teams)} for i in range(keys)]


def provision(base_url: str, master: str, keys: int, teams: int) -> list[str]:
    """Create the teams and the keys; the keys' secrets."""
    for i in range(teams):
        put_team(base_url, master, {**TEAM_BODY, "id": team_id(i)})
    secrets = []
    for body in key_bodies(keys, teams):
        status, answer, _ = _call(f"{base_url}/admin/keys", key=master, body=body)
        if status not in (200, 201) or not isinstance(answer, dict) or not isinstance(answer.get("key"), str):
            raise BenchError(f"POST /admin/keys answered {status}: {answer}")
        secrets.append(str(answer["key"]))
    return secrets


def keys_env(secrets: Sequence[str]) -> dict[str, str]:
    """What ``wrk_keys.lua`` reads besides ``wrk_post.lua``'s variables."""
    return {
        "BENCH_POST_SCRIPT": str(SCRIPT),
        "BENCH_KEY_HEADER": CHAT.key_header,
        "BENCH_KEYS": "\n".join(CHAT.key_prefix + s for s in secrets),
    }


def keys_load(gw: GatewayServer, pinning: Pinning, connections: int, secrets: Sequence[str]) -> Load:
    """wrk posting the chat alias, taking the keys in turn."""
    env = keys_env(secrets)

    def load(scenario: str, seconds: int) -> WrkResult:
        return run_wrk(
            gw.chat_url,
            scenario=scenario,
            target="redis",
            connections=connections,
            duration_s=seconds,
            pinning=pinning,
            model=JSON_ALIAS,
            stream=False,
            script=KEYS_SCRIPT,
            extra_env=env,
        )

    return load


def verdict(plan: Plan, result: SoakResult) -> tuple[bool, list[str]]:
    """Whether the soak met the target, and the lines that say so."""
    what = (
        f"soak_redis: {plan.keys} keys in {plan.teams} teams, key records read again every "
        f"{plan.refresh_interval_s:g} s, {plan.connections} connections"
    )
    growth = result.growth_mib
    if result.errors or result.ok_requests == 0:
        return False, [what, "soak_redis: FAILED - requests failed (see the !! lines)"]
    if growth is None:
        return False, [what, "soak_redis: FAILED - the gateway's RSS could not be read"]
    met = growth < TARGET_GROWTH_MIB
    mark = "met" if met else "NOT met"
    return met, [
        what,
        f"soak_redis: RSS growth {growth:+.2f} MiB over {result.requests:,} requests "
        f"(target < {TARGET_GROWTH_MIB:g} MiB): {mark}",
    ]


def run(plan: Plan, out: Out = print) -> tuple[bool, SoakResult]:
    pinning = Pinning.detect()
    out(f"bench.soak_redis: {pinning.reason}")
    with tempfile.TemporaryDirectory(prefix="gw-soak-redis-") as tmp:
        workdir = Path(tmp)
        with NginxServer(workdir, pinning) as nginx, RedisServer(workdir, pinning) as redis:
            gw = GatewayServer.behind(
                nginx.base,
                workdir,
                pinning,
                name="soak-redis",
                transform=lambda bare: soak_config(bare, redis.url, plan.refresh_interval_s),
            )
            with gw:
                out(f"bench.soak_redis: gateway pid {gw.pid} on {gw.base}, redis on {redis.url}")
                secrets = provision(gw.base, gw.master_key, plan.keys, plan.teams)
                result = run_soak(
                    gw,
                    pinning=pinning,
                    requests=plan.requests,
                    connections=plan.connections,
                    max_s=plan.max_s,
                    warmup_s=plan.warmup_s,
                    out=out,
                    load=keys_load(gw, pinning, plan.connections, secrets),
                )
    met, lines = verdict(plan, result)
    for line in [*result.lines(), *lines]:
        out(line)
    return met, result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    exit_cleanly_on_signals()
    try:
        plan = plan_of(args)
        met, result = run(plan)
    except BenchError as exc:
        print(f"bench.soak_redis: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.soak_redis: interrupted; the gateway, nginx and redis-server were stopped", file=sys.stderr)
        return 130
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({"plan": asdict(plan), "soak": result.to_json()}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
