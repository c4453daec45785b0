"""Running wrk with ``wrk_post.lua`` and reading its results.

Numbers come from the script's ``done()`` line (``BENCH_JSON {...}``, latencies
in microseconds); wrk's own text summary is parsed too, as a cross-check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.apis import CHAT, Api, wrk_env
from bench.procs import LOAD_CORE, BenchError, Pinning, die_with_parent

SCRIPT = Path(__file__).with_name("wrk_post.lua")
MARKER = "BENCH_JSON "
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME_RE = r"([\d.]+)(us|ms|s|m|h)"


def to_ms(value: str, unit: str) -> float:
    """A wrk time (``"1.23"``, ``"ms"``) in milliseconds."""
    return float(value) * _UNITS_MS[unit]


@dataclass
class WrkResult:
    """One wrk run. Latencies are in milliseconds; ``statuses`` counts responses by HTTP status."""

    scenario: str
    target: str
    connections: int
    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    statuses: dict[int, int]
    bad_bodies: int
    text_rps: float | None = None
    command: list[str] = field(default_factory=list)

    @property
    def non_2xx(self) -> int:
        counted = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return max(counted, self.errors.get("status", 0))  # wrk's own count: status > 399

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.get(kind, 0) for kind in ("connect", "read", "write", "timeout"))

    @property
    def error_count(self) -> int:
        return self.non_2xx + self.socket_errors + self.bad_bodies

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0 or self.requests == 0

    @property
    def ok_requests(self) -> int:
        return max(0, self.requests - self.non_2xx - self.bad_bodies)

    @property
    def rps(self) -> float:
        """Good responses (2xx with a well-formed body) per second: errors are not throughput."""
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def raw_rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def error_summary(self) -> str:
        parts: list[str] = []
        bad_status = sorted((code, n) for code, n in self.statuses.items() if not 200 <= code < 300)
        if bad_status:
            parts.append("HTTP " + ", ".join(f"{code}x{n}" for code, n in bad_status))
        elif self.errors.get("status", 0):
            parts.append(f"HTTP >399 x{self.errors['status']}")
        parts += [f"{kind} {self.errors[kind]}" for kind in ERROR_KINDS if kind != "status" and self.errors.get(kind)]
        if self.bad_bodies:
            parts.append(f"bad body x{self.bad_bodies}")
        if self.requests == 0:
            parts.append("no responses")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["statuses"] = {str(code): n for code, n in sorted(self.statuses.items())}
        data.update(
            rps=self.rps,
            raw_rps=self.raw_rps,
            non_2xx=self.non_2xx,
            error_count=self.error_count,
            has_errors=self.has_errors,
            error_summary=self.error_summary(),
        )
        return data


def parse_done_json(stdout: str) -> dict[str, Any]:
    """The object printed by the Lua ``done()`` (the last ``BENCH_JSON`` line)."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ValueError("wrk printed no BENCH_JSON line (was the script's done() run?)")
    data = json.loads(lines[-1][len(MARKER) :])
    if not isinstance(data, dict):
        raise ValueError("BENCH_JSON is not an object")
    return data


def parse_text(stdout: str) -> dict[str, Any]:
    """wrk's human summary: requests/s, requests, non-2xx count, socket errors, latency percentiles (ms)."""
    out: dict[str, Any] = {"non_2xx": 0, "socket_errors": {}, "percentiles_ms": {}}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", stdout):
        out["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in " + _TIME_RE, stdout):
        out["requests"] = int(m.group(1))
        out["duration_ms"] = to_ms(m.group(2), m.group(3))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", stdout):
        out["non_2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout):
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True))
    for m in re.finditer(r"^\s+(\d+(?:\.\d+)?)%\s+" + _TIME_RE + r"\s*$", stdout, re.MULTILINE):
        out["percentiles_ms"][m.group(1)] = to_ms(m.group(2), m.group(3))
    return out


def result_from_output(stdout: str, *, scenario: str, target: str, connections: int) -> WrkResult:
    data = parse_done_json(stdout)
    lat = data["latency_us"]
    text = parse_text(stdout)
    return WrkResult(
        scenario=scenario,
        target=target,
        connections=connections,
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        bytes=int(data["bytes"]),
        errors={kind: int(data["errors"].get(kind, 0)) for kind in ERROR_KINDS},
        latency_ms={name: float(value) / 1000 for name, value in lat.items()},
        statuses={int(code): int(n) for code, n in data.get("statuses", {}).items()},
        bad_bodies=int(data.get("bad_bodies", 0)),
        text_rps=text.get("rps"),
    )


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return "wrk " + text.splitlines()[0].split("Copyright")[0].removeprefix("wrk").strip() if text else "unknown"


def run_wrk(
    url: str,
    *,
    scenario: str,
    target: str,
    connections: int,
    duration_s: int,
    pinning: Pinning,
    model: str,
    stream: bool,
    api_key: str = "",
    temperature: int | None = None,
    timeout_s: int = 10,
    api: Api = CHAT,
    script: Path = SCRIPT,
    extra_env: Mapping[str, str] | None = None,
) -> WrkResult:
    """One wrk run (one thread) posting ``api``'s request to ``url``; raises :class:`BenchError`
    if wrk fails. ``temperature`` (absent when None) is added to the request body. ``script``
    and ``extra_env``: another Lua script built on ``wrk_post.lua``, and what it reads."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    cmd = [*pinning.prefix(LOAD_CORE), "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    cmd += ["--timeout", f"{timeout_s}s", "-s", str(script), url]
    env = {
        **os.environ,
        **wrk_env(api, model, stream=stream, key=api_key, temperature=temperature),
        **(extra_env or {}),
    }
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration_s + 60}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise BenchError(f"wrk failed (status {proc.returncode}): {' '.join(cmd)}\n{proc.stderr}{proc.stdout}")
    try:
        result = result_from_output(proc.stdout, scenario=scenario, target=target, connections=connections)
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"cannot read wrk's output ({exc}):\n{proc.stdout}\n{proc.stderr}") from exc
    result.command = cmd
    return result
