"""Traffic control against the bare gateway: one row per variant (bare,
embedded, redis), the ratios vs bare and the targets, met or not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bench.report import GATEWAY, NGINX, ONE_CONN_SCENARIO, ratio, table
from bench.scenarios import CACHED_SCENARIO
from bench.wrk import WrkResult

BARE = "bare"
EMBEDDED = "embedded"
REDIS = "redis"
BACKENDS = (EMBEDDED, REDIS)
_EPS = 1e-9  # a value exactly at its limit meets it, whatever the float rounding
_TARGET_OF = {BARE: GATEWAY, EMBEDDED: EMBEDDED, REDIS: REDIS}  # variant -> WrkResult.target


@dataclass(frozen=True)
class Variant:
    """One gateway variant's headline numbers (None: not run)."""

    name: str
    json_rps: float | None
    one_conn_p50_ms: float | None
    added_p50_ms: float | None  # json-1conn p50 minus nginx's
    sse_rps: float | None
    cached_rps: float | None
    json_ratio: float | None  # json req/s divided by the bare gateway's
    sse_ratio: float | None
    added_vs_bare_ms: float | None  # json-1conn p50 minus the bare gateway's
    flagged: bool  # one of its runs (or a baseline) had errors

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    variant: str
    metric: Literal["json_ratio", "added_p50_ms"]
    op: Literal[">=", "<="]
    limit: float
    value: float | None
    met: bool | None  # None: not measured
    note: str = ""

    @property
    def label(self) -> str:
        if self.metric == "json_ratio":
            return f"{self.variant}: json req/s >= {self.limit:.0%} of bare"
        return f"{self.variant}: added p50 at 1 conn (vs nginx) <= {self.limit:g} ms"

    @property
    def status(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "NOT MET")

    def shown_value(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value:.1%}" if self.metric == "json_ratio" else f"{self.value:+.3f} ms"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label, "status": self.status}


TARGETS: tuple[tuple[str, Literal["json_ratio", "added_p50_ms"], Literal[">=", "<="], float], ...] = (
    (EMBEDDED, "json_ratio", ">=", 0.80),
    (REDIS, "json_ratio", ">=", 0.65),
    (EMBEDDED, "added_p50_ms", "<=", 1.5),
    (REDIS, "added_p50_ms", "<=", 1.5),
)


def _find(runs: Sequence[WrkResult], scenario: str, target: str) -> WrkResult | None:
    return next((r for r in runs if r.scenario == scenario and r.target == target), None)


def _rps(run: WrkResult | None) -> float | None:
    return run.rps if run is not None else None


def _p50(run: WrkResult | None) -> float | None:
    return run.latency_ms["p50"] if run is not None else None


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return ratio(a, b) if a is not None and b is not None else None


def variants(runs: Sequence[WrkResult]) -> list[Variant]:
    """The variants with at least one run, bare first. ``runs`` holds the nginx,
    bare gateway (target ``gateway``) and traffic-control runs (``embedded``, ``redis``)."""
    nginx_1 = _find(runs, ONE_CONN_SCENARIO, NGINX)
    bare_json, bare_1 = _find(runs, "json", GATEWAY), _find(runs, ONE_CONN_SCENARIO, GATEWAY)
    bare_sse = _find(runs, "sse", GATEWAY)
    out: list[Variant] = []
    for name, target in _TARGET_OF.items():
        mine = [r for r in runs if r.target == target]
        if not mine:
            continue
        json_run, one, sse = (
            _find(mine, "json", target),
            _find(mine, ONE_CONN_SCENARIO, target),
            _find(mine, "sse", target),
        )
        baselines = [r for r in (nginx_1, bare_json, bare_1, bare_sse) if r is not None]
        out.append(
            Variant(
                name=name,
                json_rps=_rps(json_run),
                one_conn_p50_ms=_p50(one),
                added_p50_ms=_minus(_p50(one), _p50(nginx_1)),
                sse_rps=_rps(sse),
                cached_rps=_rps(_find(mine, CACHED_SCENARIO, target)),
                json_ratio=_ratio(_rps(json_run), _rps(bare_json)),
                sse_ratio=_ratio(_rps(sse), _rps(bare_sse)),
                added_vs_bare_ms=_minus(_p50(one), _p50(bare_1)),
                flagged=any(r.has_errors for r in (*mine, *baselines)),
            )
        )
    return out


def targets(found: Sequence[Variant]) -> list[Target]:
    """Each target, met or not; one whose runs had errors is not met."""
    by_name = {v.name: v for v in found}
    out: list[Target] = []
    for name, metric, op, limit in TARGETS:
        v = by_name.get(name)
        value = getattr(v, metric) if v is not None else None
        if value is None:
            out.append(Target(name, metric, op, limit, None, None, "not measured"))
            continue
        met = value >= limit - _EPS if op == ">=" else value <= limit + _EPS
        if v is not None and v.flagged:
            out.append(Target(name, metric, op, limit, value, False, "runs had errors: numbers not clean"))
        else:
            out.append(Target(name, metric, op, limit, value, met))
    return out


def _n(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def variants_table(found: Sequence[Variant]) -> str:
    headers = [
        "variant",
        "json req/s",
        "vs bare",
        "1conn p50 ms",
        "added p50 vs nginx",
        "vs bare",
        "sse streams/s",
        "vs bare",
        "json-cached req/s",
        "",
    ]
    rows = [
        [
            v.name,
            _n(v.json_rps, ",.0f"),
            _n(v.json_ratio, ".1%"),
            _n(v.one_conn_p50_ms, ".3f"),
            _n(v.added_p50_ms, "+.3f"),
            _n(v.added_vs_bare_ms, "+.3f"),
            _n(v.sse_rps, ",.0f"),
            _n(v.sse_ratio, ".1%"),
            _n(v.cached_rps, ",.0f"),
            "!! runs had errors" if v.flagged else "",
        ]
        for v in found
    ]
    return table(headers, rows)


def targets_table(found: Sequence[Target]) -> str:
    rows = [[t.label, t.shown_value(), t.status, t.note] for t in found]
    return table(["target", "measured", "result", ""], rows)


def summary(runs: Sequence[WrkResult]) -> str:
    found = variants(runs)
    return "\n".join(["", variants_table(found), "", targets_table(targets(found))])


def to_json(runs: Sequence[WrkResult]) -> dict[str, Any]:
    found = variants(runs)
    return {"variants": [v.to_json() for v in found], "targets": [t.to_json() for t in targets(found)]}
