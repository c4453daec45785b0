"""``python -m bench.clients``: which HTTP client should the gateway forward with?

One run: nginx direct, then a minimal forwarding ASGI app (``bench.clients_app`` run by
``bench.floor``: uvicorn + uvloop + httptools, one process pinned to core 0) using one shared
aiohttp.ClientSession, then the same app using one shared httpx.AsyncClient,
all under the same wrk load at the nginx JSON location.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.clients_app import CLIENTS
from bench.floor import FloorServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals
from bench.report import table
from bench.wrk import WrkResult, run_wrk


def _client_run(client: str, tmp: Path, nginx: NginxServer, pinning: Pinning, args: argparse.Namespace) -> WrkResult:
    with FloorServer(tmp, pinning, json_url=nginx.json_url, client=client) as app:
        for scenario, seconds in (("warmup", args.warmup), ("json", args.duration)):
            result = run_wrk(
                app.chat_url,
                scenario=scenario,
                target=client,
                connections=args.connections,
                duration_s=seconds,
                pinning=pinning,
                model="bench-json",
                stream=False,
            )
        return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per client (default 2)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    args = p.parse_args(argv)
    exit_cleanly_on_signals()
    pinning = Pinning.detect()
    print(f"bench.clients: {pinning.reason}")
    runs: list[WrkResult] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gateway-bench-clients-") as tmp,
            NginxServer(Path(tmp), pinning) as nginx,
        ):
            runs.append(
                run_wrk(
                    nginx.json_url,
                    scenario="json",
                    target="nginx direct",
                    connections=args.connections,
                    duration_s=args.duration,
                    pinning=pinning,
                    model="bench-json",
                    stream=False,
                )
            )
            for client in CLIENTS:
                runs.append(_client_run(client, Path(tmp), nginx, pinning, args))
                print(f"  {client}: {runs[-1].rps:,.0f} req/s")
    except BenchError as exc:
        print(f"bench.clients: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    headers = ["target", "requests/s", "p50 ms", "p90 ms", "p99 ms", "errors", ""]
    rows = [
        [
            r.target,
            f"{r.rps:,.0f}",
            f"{r.latency_ms['p50']:.3f}",
            f"{r.latency_ms['p90']:.3f}",
            f"{r.latency_ms['p99']:.3f}",
            str(r.error_count),
            f"!! {r.error_summary()}" if r.has_errors else "",
        ]
        for r in runs
    ]
    print(f"\nforwarding app at {args.connections} connections, {args.duration}s per run:\n" + table(headers, rows))
    return 1 if any(r.has_errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
