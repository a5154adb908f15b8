"""When waiting work of a tier should finish, at the allowance the scheduler reports for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import TIER_SHARES, FakeClock

from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.eta import finish_estimate
from service.strava.quota.memory import MemoryQuotaScheduler

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z
AT = datetime.fromtimestamp(NOON + 300, UTC)  # 12:05, ten minutes before the window resets


def scheduler(**shares: tuple[float, float]) -> MemoryQuotaScheduler:
    config = QuotaConfig(shares={**TIER_SHARES, **{Tier(k): v for k, v in shares.items()}})
    return MemoryQuotaScheduler(config, FakeClock(NOON + 300))


def test_the_rate_is_the_tiers_allowance_and_never_more_than_its_day_spread_over_the_day() -> None:
    # backfill: 66 reads per quarter hour, but 570 a day: 23.75 an hour.
    found = finish_estimate(scheduler(), Tier.BACKFILL, 10, 5, AT)

    assert found.rate_per_hour == pytest.approx(570 / 24)
    assert (found.waiting, found.done) == (10, 5)


def test_work_that_fits_in_what_is_left_of_the_window_finishes_in_it() -> None:
    found = finish_estimate(scheduler(), Tier.BACKFILL, 10, 5, AT)

    assert found.finishes_at is not None
    assert AT < found.finishes_at <= AT + timedelta(minutes=10)
    assert found.sentence.startswith("5 of 15 hydrated; about 2026-06-01 12:")


def test_work_beyond_the_window_takes_a_windows_allowance_at_a_time() -> None:
    quota = scheduler()
    for _ in range(66):  # the window's room is spent
        quota.reserve(Tier.BACKFILL, "read")

    found = finish_estimate(quota, Tier.BACKFILL, 12, 0, AT)

    # 12 requests at 5.94 a window: the third window from 12:15 on.
    assert found.finishes_at is not None
    assert datetime(2026, 6, 1, 12, 45, tzinfo=UTC) <= found.finishes_at
    assert found.finishes_at < datetime(2026, 6, 1, 13, 0, tzinfo=UTC)


def test_nothing_waiting_is_finished_now() -> None:
    found = finish_estimate(scheduler(), Tier.RECENT, 0, 40, AT)

    assert found.finishes_at == AT
    assert found.sentence == "40 of 40 hydrated; nothing waits"


def test_a_tier_without_budget_never_finishes() -> None:
    found = finish_estimate(scheduler(backfill=(0.0, 0.0)), Tier.BACKFILL, 3, 0, AT)

    assert found.finishes_at is None
    assert found.rate_per_hour == 0
    assert "gets no budget" in found.sentence
