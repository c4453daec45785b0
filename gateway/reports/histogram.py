"""A mergeable latency histogram with fixed logarithmic buckets.

Bucket ``i`` holds latencies in ``(2**((i-1)/16), 2**(i/16)]`` milliseconds
(bucket 0 holds everything up to 1 ms), so consecutive bounds differ by
4.4 %. The buckets are the same everywhere, so histograms from any number of
replicas and days merge by adding counts, and a percentile of the merged
histogram is the percentile of all the requests together (percentiles
themselves cannot be averaged).

A percentile is the upper bound of the bucket holding the nearest-rank
observation, capped at the largest latency seen: it is never below the true
value and at most 4.4 % above it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

STEPS_PER_DOUBLING = 16
MAX_BUCKET = STEPS_PER_DOUBLING * 30  # 2**30 ms, about 12 days: anything longer is clamped


def bucket_of(ms: float) -> int:
    """The bucket index of a latency in milliseconds."""
    if not ms > 1.0:  # also NaN and negatives
        return 0
    return min(MAX_BUCKET, math.ceil(STEPS_PER_DOUBLING * math.log2(ms) - 1e-9))


def upper_bound(index: int) -> float:
    """The largest latency (ms) bucket ``index`` holds."""
    return float(2.0 ** (index / STEPS_PER_DOUBLING))


@dataclass
class LatencyHistogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def observe(self, ms: float) -> None:
        if not math.isfinite(ms) or ms < 0:
            return
        index = bucket_of(ms)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1
        self.sum_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: LatencyHistogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.total += other.total
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) in ms; None with no observations."""
        if not 0 < q <= 1:
            raise ValueError(f"a quantile is in (0, 1], got {q}")
        if self.total == 0:
            return None
        rank = max(1, math.ceil(q * self.total - 1e-9))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(upper_bound(index), self.max_ms)
        return self.max_ms

    def mean(self) -> float | None:
        return self.sum_ms / self.total if self.total else None

    def share_over(self, ms: float) -> float | None:
        """The share of observations above ``ms`` (to the bucket: a bucket
        straddling ``ms`` counts as below it)."""
        if self.total == 0:
            return None
        limit = bucket_of(ms)
        return sum(n for i, n in self.counts.items() if i > limit) / self.total

    def to_json(self) -> dict[str, object]:
        return {
            "buckets": {str(i): n for i, n in sorted(self.counts.items())},
            "total": self.total,
            "sum_ms": self.sum_ms,
            "max_ms": self.max_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LatencyHistogram:
        buckets = data.get("buckets")
        counts = {int(i): int(n) for i, n in buckets.items()} if isinstance(buckets, dict) else {}
        return cls(counts, _int(data.get("total")), _float(data.get("sum_ms")), _float(data.get("max_ms")))


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
