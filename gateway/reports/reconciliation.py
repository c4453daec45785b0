"""The report's cost reconciliation: per provider and model alias, the cost that
upstreams reported themselves (``usage.cost``: OpenRouter and other
OpenAI-compatible servers) beside the gateway's own cost of the same requests.

Both figures are Prometheus counters (``gateway_cost_reported_usd_total`` and
``gateway_cost_compared_usd_total``, counted by the settlement for every priced
request whose usage carried a cost): the request records do not carry the
upstream's figure, so the section needs ``reports.prometheus_url``.

The drift of a row is ``(reported - gateway) / gateway``: above 0, the upstream
billed more than the gateway counted (its price table is low, so budgets count
too little); a row is flagged when the drift is beyond
``pricing.drift_alert_share`` either way, or when the gateway counted nothing
for requests the upstream billed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

REPORTED = "gateway_cost_reported_usd_total"
COMPARED = "gateway_cost_compared_usd_total"

Key = tuple[str, str]
"""(provider, alias)."""


class VectorError(ValueError):
    """Prometheus answered something that is not a usable vector."""


@dataclass(frozen=True)
class ReconciliationRow:
    provider: str
    alias: str
    reported_usd: float
    """What the upstream reported for these requests."""
    gateway_usd: float
    """What the gateway priced the same requests at."""
    drift: float | None
    """``(reported - gateway) / gateway``; None when the gateway counted $0."""
    flagged: bool


def queries(rng: str, selector: str = "") -> tuple[str, str]:
    """The reported and the gateway's totals over a range (``"86400s"``), by provider and alias."""
    plain = f"{{{selector}}}" if selector else ""

    def total(name: str) -> str:
        return f"sum by (provider, alias) (increase({name}{plain}[{rng}]))"

    return total(REPORTED), total(COMPARED)


def vector_of(body: bytes) -> dict[Key, float]:
    """An instant query's answer as ``{(provider, alias): value}`` (NaN samples left out)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VectorError("Prometheus answered something that is not JSON") from None
    if not isinstance(data, dict) or data.get("status") != "success":
        error = data.get("error") if isinstance(data, dict) else None
        raise VectorError(f"Prometheus refused the query: {error or 'unexpected answer'}")
    result = data.get("data", {}).get("result")
    if not isinstance(result, list):
        raise VectorError("Prometheus answered without a result")
    out: dict[Key, float] = {}
    for sample in result:
        try:
            labels, value = sample["metric"], float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise VectorError("Prometheus answered a sample without a value") from None
        if not math.isnan(value):
            out[(str(labels.get("provider", "")), str(labels.get("alias", "")))] = value
    return out


def reconcile(reported: Mapping[Key, float], gateway: Mapping[Key, float], share: float) -> list[ReconciliationRow]:
    """One row per provider and alias with a reported cost: flagged rows first, the largest drift first."""
    rows = []
    for key, theirs in reported.items():
        ours = gateway.get(key, 0.0)
        drift = (theirs - ours) / ours if ours > 0 else None
        flagged = abs(drift) > share if drift is not None else theirs > 0
        rows.append(ReconciliationRow(key[0], key[1], round(theirs, 9), round(ours, 9), drift, flagged))
    return sorted(rows, key=lambda r: (not r.flagged, -_size(r), r.provider, r.alias))


def _size(row: ReconciliationRow) -> float:
    """How far apart the figures are (a billed request costed at $0 is the farthest)."""
    if row.drift is None:
        return math.inf if row.flagged else 0.0
    return abs(row.drift)
