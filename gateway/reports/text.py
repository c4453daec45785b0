"""Number formatting shared by the Markdown and HTML renderings."""

from __future__ import annotations

from gateway.reports.kpis import Kpi


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def usd(value: float) -> str:
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    text = f"{value:.6f}".rstrip("0")
    return "$" + (text + "0" if len(text.split(".")[1]) < 2 else text)


def count(value: int) -> str:
    return f"{value:,}"


def kpi_value(kpi: Kpi) -> str:
    if kpi.unit == "ms":
        return ms(kpi.value)
    return pct(kpi.value, 3 if kpi.name == "availability" else 2)


def kpi_target(kpi: Kpi) -> str:
    value = ms(kpi.target) if kpi.unit == "ms" else pct(kpi.target, 1)
    return f"{'≥' if kpi.comparison == '>=' else '≤'} {value}"


def verdict(met: bool | None) -> str:
    return "no data" if met is None else ("met" if met else "MISSED")
