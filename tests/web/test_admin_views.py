"""The operator page's arithmetic: a sync's progress, and the geometry of the quota chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.strava.quota import WindowUsage
from service.web.admin.charts import HEIGHT, WIDTH, usage_chart
from service.web.admin.views import percent


@pytest.mark.parametrize(
    ("phase", "status", "hydrated", "waiting", "expected"),
    [
        ("done", None, 0, 0, 0),  # no job ever ran
        ("listing", "queued", 0, 0, 0),
        ("listing", "running", 30, 70, 30),
        ("listing", "running", 100, 0, 99),  # the listing may queue more
        ("hydrating", "completed", 299, 1, 99),
        ("done", "completed", 0, 0, 100),
        ("done", "completed", 120, 0, 100),
        ("done", "cancelled", 40, 60, 40),
    ],
)
def test_progress_is_the_share_of_hydrations_done_and_100_only_once_all_is_done(
    phase: str, status: str | None, hydrated: int, waiting: int, expected: int
) -> None:
    assert percent(phase, status, hydrated, waiting) == expected


def test_the_chart_fits_the_limit_and_the_tallest_window_and_names_each_bar() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    history = [
        WindowUsage(start + timedelta(minutes=15 * i), {"overall": used, "read": 0})
        for i, used in enumerate([0, 100, 250])
    ]

    chart = usage_chart("overall", history, limit=200, window_seconds=900)

    top = 250 * 1.1  # the tallest bar, with headroom
    assert [bar.height for bar in chart.bars] == [0, round(HEIGHT * 100 / top, 2),
                                                  round(HEIGHT * 250 / top, 2)]  # fmt: skip
    assert [round(bar.y + bar.height, 2) for bar in chart.bars] == [HEIGHT] * 3
    assert chart.limit_y == round(HEIGHT - HEIGHT * 200 / top, 2)
    assert all(a.x + a.width < b.x for a, b in zip(chart.bars, chart.bars[1:], strict=False))
    assert chart.bars[-1].x + chart.bars[-1].width <= WIDTH
    assert chart.bars[1].title == "00:15 UTC: 100 of 200"
    assert (chart.peak, chart.total, chart.window, chart.span) == (250, 350, "15-minute", "45 min")


def test_an_idle_day_draws_the_limit_near_the_top() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    history = [WindowUsage(start + timedelta(minutes=15 * i), {}) for i in range(96)]

    chart = usage_chart("read", history, limit=100, window_seconds=900)

    assert {bar.height for bar in chart.bars} == {0}
    assert 0 < chart.limit_y < HEIGHT * 0.2
    assert chart.span == "24 h"
