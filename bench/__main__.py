"""``python -m bench``: load benchmark of the gateway against nginx direct.

Exit status: 0 clean run, 1 a run had errors (non-2xx, socket errors, bad
bodies) or a probe failed, 2 bad usage or a setup failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.procs import BenchError, at_least_one, exit_cleanly_on_signals
from bench.runner import SCENARIO_NAMES, Options, run
from bench.scenarios import CACHED_SCENARIO

DEFAULT_SOAK = 100_000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=at_least_one, default=10, help="seconds per measured run (default 10)")
    p.add_argument("--connections", type=at_least_one, default=16, help="connections of the loaded runs (default 16)")
    p.add_argument("--warmup", type=at_least_one, default=3, help="seconds of warm-up through the gateway (default 3)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        choices=[*SCENARIO_NAMES, CACHED_SCENARIO, "soak"],
        help=f"run only this scenario (repeatable); 'soak' runs only the soak; '{CACHED_SCENARIO}' only with --traffic",
    )
    p.add_argument(
        "--traffic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the bare gateway, measure it again with traffic control on (limits, budgets, prices, cache; "
        "a client key), with the embedded state backend, then Redis (default: on)",
    )
    p.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help=f"also send N requests through the gateway watching its RSS (e.g. {DEFAULT_SOAK})",
    )
    p.add_argument("--soak-max-seconds", type=float, default=900.0, help="time cap of the soak (default 900)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write all results as JSON")
    p.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'gateway serve' (repeatable), e.g. --gateway-arg=--log-level=warning",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    soak = args.soak or (DEFAULT_SOAK if "soak" in args.only else 0)
    opts = Options(
        duration_s=args.duration,
        connections=args.connections,
        only=args.only,
        soak=soak,
        soak_max_s=args.soak_max_seconds,
        warmup_s=args.warmup,
        gateway_args=args.gateway_arg,
        json_out=args.json_out,
        traffic=args.traffic,
    )
    exit_cleanly_on_signals()
    try:
        outcome = run(opts)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; nginx and the gateway were stopped", file=sys.stderr)
        return 130
    if outcome.failed:
        print("bench: FAILED - some runs had errors (see the !! lines)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
