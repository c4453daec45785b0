"""Derived numbers (gateway vs nginx) and the printed tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.procs import MemSample
from bench.wrk import WrkResult

NGINX = "nginx"
GATEWAY = "gateway"
ONE_CONN_SCENARIO = "json-1conn"


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class Comparison:
    """The gateway against nginx direct for one scenario."""

    scenario: str
    nginx_rps: float
    gateway_rps: float
    ratio: float | None  # gateway requests/s divided by nginx's
    added_p50_ms: float
    added_p99_ms: float
    flagged: bool  # one of the two runs had errors: the numbers are not clean

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(nginx: WrkResult, gateway: WrkResult) -> Comparison:
    return Comparison(
        scenario=gateway.scenario,
        nginx_rps=nginx.rps,
        gateway_rps=gateway.rps,
        ratio=ratio(gateway.rps, nginx.rps),
        added_p50_ms=gateway.latency_ms["p50"] - nginx.latency_ms["p50"],
        added_p99_ms=gateway.latency_ms["p99"] - nginx.latency_ms["p99"],
        flagged=nginx.has_errors or gateway.has_errors,
    )


def comparisons(runs: Sequence[WrkResult]) -> list[Comparison]:
    """One comparison per scenario that was run against both targets, in run order."""
    by_key = {(r.scenario, r.target): r for r in runs}
    out: list[Comparison] = []
    for run in runs:
        if run.target == GATEWAY and (run.scenario, NGINX) in by_key:
            out.append(compare(by_key[(run.scenario, NGINX)], run))
    return out


def added_latency_one_conn(comps: Sequence[Comparison]) -> float | None:
    """Gateway p50 minus nginx p50 at one connection (ms): the latency the gateway adds."""
    return next((c.added_p50_ms for c in comps if c.scenario == ONE_CONN_SCENARIO), None)


@dataclass(frozen=True)
class MemoryReport:
    """The gateway's memory (MiB) at points of the run, and its peak (VmHWM)."""

    rss_start_mib: float | None
    rss_after_warmup_mib: float | None
    rss_end_mib: float | None
    peak_hwm_mib: float | None

    @classmethod
    def from_samples(
        cls, start: MemSample | None, after_warmup: MemSample | None, end: MemSample | None
    ) -> MemoryReport:
        hwms = [s.hwm_mib for s in (start, after_warmup, end) if s is not None]
        return cls(
            rss_start_mib=start.rss_mib if start else None,
            rss_after_warmup_mib=after_warmup.rss_mib if after_warmup else None,
            rss_end_mib=end.rss_mib if end else None,
            peak_hwm_mib=max(hwms) if hwms else None,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: the first column and untitled ones left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(c).ljust(w) if i == 0 or not headers[i] else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _num(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{suffix}"


def runs_table(runs: Sequence[WrkResult]) -> str:
    headers = ["scenario", "target", "conns", "requests/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors", ""]
    rows = [
        [
            r.scenario,
            r.target,
            str(r.connections),
            f"{r.rps:,.0f}",
            f"{r.latency_ms['p50']:.3f}",
            f"{r.latency_ms['p90']:.3f}",
            f"{r.latency_ms['p99']:.3f}",
            f"{r.requests:,}",
            str(r.error_count),
            f"!! ERRORS: {r.error_summary()}" if r.has_errors else "",
        ]
        for r in runs
    ]
    return table(headers, rows)


def comparisons_table(comps: Sequence[Comparison]) -> str:
    headers = ["scenario", "nginx req/s", "gateway req/s", "gateway/nginx", "added p50 ms", "added p99 ms", ""]
    rows = [
        [
            c.scenario,
            f"{c.nginx_rps:,.0f}",
            f"{c.gateway_rps:,.0f}",
            _num(c.ratio, ".1%"),
            f"{c.added_p50_ms:+.3f}",
            f"{c.added_p99_ms:+.3f}",
            "!! runs had errors" if c.flagged else "",
        ]
        for c in comps
    ]
    return table(headers, rows)


def memory_lines(mem: MemoryReport) -> list[str]:
    return [
        f"gateway RSS at start:        {_num(mem.rss_start_mib, '.1f', ' MiB')}",
        f"gateway RSS after warm-up:   {_num(mem.rss_after_warmup_mib, '.1f', ' MiB')}",
        f"gateway RSS at end:          {_num(mem.rss_end_mib, '.1f', ' MiB')}",
        f"gateway peak memory (VmHWM): {_num(mem.peak_hwm_mib, '.1f', ' MiB')}",
    ]


def summary(runs: Sequence[WrkResult], mem: MemoryReport | None) -> str:
    comps = comparisons(runs)
    parts = ["", runs_table(runs)] if runs else []
    if comps:
        parts += ["", comparisons_table(comps)]
    added = added_latency_one_conn(comps)
    if added is not None:
        parts += ["", f"added latency p50 at 1 connection (gateway p50 - nginx p50): {added:+.3f} ms"]
    if mem is not None:
        parts += ["", *memory_lines(mem)]
    bad = [r for r in runs if r.has_errors]
    if bad:
        parts += ["", f"!! {len(bad)} run(s) had errors; their requests/s count only good responses:"]
        parts += [f"!!   {r.scenario} / {r.target}: {r.error_summary()}" for r in bad]
    return "\n".join(parts)
