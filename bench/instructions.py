"""Instructions per request by route, counted by callgrind: a measure the host's noise cannot move.

On a shared machine requests/s and CPU time per request drift by 10-20 % between
runs, more than the differences between the client APIs that ``bench.ratio --apis``
compares. This runs the bare gateway (uvicorn, the bench config, the bench nginx
upstream) under valgrind's callgrind and sends each route's requests over one
keep-alive connection; callgrind's counters are zeroed before and dumped after
each route's requests, so each count is the gateway process's own user-space
instructions (all its threads: the state backend's writer too) for exactly those
requests, the same from run to run within a fraction of a percent.

Instructions are not time: kernel work (sockets, epoll) is not in them and is the
same for every route, so the ratios overstate the differences in CPU time
somewhat; and the gateway runs ~50 times slower under callgrind, so per-batch work
(the embedded store's write-behind batch of 10 ms) is shared by fewer requests than
under load. What they show exactly is how much more code a route runs than chat
completions does.

    python -m bench.instructions [--requests 300] [--only chat,messages-gpt] [--json|--stream]

Needs valgrind (``apt-get install valgrind``); not part of ``make test``.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.apis import request_body, request_headers
from bench.gateway_proc import GatewayServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, exit_cleanly_on_signals
from bench.scenarios import ROUTES, Route

WARMUP = 60
"""Requests per route and kind before counting (imports, caches, the first connection)."""
BASELINE = "chat"


def dump_total(path: Path) -> int:
    """The instruction count of one callgrind dump (its ``totals:`` or ``summary:`` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise BenchError(f"{path} is not a callgrind dump: no totals line")


class CallgrindGateway(GatewayServer):
    """The bench gateway under callgrind, its dumps in ``dumps`` (make it with :meth:`behind`)."""

    @property
    def dumps(self) -> Path:
        return self.workdir / "dumps"

    def prepare(self) -> None:
        super().prepare()
        self.dumps.mkdir(exist_ok=True)
        self.ready_timeout_s = 300  # ~50 times slower to start
        self.stop_timeout_s = 60

    def command(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.dumps}/cg.%p", *super().command()]

    def _control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.pid)], capture_output=True, check=True, timeout=120)

    def count(self, send: int, one: Route, stream: bool, client: Client) -> int:
        """Instructions of ``send`` requests of ``one`` (zeroed before, dumped after)."""
        self._control("-z")
        for _ in range(send):
            client.post(one, stream)
        before = set(self.dumps.iterdir())
        self._control("-d")
        return sum(dump_total(p) for p in set(self.dumps.iterdir()) - before)


class Client:
    """One keep-alive connection; every answer must be a 200."""

    def __init__(self, port: int, key: str) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self._key = key

    def post(self, one: Route, stream: bool) -> None:
        body = request_body(one.api, one.alias(stream), stream=stream)
        self._conn.request("POST", one.api.path, body=body, headers=request_headers(one.api, self._key, stream=stream))
        answer = self._conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise BenchError(f"{one.name}: HTTP {answer.status}: {data[:300]!r}")


def table(counts: dict[tuple[str, bool], float], names: Sequence[str], kinds: Sequence[bool]) -> str:
    """Markdown: kIr per request by route and kind, in brackets the ratio to chat completions."""
    head = "| route | " + " | ".join("kIr/stream" if s else "kIr/request" for s in kinds) + " |"
    rows = [head, "|---|" + "---|" * len(kinds)]
    for name in names:
        cells = []
        for stream in kinds:
            value, base = counts[name, stream], counts.get((BASELINE, stream))
            ratio = f" ({value / base * 100:.1f} %)" if base and name != BASELINE else ""
            cells.append(f"{value:,.1f}{ratio}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def measure(names: Sequence[str], kinds: Sequence[bool], requests: int) -> dict[tuple[str, bool], float]:
    """kIr per request of each route and kind."""
    routes = {r.name: r for r in ROUTES}
    counts: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        work = Path(tmp)
        with (
            NginxServer(work, Pinning(False, "")) as nginx,
            CallgrindGateway.behind(nginx.base, work, Pinning(False, ""), name="callgrind") as gateway,
        ):
            client = Client(gateway.port, gateway.key)
            for stream in kinds:
                for name in names:
                    for _ in range(WARMUP):
                        client.post(routes[name], stream)
            for stream in kinds:
                for name in names:
                    ir = gateway.count(requests, routes[name], stream, client)
                    counts[name, stream] = ir / requests / 1000
                    print(f"{name:24s} {'stream' if stream else 'json':6s} {counts[name, stream]:9.1f} kIr", flush=True)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    known = [r.name for r in ROUTES]
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per route and kind (default 300)")
    parser.add_argument("--only", default=",".join(known), help=f"routes, comma-separated (of {', '.join(known)})")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--json", action="store_true", help="non-streaming requests only")
    kind.add_argument("--stream", action="store_true", help="streams only")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown route(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(known)}")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench.instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    kinds = [False] if args.json else [True] if args.stream else [False, True]
    exit_cleanly_on_signals()
    counts = measure(names, kinds, args.requests)
    print()
    print(table(counts, names, kinds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
