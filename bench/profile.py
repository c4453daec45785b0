"""``python -m bench.profile``: where the gateway's time goes under load, as flame graphs.

For each case (bare, traffic control on the embedded backend, on Redis; chat completions
answered whole and streamed) it starts the gateway as ``bench.ratio`` does (one process pinned
to the server core, nginx and wrk on the other), warms it up, then samples it with py-spy
while wrk drives 16 connections: once into a flame graph (SVG), once into collapsed stacks,
from which the summary of the functions with the most samples of their own is drawn. Output:
``<out>/<case>.svg`` and ``<out>/summary.md`` (the collapsed stacks stay in a scratch folder).

py-spy is the `profile` dependency group (``uv sync --locked --group profile``); it reads the
process's memory, so it needs ptrace rights over it (root, or ``kernel.yama.ptrace_scope`` 0).

Exit status: 0 done, 2 bad usage or py-spy missing or refused.
"""

from __future__ import annotations

import argparse
import collections
import functools
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS, GatewayServer
from bench.nginx import NginxServer
from bench.procs import BenchError, Pinning, cpu_seconds, exit_cleanly_on_signals
from bench.redis_proc import RedisServer
from bench.traffic import embedded_state, provision, redis_state, traffic_config
from bench.wrk import run_wrk

RATE_HZ = 250
"""Samples a second: enough for a few thousand stacks a case, little overhead on the process."""
TOP = 25


@dataclass(frozen=True)
class Case:
    name: str
    state: str | None
    """None: bare (traffic control off); else the backend."""
    stream: bool


CASES = tuple(
    Case(f"{state or 'bare'}-{'stream' if stream else 'json'}", state, stream)
    for state in (None, "embedded", "redis")
    for stream in (False, True)
)


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise BenchError("py-spy is not installed: uv sync --locked --group test --group profile")
    return exe


def own_time(collapsed: Iterable[str], top: int = TOP) -> list[tuple[str, float]]:
    """The functions with the most samples of their own (the last frame of a stack), as
    (function, share of all samples); file paths shortened to the package, line numbers dropped."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])
        frame = re.sub(r"\(/\S*/(site-packages|lib/python3\.\d+|main)/", "(", frame)
        own[frame] += int(count)
        total += int(count)
    return [(frame, n / total) for frame, n in own.most_common(top)] if total else []


def record(exe: str, pid: int, seconds: int, fmt: str, out: Path) -> subprocess.Popen[bytes]:
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", fmt, "--nonblocking"]
    cmd += ["--duration", str(seconds), "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_case(case: Case, gw: GatewayServer, pinning: Pinning, seconds: int, out: Path, scratch: Path) -> str:
    """Both recordings of one case; the summary section for it."""
    model = SSE_ALIAS if case.stream else JSON_ALIAS

    def load(duration: int) -> tuple[float, float]:
        before = cpu_seconds(gw.pid) or 0.0
        result = run_wrk(
            gw.chat_url,
            scenario=case.name,
            target="gateway",
            connections=16,
            duration_s=duration,
            pinning=pinning,
            model=model,
            stream=case.stream,
            api_key=gw.key,
        )
        if result.has_errors:
            raise BenchError(f"{case.name}: {result.error_summary()}")
        used = (cpu_seconds(gw.pid) or 0.0) - before
        return result.rps, used / max(result.ok_requests, 1) * 1e6

    load(2)  # warm-up
    lines = [f"## {case.name}", ""]
    for fmt, path in (("flamegraph", out / f"{case.name}.svg"), ("raw", scratch / f"{case.name}.txt")):
        spy = record(py_spy(), gw.pid, seconds + 1, fmt, path)
        rps, cpu_us = load(seconds)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not path.exists():
            raise BenchError(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace').strip()[-500:]}")
        if fmt == "raw":
            lines.append(
                f"{rps:,.0f} {'streams' if case.stream else 'requests'}/s, {cpu_us:.0f} µs of CPU each "
                f"(while sampled); flame graph `{path.stem}.svg`. Own time, share of all samples:"
            )
            lines.append("")
            lines += [f"- {share * 100:4.1f} % `{frame}`" for frame, share in own_time(path.read_text().splitlines())]
            lines.append("")
    return "\n".join(lines)


def _with_state(bare: dict[str, Any], *, state: dict[str, Any]) -> dict[str, Any]:
    return traffic_config(bare, state=state)


def run(args: argparse.Namespace) -> Path:
    py_spy()  # refused before anything starts
    cases = [c for c in CASES if not args.only or c.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    pinning = Pinning.detect()
    sections = [f"# Flame graphs: `python -m bench.profile --duration {args.duration}`", "", pinning.reason, ""]
    with tempfile.TemporaryDirectory(prefix="gw-profile-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        nginx = stack.enter_context(NginxServer(workdir, pinning))
        redis = stack.enter_context(RedisServer(workdir, pinning)) if any(c.state == "redis" for c in cases) else None
        for case in cases:
            state = None
            if case.state == "embedded":
                state = embedded_state(workdir / case.name)
                (workdir / case.name).mkdir()
            elif case.state == "redis":
                assert redis is not None
                state = redis_state(redis.url)
            transform = None if state is None else functools.partial(_with_state, state=state)
            gw = GatewayServer.behind(nginx.base, workdir, pinning, name=f"profile-{case.name}", transform=transform)
            with gw:
                if state is not None:
                    gw.key = provision(gw.base, gw.master_key)
                sections.append(profile_case(case, gw, pinning, args.duration, args.out, workdir))
            print(f"bench.profile: {case.name} done", flush=True)
    summary: Path = args.out / "summary.md"
    summary.write_text("\n".join(sections))
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10, help="seconds sampled per recording (default 10)")
    p.add_argument("--out", type=Path, default=Path("docs/performance"), help="where the graphs go")
    p.add_argument("--only", action="append", default=[], choices=[c.name for c in CASES], help="one case (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_signals()
    args = parser().parse_args(argv)
    if args.duration < 1:
        print("bench.profile: --duration must be at least 1", file=sys.stderr)
        return 2
    try:
        summary = run(args)
    except BenchError as exc:
        print(f"bench.profile: {exc}", file=sys.stderr)
        return 2
    print(f"bench.profile: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
