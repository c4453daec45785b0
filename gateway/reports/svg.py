"""Small inline SVG charts (no script, no external resource), as geometry.

A chart is data: a title, a size and its shapes in drawing order. The markup
is written by the ``chart.svg`` template (``templates/``), which escapes every
text it carries, so labels made of user-supplied names (teams, aliases) are
never markup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

Fmt = Callable[[float], str]

BAR = "#3b6ea5"
BAD = "#c0392b"
WARN = "#d68910"
GOOD = "#1e8449"
AXIS = "#888"


@dataclass(frozen=True)
class Text:
    kind: ClassVar[str] = "text"
    x: float
    y: float
    body: str
    anchor: str = "start"
    size: int = 11
    fill: str = "#222"


@dataclass(frozen=True)
class Bar:
    """A rectangle with a tooltip (its SVG ``<title>``)."""

    kind: ClassVar[str] = "bar"
    x: float
    y: float
    width: float
    height: float
    fill: str
    tip: str


@dataclass(frozen=True)
class Line:
    kind: ClassVar[str] = "line"
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    dashed: bool = False


Shape = Text | Bar | Line


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)


def column_chart(
    title: str,
    points: Sequence[tuple[str, float | None]],
    fmt: Fmt,
    *,
    target: float | None = None,
    target_label: str = "target",
    width: int = 640,
    height: int = 220,
) -> Chart:
    """Vertical bars, one per label (days), with an optional target line; a
    bar over the target is drawn red."""
    left, right, top, bottom = 56, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in points if v is not None]
    peak = max([*values, target or 0.0, 0.0]) or 1.0
    step = plot_w / max(1, len(points))
    shapes: list[Shape] = [
        Text(left, 16, title, size=13),
        Line(left, top + plot_h, left + plot_w, top + plot_h, AXIS),
        Text(left - 4, top + 4, fmt(peak), "end", 10, AXIS),
        Text(left - 4, top + plot_h, fmt(0), "end", 10, AXIS),
    ]
    every = max(1, len(points) // 10)
    for i, (label, value) in enumerate(points):
        x = left + i * step
        if value is not None:
            h = plot_h * value / peak
            colour = BAD if target is not None and value > target else BAR
            shapes.append(Bar(x + step * 0.15, top + plot_h - h, step * 0.7, h, colour, f"{label}: {fmt(value)}"))
        if i % every == 0:
            shapes.append(Text(x + step / 2, top + plot_h + 14, label[5:] if len(label) == 10 else label, "middle", 10))
    if target is not None:
        y = top + plot_h - plot_h * target / peak
        shapes.append(Line(left, y, left + plot_w, y, BAD, dashed=True))
        shapes.append(Text(left + plot_w, y - 3, f"{target_label} {fmt(target)}", "end", 10, BAD))
    return Chart(title, width, height, shapes)


def bar_list(
    title: str,
    rows: Sequence[tuple[str, float]],
    fmt: Fmt,
    *,
    limit_at: float | None = None,
    width: int = 640,
) -> Chart:
    """Horizontal bars, one per row (teams, aliases). With ``limit_at`` the
    values are ratios of a limit: a bar at or over it is red, over 80 % amber."""
    label_w, right, row_h, top = 170, 90, 22, 28
    height = top + row_h * max(1, len(rows)) + 8
    plot_w = width - label_w - right
    peak = max([v for _, v in rows] + [limit_at or 0.0, 0.0]) or 1.0
    shapes: list[Shape] = [Text(0, 16, title, size=13)]
    if not rows:
        shapes.append(Text(label_w, top + 14, "no data", fill=AXIS))
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = plot_w * max(0.0, value) / peak
        colour = BAR
        if limit_at is not None:
            colour = BAD if value >= limit_at else (WARN if value >= 0.8 * limit_at else GOOD)
        shapes.append(Text(label_w - 6, y + 14, label[:26], "end"))
        shapes.append(Bar(label_w, y + 3, w, row_h - 6, colour, f"{label}: {fmt(value)}"))
        shapes.append(Text(label_w + w + 4, y + 14, fmt(value)))
    if limit_at is not None:
        x = label_w + plot_w * limit_at / peak
        shapes.append(Line(x, top, x, height - 6, BAD, dashed=True))
    return Chart(title, width, height, shapes)
