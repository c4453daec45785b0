"""The arithmetic of ``bench.ratio``'s interleaved rounds: one value per variant and
round, each round's ratios, their medians and the verdicts against the targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("bare", "embedded", "redis")
BEFORE = "before"
"""The optional fourth variant: embedded traffic control from an earlier commit (``--before``)."""
POSTGRES = "postgres"
"""The optional variant of ``--postgres``: traffic control on PostgreSQL + Redis."""
TARGETS = {"embedded": 0.80, "redis": 0.65}  # the traffic-control issue's
BEFORE_TARGET = 0.95
"""A change may cost at most 5 % of throughput (the hardening issue's bar for its caps and journal)."""
POSTGRES_TARGET = 0.95
"""PostgreSQL + Redis within 5 % of Redis only (the PostgreSQL issue's: nothing on the
request path waits for PostgreSQL)."""


@dataclass
class Rounds:
    """One measured value per variant and round: requests/s (or, with ``lower_is_better``,
    a latency in ms), each variant weighed against ``base`` round by round."""

    rps: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    base: str = "bare"
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))
    """Per variant, the bound of its median ratio to ``base``: a floor, or with ``lower_is_better`` a ceiling."""
    lower_is_better: bool = False
    cell: str = ",.0f"
    """The format of a value in :meth:`lines`."""
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    """Ratios besides those to ``base``: per (variant, reference), the bound of the median of
    variant/reference; shown round by round after the ratios to ``base``."""
    limits: dict[str, float] = field(default_factory=dict)
    """Bounds on a variant's median value itself (not a ratio), in ``unit``: a floor, or
    with ``lower_is_better`` a ceiling (the added latency at one connection, in ms)."""
    unit: str = ""

    @property
    def variants(self) -> list[str]:
        return list(self.rps)

    def ratios(self, variant: str, to: str | None = None) -> list[float]:
        bases = self.rps[to or self.base]
        return [x / base for x, base in zip(self.rps[variant], bases, strict=True) if base > 0]

    def median_ratio(self, variant: str, to: str | None = None) -> float:
        ratios = self.ratios(variant, to)
        return statistics.median(ratios) if ratios else 0.0

    def columns(self) -> list[tuple[str, str]]:
        """The ratio columns, (variant, reference): each variant to ``base``, then the pairs."""
        return [(v, self.base) for v in self.variants if v != self.base] + list(self.pairs)

    def lines(self) -> list[str]:
        shown = self.columns()
        labels = [f"{v}/{to}" for v, to in shown]
        wide = {v: max(9, len(v)) for v in self.variants}
        wide |= {label: max(13, len(label)) for label in labels}  # no variant's name has a "/"
        head = "  ".join(f"{v:>{wide[v]}}" for v in self.variants)
        head += "".join(f"  {label:>{wide[label]}}" for label in labels)
        out = [f"{'round':>5}  {head}"]

        def row(label: str, values: dict[str, float], shares: list[float]) -> str:
            cells = "  ".join(f"{values[v]:{wide[v]}{self.cell}}" for v in self.variants)
            return f"{label:>5}  {cells}" + "".join(
                f"  {share:{wide[name]}.1%}" for name, share in zip(labels, shares, strict=True)
            )

        for i in range(len(self.rps[self.base])):
            values = {v: self.rps[v][i] for v in self.variants}
            shares = [values[v] / values[to] if values[to] > 0 else 0.0 for v, to in shown]
            out.append(row(str(i + 1), values, shares))
        if not self.rps[self.base]:
            return out
        medians = {v: statistics.median(self.rps[v]) for v in self.variants}
        out.append(row("median", medians, [self.median_ratio(v, to) for v, to in shown]))
        bounds = [(v, self.base, target) for v, target in self.targets.items()]
        bounds += [(v, to, target) for (v, to), target in self.pairs.items()]
        op = "<=" if self.lower_is_better else ">="
        for variant, to, target in bounds:
            got = self.median_ratio(variant, to)
            verdict = "met" if (got <= target if self.lower_is_better else got >= target) else "NOT MET"
            name = variant if to == self.base else f"{variant}/{to}"
            out.append(f"{name}: median of the per-round ratios {got:.1%} (target {op} {target:.0%}): {verdict}")
        for variant, limit in self.limits.items():
            got = statistics.median(self.rps[variant])
            verdict = "met" if (got <= limit if self.lower_is_better else got >= limit) else "NOT MET"
            bound = f"{op} {limit:{self.cell}} {self.unit}"
            out.append(f"{variant}: median {got:{self.cell}} {self.unit} (target {bound}): {verdict}")
        if BEFORE in self.rps:
            got = self.median_ratio("embedded", to=BEFORE)
            # lower is better (a latency, CPU per request): 95 % of the throughput is 1/0.95 of it
            least = 1 / BEFORE_TARGET if self.lower_is_better else BEFORE_TARGET
            verdict = "met" if (got <= least if self.lower_is_better else got >= least) else "NOT MET"
            ratio = f"median of the per-round ratios {got:.1%}"
            out.append(f"embedded now / before: {ratio} (target {op} {least:.0%}): {verdict}")
        return out

    def to_json(self) -> dict[str, Any]:
        ratios = {v: self.ratios(v) for v in self.targets}
        medians = {v: self.median_ratio(v) for v in self.targets}
        if BEFORE in self.rps:
            ratios["embedded/before"] = self.ratios("embedded", to=BEFORE)
            medians["embedded/before"] = self.median_ratio("embedded", to=BEFORE)
        for v, to in self.pairs:
            ratios[f"{v}/{to}"] = self.ratios(v, to)
            medians[f"{v}/{to}"] = self.median_ratio(v, to)
        data: dict[str, Any] = {"rps": self.rps, "ratios": ratios, "median_ratio": medians}
        if self.limits and self.rps[self.base]:
            data["median"] = {v: statistics.median(self.rps[v]) for v in self.limits}
        return data


def order(round_index: int, variants: Sequence[str] = VARIANTS) -> list[str]:
    """Each round starts with a different variant (bare, embedded, redis, bare ...)."""
    shift = round_index % len(variants)
    return [*variants[shift:], *variants[:shift]]
