"""Admission of queued work on both backends, with an injected clock: each tick takes a paced
share of the tier's room now and reserves it at once, real-time work still finds the room the
forecast keeps for it, and no window ever holds more than its allowance."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterator

import pytest
from support import TIER_SHARES, FakeClock

from service.strava.quota import QuotaConfig, QuotaExceeded, QuotaScheduler, Tier
from service.strava.quota.admission import (
    BURST_RESERVE,
    DELIVERY_SECONDS,
    PACE,
    PACE_SPAN_SECONDS,
    Admitted,
    admit_now,
    release_tick,
)
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.ratelimit import WindowPair

MIDNIGHT = 1780272000  # 2026-06-01T00:00:00Z
NOON = MIDNIGHT + 12 * 3600
QUARTER = 900
TICK = release_tick(QUARTER)
# Backfill may fill floor(100 x 0.95 x 0.7) = 66 reads of a window; the real-time tiers 95.
BACKFILL_ALLOWANCE = 66
REALTIME_ALLOWANCE = 95
CONFIG = QuotaConfig(
    limit=WindowPair(short=100, daily=1000),
    read_limit=WindowPair(short=100, daily=1000),
    shares=TIER_SHARES,
)
# A moment of the window whose usable rest is shorter than PACE ticks: all the room is taken.
LAST_TICK = NOON + QUARTER - DELIVERY_SECONDS - TICK

Build = Callable[[FakeClock], QuotaScheduler]


@pytest.fixture(params=["memory", "redis"])
def build(request: pytest.FixtureRequest) -> Iterator[Build]:
    made: list[QuotaScheduler] = []

    def make(clock: FakeClock) -> QuotaScheduler:
        scheduler: QuotaScheduler
        if request.param == "memory":
            scheduler = MemoryQuotaScheduler(CONFIG, clock)
        else:
            scheduler = RedisQuotaScheduler.from_url(
                request.getfixturevalue("redis_url"), CONFIG, clock
            )
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


class Draw(random.Random):
    """Random numbers that are always `value`: decides the rounding of a fractional share."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def used(scheduler: QuotaScheduler, tier: Tier) -> int:
    return scheduler.status().window("read", "short").used_by_tier[tier]


def paced_share(room: int, usable: float = QUARTER - DELIVERY_SECONDS) -> float:
    """A tick's share of `room` with `usable` seconds left (by default, a whole window's)."""
    return room * min(1.0, PACE * TICK / min(usable, PACE_SPAN_SECONDS))


@pytest.mark.parametrize(("draw", "rounding"), [(0.999, math.floor), (0.0, math.ceil)])
def test_a_tick_at_the_start_of_a_window_admits_the_paced_share_and_reserves_it(
    build: Build, draw: float, rounding: Callable[[float], int]
) -> None:
    scheduler = build(FakeClock(NOON))
    room = scheduler.tier_capacity(Tier.BACKFILL).room_now
    assert room == BACKFILL_ALLOWANCE

    admitted = admit_now(scheduler, Tier.BACKFILL, 1000, rng=Draw(draw))

    assert admitted.units == rounding(paced_share(room))
    assert admitted.window == NOON // QUARTER
    assert admitted.requests == (1,) * admitted.units
    assert used(scheduler, Tier.BACKFILL) == admitted.units


def test_early_in_a_window_a_part_of_its_budget_is_left_for_bursts_of_real_time_work(
    build: Build,
) -> None:
    clock = FakeClock(NOON)
    scheduler = build(clock)
    for _ in range(BACKFILL_ALLOWANCE - 9):
        scheduler.reserve(Tier.BACKFILL, "read")
    assert BURST_RESERVE * REALTIME_ALLOWANCE > 9

    early = admit_now(scheduler, Tier.BACKFILL, 1000)
    clock.now = NOON + 0.9 * QUARTER
    later = admit_now(scheduler, Tier.BACKFILL, 1000, rng=Draw(0.999))

    # The reserve shrinks with the window: a tenth of it is left, and the room above it is
    # admitted at the pace of any other.
    assert early.units == 0
    left_for_bursts = BURST_RESERVE * REALTIME_ALLOWANCE * 0.1
    usable = 0.1 * QUARTER - DELIVERY_SECONDS
    assert later.units == math.floor(min(paced_share(9, usable), 9 - left_for_bursts)) > 0


def test_near_the_end_of_a_window_all_the_room_is_admitted(build: Build) -> None:
    scheduler = build(FakeClock(LAST_TICK))

    admitted = admit_now(scheduler, Tier.BACKFILL, 1000)

    assert admitted.units == BACKFILL_ALLOWANCE
    assert used(scheduler, Tier.BACKFILL) == BACKFILL_ALLOWANCE
    with pytest.raises(QuotaExceeded):
        scheduler.reserve(Tier.BACKFILL, "read")


