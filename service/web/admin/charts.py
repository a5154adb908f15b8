"""The operator page's chart of the last day of quota use: one bar per short window, drawn
as inline SVG by the template from the geometry computed here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.strava.quota import Bucket, WindowUsage

WIDTH = 480
HEIGHT = 96
# Room above the tallest bar or the limit line, so that neither touches the frame.
HEADROOM = 1.1


@dataclass(frozen=True)
class Bar:
    """One window's bar, in the chart's coordinates (y grows downwards); `title` is its
    tooltip."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class UsageChart:
    """A bucket's use of its short windows over the last day, against the window's limit."""

    bucket: Bucket
    window: str
    span: str
    width: int
    height: int
    bars: list[Bar]
    limit: int
    limit_y: float
    peak: int
    total: int


def usage_chart(
    bucket: Bucket, history: Sequence[WindowUsage], limit: int, window_seconds: int
) -> UsageChart:
    """The bars of `history` (oldest first, windows of `window_seconds`) scaled so that the
    limit and the tallest bar fit."""
    used = [window.used.get(bucket, 0) for window in history]
    peak = max(used, default=0)
    top = max(limit, peak, 1) * HEADROOM
    slot = WIDTH / max(len(history), 1)
    gap = min(1.0, slot / 4)
    bars = []
    for index, (window, count) in enumerate(zip(history, used, strict=True)):
        height = HEIGHT * count / top
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                title=f"{window.started_at:%H:%M} UTC: {count:,} of {limit:,}",
            )
        )
    return UsageChart(
        bucket=bucket,
        window=_window_name(window_seconds),
        span=_span(window_seconds * len(history)),
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        limit=limit,
        limit_y=round(HEIGHT - HEIGHT * limit / top, 2),
        peak=peak,
        total=sum(used),
    )


def _window_name(seconds: int) -> str:
    return f"{seconds // 60}-minute" if seconds % 60 == 0 else f"{seconds}-second"


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds / 60:g} min"
