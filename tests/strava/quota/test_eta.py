"""Finish estimates at a known rate: shares and counters decide it, on both backends, with an
injected clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from support import TIER_SHARES, FakeClock

from service.strava.quota import QuotaConfig, QuotaScheduler, Tier
from service.strava.quota.eta import finish_estimate
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.scheduler import TierCapacity
from service.strava.ratelimit import WindowPair

MIDNIGHT = 1780272000  # 2026-06-01T00:00:00Z
NOON = MIDNIGHT + 12 * 3600

# 100 per window and 1000 a day; backfill may fill floor(100 x 0.95 x 0.7) = 66 of a window
# and floor(1000 x 0.95 x 0.6) = 570 of a day. With no real-time demand forecast, a window
# after this one is expected to bring the day spread over its 96 windows (scheduler.WindowPlan
# .capacity): 570 / 96 = 5.9375.
CONFIG = QuotaConfig(
    limit=WindowPair(short=100, daily=1000),
    read_limit=WindowPair(short=100, daily=1000),
    shares=TIER_SHARES,
)

MakeScheduler = Callable[..., QuotaScheduler]


@pytest.fixture(params=["memory", "redis"])
def make_scheduler(request: pytest.FixtureRequest) -> Iterator[MakeScheduler]:
    made: list[QuotaScheduler] = []

    def build(clock: FakeClock, config: QuotaConfig = CONFIG) -> QuotaScheduler:
        scheduler: QuotaScheduler
        if request.param == "memory":
            scheduler = MemoryQuotaScheduler(config, clock)
        else:
            scheduler = RedisQuotaScheduler.from_url(
                request.getfixturevalue("redis_url"), config, clock
            )
        made.append(scheduler)
        return scheduler

    yield build
    for scheduler in made:
        scheduler.close()


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_capacity_of_a_fresh_day_is_the_tiers_shares(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON + 100))

    assert scheduler.tier_capacity(Tier.BACKFILL) == TierCapacity(
        room_now=66,
        per_window=570 / 96,
        window_resets_at=at(NOON + 900),
        daily_room=570,
        day_resets_at=at(MIDNIGHT + 86400),
        window_budget=95,
    )


def test_capacity_counts_todays_usage_and_what_realtime_work_wanted(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock)
    for _ in range(30):
        scheduler.reserve(Tier.WEBHOOK, "read")
    clock.now = NOON + 900
    for _ in range(10):
        scheduler.reserve(Tier.BACKFILL, "read")

    capacity = scheduler.tier_capacity(Tier.BACKFILL)

    # The 30 webhook calls of the last window are held free (its peak of 30 over the whole
    # window just begun): 95 - 30 - 10 used = 55 now. Going forward a whole day is forecast
    # at today's rate, 30 in the half day gone: 60 of the 950 leave backfill its share, 570
    # of a day, 5.9375 a window.
    assert capacity.room_now == 55
    assert capacity.per_window == pytest.approx(570 / 96)
    assert capacity.daily_room == 570 - 40


def test_backlog_that_fits_in_this_window_finishes_before_it_ends(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    estimate = finish_estimate(scheduler, Tier.BACKFILL, waiting=33, done=0, now=at(NOON))

    assert estimate.finishes_at == at(NOON + 450)
    assert estimate.sentence == "0 of 33 hydrated; at today's budget about 2026-06-01 12:08 UTC"


def test_a_multi_day_backlog_finishes_at_the_daily_allowance(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    estimate = finish_estimate(scheduler, Tier.BACKFILL, waiting=7660, done=1840, now=at(NOON))

    # 66 now, then 5.9375 a window: 47 windows left today bring 279.06, then 570 a day: 12
    # whole days leave 474.94, 80 windows (20 hours) after midnight of the 13th.
    assert estimate.finishes_at == datetime(2026, 6, 14, 20, 0, tzinfo=UTC)
    assert estimate.sentence == (
        "1,840 of 9,500 hydrated; at today's budget about 2026-06-14 20:00 UTC"
    )
    assert estimate.rate_per_hour == pytest.approx(570 / 24)


def test_two_calls_per_hydration_take_twice_the_budget(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(MIDNIGHT))

    one = finish_estimate(scheduler, Tier.BACKFILL, waiting=570, done=0, now=at(MIDNIGHT))
    two = finish_estimate(
        scheduler, Tier.BACKFILL, waiting=570, done=0, now=at(MIDNIGHT), calls_per_item=2
    )

    # 570 requests, the day's allowance: 66 in the first window, the other 504 at 5.9375 a
    # window, 85 windows after it. 1140: the day's 570, then the next day's 570 take all its
    # 96 windows.
    assert one.finishes_at == at(MIDNIGHT + 86 * 900)
    assert two.finishes_at == at(MIDNIGHT + 2 * 86400)


def test_the_estimate_moves_with_the_clock_and_the_days_usage(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock)
    before = finish_estimate(scheduler, Tier.BACKFILL, waiting=1000, done=0, now=at(NOON))
    for _ in range(66):
        scheduler.reserve(Tier.RECENT, "read")

    after = finish_estimate(scheduler, Tier.BACKFILL, waiting=1000, done=0, now=at(NOON))

    assert before.finishes_at is not None
    assert after.finishes_at is not None
    # Recent work took this window's room and 66 of today's: the backlog finishes later.
    assert after.finishes_at > before.finishes_at


def test_a_tier_without_budget_never_finishes(make_scheduler: MakeScheduler) -> None:
    shares = dict(TIER_SHARES) | {Tier.RECONCILE: (0.0, 0.0)}
    scheduler = make_scheduler(FakeClock(NOON), replace(CONFIG, shares=shares))

    estimate = finish_estimate(scheduler, Tier.RECONCILE, waiting=5, done=2, now=at(NOON))

    assert estimate.finishes_at is None
    assert estimate.sentence == "2 of 7 hydrated; this tier gets no budget at today's shares"


def test_nothing_waiting_is_done_now(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    estimate = finish_estimate(scheduler, Tier.RECENT, waiting=0, done=12, now=at(NOON))

    assert estimate.finishes_at == at(NOON)
    assert estimate.sentence == "12 of 12 hydrated; nothing waits"