def test_nothing_is_admitted_too_close_to_the_end_to_reach_strava_in_time(build: Build) -> None:
    scheduler = build(FakeClock(NOON + QUARTER - DELIVERY_SECONDS / 2))

    admitted = admit_now(scheduler, Tier.BACKFILL, 1000)

    assert admitted == Admitted(NOON // QUARTER)
    assert used(scheduler, Tier.BACKFILL) == 0


def test_a_unit_that_costs_two_reserves_two_requests(build: Build) -> None:
    scheduler = build(FakeClock(LAST_TICK))

    admitted = admit_now(scheduler, Tier.BACKFILL, 1000, cost=2)

    assert admitted.units == BACKFILL_ALLOWANCE // 2
    assert admitted.requests == (2,) * (BACKFILL_ALLOWANCE // 2)
    assert used(scheduler, Tier.BACKFILL) == 2 * (BACKFILL_ALLOWANCE // 2)


def test_no_more_than_the_units_waiting_are_admitted(build: Build) -> None:
    scheduler = build(FakeClock(LAST_TICK))

    admitted = admit_now(scheduler, Tier.RECENT, 5, cost=2)

    assert admitted.units == 5
    assert used(scheduler, Tier.RECENT) == 10


@pytest.mark.parametrize("tier", [Tier.ON_DEMAND, Tier.WEBHOOK])
def test_real_time_work_is_never_admitted_from_a_queue(build: Build, tier: Tier) -> None:
    scheduler = build(FakeClock(NOON))

    with pytest.raises(ValueError, match="never queued"):
        admit_now(scheduler, tier, 1)

    assert used(scheduler, tier) == 0


def test_webhooks_at_the_forecast_rate_fit_beside_a_backlog_admitted_every_tick(
    build: Build,
) -> None:
    clock = FakeClock(NOON)
    scheduler = build(clock)
    webhooks_per_window = 40  # with backfill's 66 more than the real-time allowance of 95
    every = QUARTER / webhooks_per_window
    # A window of webhooks alone, so that the forecast knows their rate.
    for n in range(webhooks_per_window):
        clock.now = NOON + (n + 0.5) * every
        scheduler.reserve(Tier.WEBHOOK, "read")

    admitted_per_window: list[int] = []
    for window in (1, 2):
        start = NOON + window * QUARTER
        ticks = [(start + n * TICK, Tier.BACKFILL) for n in range(int(QUARTER / TICK))]
        webhooks = [(start + (n + 0.5) * every, Tier.WEBHOOK) for n in range(webhooks_per_window)]
        admitted = 0
        for moment, tier in sorted(ticks + webhooks):
            clock.now = moment
            if tier is Tier.BACKFILL:
                admitted += admit_now(scheduler, Tier.BACKFILL, 10_000).units
            else:
                scheduler.reserve(Tier.WEBHOOK, "read")
        admitted_per_window.append(admitted)
        assert used(scheduler, Tier.WEBHOOK) == webhooks_per_window

    assert scheduler.status().denials.get(Tier.WEBHOOK, 0) == 0
    # The backlog still took most of what the webhooks left.
    assert all(
        REALTIME_ALLOWANCE - webhooks_per_window - 10 <= admitted <= BACKFILL_ALLOWANCE
        for admitted in admitted_per_window
    )


def test_concurrent_admissions_never_fill_a_window_beyond_its_allowance(redis_url: str) -> None:
    clock = FakeClock(LAST_TICK)
    schedulers = [RedisQuotaScheduler.from_url(redis_url, CONFIG, clock) for _ in range(4)]
    admitted: list[Admitted] = []
    lock = threading.Lock()

    def admit(scheduler: RedisQuotaScheduler) -> None:
        for _ in range(20):
            result = admit_now(scheduler, Tier.BACKFILL, 50)
            with lock:
                admitted.append(result)

    threads = [threading.Thread(target=admit, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window = schedulers[0].status().window("read", "short")
    for scheduler in schedulers:
        scheduler.close()

    reserved = sum(sum(result.requests) for result in admitted)
    assert reserved == window.used_by_tier[Tier.BACKFILL] == BACKFILL_ALLOWANCE
    assert window.used <= BACKFILL_ALLOWANCE


def test_over_many_ticks_a_fractional_share_is_admitted_on_average(build: Build) -> None:
    clock = FakeClock(NOON)
    rng = random.Random(11)
    share = paced_share(BACKFILL_ALLOWANCE)
    assert share != math.floor(share)
    ticks = 400

    # Each tick at noon of a day of its own, where the window's and the day's room are whole.
    counts: list[int] = []
    scheduler = build(clock)
    for day in range(ticks):
        clock.now = NOON + day * 86400
        counts.append(admit_now(scheduler, Tier.BACKFILL, 1000, rng=rng).units)

    assert set(counts) == {math.floor(share), math.ceil(share)}
    assert sum(counts) / ticks == pytest.approx(share, abs=0.06)
