"""Small inline SVG charts (no script, no external resource)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

Fmt = Callable[[float], str]

BAR = "#3b6ea5"
BAD = "#c0392b"
WARN = "#d68910"
GOOD = "#1e8449"
AXIS = "#888"


def _text(x: float, y: float, body: str, anchor: str = "start", size: int = 11, fill: str = "#222") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">{escape(body)}</text>'
    )


def column_chart(
    title: str,
    points: Sequence[tuple[str, float | None]],
    fmt: Fmt,
    *,
    target: float | None = None,
    target_label: str = "target",
    width: int = 640,
    height: int = 220,
) -> str:
    """Vertical bars, one per label (days), with an optional target line; a
    bar over the target is drawn red."""
    left, right, top, bottom = 56, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in points if v is not None]
    peak = max([*values, target or 0.0, 0.0]) or 1.0
    step = plot_w / max(1, len(points))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        _text(left, 16, title, size=13),
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>',
        _text(left - 4, top + 4, fmt(peak), "end", 10, AXIS),
        _text(left - 4, top + plot_h, fmt(0), "end", 10, AXIS),
    ]
    every = max(1, len(points) // 10)
    for i, (label, value) in enumerate(points):
        x = left + i * step
        if value is not None:
            h = plot_h * value / peak
            colour = BAD if target is not None and value > target else BAR
            parts.append(
                f'<rect x="{x + step * 0.15:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {escape(fmt(value))}</title></rect>'
            )
        if i % every == 0:
            parts.append(_text(x + step / 2, top + plot_h + 14, label[5:] if len(label) == 10 else label, "middle", 10))
    if target is not None:
        y = top + plot_h - plot_h * target / peak
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{BAD}" stroke-dasharray="4 3"/>'
        )
        parts.append(_text(left + plot_w, y - 3, f"{target_label} {fmt(target)}", "end", 10, BAD))
    parts.append("</svg>")
    return "".join(parts)


def bar_list(
    title: str,
    rows: Sequence[tuple[str, float]],
    fmt: Fmt,
    *,
    limit_at: float | None = None,
    width: int = 640,
) -> str:
    """Horizontal bars, one per row (teams, aliases). With ``limit_at`` the
    values are ratios of a limit: a bar at or over it is red, over 80 % amber."""
    label_w, right, row_h, top = 170, 90, 22, 28
    height = top + row_h * max(1, len(rows)) + 8
    plot_w = width - label_w - right
    peak = max([v for _, v in rows] + [limit_at or 0.0, 0.0]) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        _text(0, 16, title, size=13),
    ]
    if not rows:
        parts.append(_text(label_w, top + 14, "no data", fill=AXIS))
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = plot_w * max(0.0, value) / peak
        colour = BAR
        if limit_at is not None:
            colour = BAD if value >= limit_at else (WARN if value >= 0.8 * limit_at else GOOD)
        parts.append(_text(label_w - 6, y + 14, label[:26], "end"))
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
        )
        parts.append(_text(label_w + w + 4, y + 14, fmt(value)))
    if limit_at is not None:
        x = label_w + plot_w * limit_at / peak
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 6}" stroke="{BAD}" stroke-dasharray="4 3"/>'
        )
    parts.append("</svg>")
    return "".join(parts)
