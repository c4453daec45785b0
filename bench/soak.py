"""``--soak N``: N requests through the gateway (non-streaming), watching its RSS.

wrk runs for a duration, not a request count, so the soak runs it in chunks
sized from the measured rate until N responses have come back (or the time cap
is reached); a background thread samples the gateway's RSS every few seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.gateway_proc import JSON_ALIAS, GatewayServer
from bench.procs import MemSample, Pinning
from bench.wrk import WrkResult, run_wrk

FIRST_CHUNK_S = 5
MAX_CHUNK_S = 15

Load = Callable[[str, int], WrkResult]
"""One wrk run against the gateway: (scenario name, seconds) -> its result."""


@dataclass
class SoakResult:
    target_requests: int
    requests: int
    ok_requests: int
    duration_s: float
    errors: int
    error_summaries: list[str]
    rss_after_warmup_mib: float | None
    rss_end_mib: float | None
    peak_hwm_mib: float | None
    stopped: str
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS MiB)

    @property
    def rps(self) -> float:
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def growth_mib(self) -> float | None:
        if self.rss_after_warmup_mib is None or self.rss_end_mib is None:
            return None
        return self.rss_end_mib - self.rss_after_warmup_mib

    @property
    def growth_per_100k_mib(self) -> float | None:
        """RSS growth per 100,000 requests sent."""
        growth = self.growth_mib
        return growth / self.requests * 100_000 if growth is not None and self.requests else None

    @property
    def second_half_growth_mib(self) -> float | None:
        """RSS growth over the second half of the soak: a leak keeps growing, warm-up does not."""
        if len(self.samples) < 2:
            return None
        half = self.samples[-1][0] / 2
        mid = next(rss for at, rss in self.samples if at >= half)
        return self.samples[-1][1] - mid

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rps": self.rps,
            "growth_mib": self.growth_mib,
            "growth_per_100k_mib": self.growth_per_100k_mib,
            "second_half_growth_mib": self.second_half_growth_mib,
        }

    def lines(self) -> list[str]:
        growth, per_100k = self.growth_mib, self.growth_per_100k_mib
        out = [
            f"soak: {self.requests:,} requests ({self.ok_requests:,} good) of {self.target_requests:,} "
            f"in {self.duration_s:.1f}s = {self.rps:,.0f} req/s; stopped: {self.stopped}",
            f"soak RSS after warm-up: {_mib(self.rss_after_warmup_mib)}, at end: {_mib(self.rss_end_mib)}, "
            f"growth: {_mib(growth, signed=True)}"
            + (f" ({per_100k:+.3f} MiB per 100k requests)" if per_100k is not None else ""),
            f"soak RSS growth over its second half: {_mib(self.second_half_growth_mib, signed=True)}; "
            f"peak memory (VmHWM): {_mib(self.peak_hwm_mib)}",
        ]
        if self.errors:
            out.append(f"!! soak had {self.errors} errors: {' | '.join(self.error_summaries)}")
        return out


def _mib(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f} MiB" if signed else f"{value:.1f} MiB"


def next_chunk_s(remaining: int, rate: float, *, max_s: int = MAX_CHUNK_S) -> int:
    """Seconds for the next wrk chunk: enough for ``remaining`` responses at ``rate``, 1..max_s."""
    if rate <= 0:
        return max_s
    return max(1, min(max_s, math.ceil(remaining / rate)))


def _chat_load(gw: GatewayServer, pinning: Pinning, connections: int) -> Load:
    def load(scenario: str, seconds: int) -> WrkResult:
        return run_wrk(
            gw.chat_url,
            scenario=scenario,
            target="gateway",
            duration_s=seconds,
            api_key=gw.key,
            connections=connections,
            pinning=pinning,
            model=JSON_ALIAS,
            stream=False,
        )

    return load


class _Sampler(threading.Thread):
    def __init__(self, read: Callable[[], MemSample | None], every_s: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.read, self.every_s = read, every_s
        self.samples: list[MemSample] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            sample = self.read()
            if sample is not None:
                self.samples.append(sample)
            self.halt.wait(self.every_s)


def run_soak(
    gw: GatewayServer,
    *,
    pinning: Pinning,
    requests: int,
    connections: int,
    max_s: float,
    warmup_s: int,
    sample_every_s: float = 2.0,
    out: Callable[[str], None] = print,
    load: Load | None = None,
) -> SoakResult:
    """Warm up for ``warmup_s``, then send ``requests`` in wrk chunks (``load``: by default
    the chat alias with ``gw.key``, non-streaming), sampling the gateway's RSS."""
    wrk = load or _chat_load(gw, pinning, connections)
    out(f"soak: warm-up {warmup_s}s, then {requests:,} requests at {connections} connections (cap {max_s:.0f}s)")
    wrk("soak-warmup", warmup_s)
    after_warmup = gw.mem()
    sampler = _Sampler(gw.mem, sample_every_s)
    sampler.start()
    chunks: list[WrkResult] = []
    start = time.monotonic()
    stopped = "reached the request count"
    try:
        done = 0
        chunk_s = FIRST_CHUNK_S
        while done < requests:
            elapsed = time.monotonic() - start
            if elapsed >= max_s:
                stopped = f"time cap of {max_s:.0f}s"
                break
            chunk_s = min(chunk_s, max(1, math.ceil(max_s - elapsed)))
            res = wrk("soak", chunk_s)
            chunks.append(res)
            done += res.requests
            mem = gw.mem()
            out(
                f"  soak: {done:,}/{requests:,} requests, {res.raw_rps:,.0f} req/s, "
                f"RSS {_mib(mem.rss_mib if mem else None)}" + (f"  !! {res.error_summary()}" if res.has_errors else "")
            )
            if res.requests == 0:
                stopped = "no responses in the last chunk"
                break
            chunk_s = next_chunk_s(requests - done, res.raw_rps)
    finally:
        sampler.halt.set()
        sampler.join(timeout=5)
    end = gw.mem()
    samples = [*sampler.samples, *([end] if end else [])]
    hwms = [s.hwm_mib for s in samples]
    return SoakResult(
        target_requests=requests,
        requests=sum(c.requests for c in chunks),
        ok_requests=sum(c.ok_requests for c in chunks),
        duration_s=sum(c.duration_s for c in chunks),
        errors=sum(c.error_count for c in chunks),
        error_summaries=[c.error_summary() for c in chunks if c.has_errors],
        rss_after_warmup_mib=after_warmup.rss_mib if after_warmup else None,
        rss_end_mib=end.rss_mib if end else None,
        peak_hwm_mib=max(hwms) if hwms else None,
        stopped=stopped,
        samples=[(round(s.at - start, 2), round(s.rss_mib, 2)) for s in samples],
    )
