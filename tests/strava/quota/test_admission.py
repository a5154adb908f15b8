"""Admission tickets on both backends, with an injected clock: queued work comes in its window
without a refusal, real-time work goes first, and the books stay small."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from support import TIER_SHARES, FakeClock

from service.strava.quota import QuotaConfig, QuotaExceeded, QuotaScheduler, Tier
from service.strava.quota.admission import (
    SPREAD,
    Admission,
    RedisAdmission,
    Ticket,
    build_admission,
)
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import DEFAULT_PREFIX, RedisQuotaScheduler
from service.strava.ratelimit import WindowPair

MIDNIGHT = 1780272000  # 2026-06-01T00:00:00Z
NOON = MIDNIGHT + 12 * 3600
QUARTER = 900

# Backfill may fill floor(100 x 0.95 x 0.7) = 66 of a window and floor(1000 x 0.95 x 0.6) = 570
# of a day. With no real-time demand forecast, the room it can expect in each window after this
# one is that day spread over the day's 96 windows (scheduler.WindowPlan.capacity): 570 / 96 =
# 5.9375 a window, the fraction a full window cannot give carried to the next (6 places a
# window, one window in 16 five), so a whole day holds exactly 570.
PER_WINDOW = 570 / 96
CONFIG = QuotaConfig(
    limit=WindowPair(short=100, daily=1000),
    read_limit=WindowPair(short=100, daily=1000),
    shares=TIER_SHARES,
)

Build = Callable[[FakeClock], tuple[QuotaScheduler, Admission]]


@pytest.fixture(params=["memory", "redis"])
def build(request: pytest.FixtureRequest) -> Iterator[Build]:
    made: list[QuotaScheduler] = []

    def make(clock: FakeClock) -> tuple[QuotaScheduler, Admission]:
        scheduler: QuotaScheduler
        if request.param == "memory":
            scheduler = MemoryQuotaScheduler(CONFIG, clock)
        else:
            scheduler = RedisQuotaScheduler.from_url(
                request.getfixturevalue("redis_url"), CONFIG, clock
            )
        made.append(scheduler)
        return scheduler, build_admission(scheduler)

    yield make
    for scheduler in made:
        scheduler.close()


def windows(tickets: list[Ticket]) -> Counter[int]:
    return Counter(ticket.window - tickets[0].window for ticket in tickets)


def deliver(clock: FakeClock, scheduler: QuotaScheduler, tickets: list[Ticket]) -> int:
    """Walk the clock through the tickets in order, reserving one read for each; the number
    of refusals."""
    refused = 0
    for ticket in sorted(tickets, key=lambda t: t.at):
        clock.now = max(clock.now, ticket.at.timestamp())
        try:
            scheduler.reserve(Tier.BACKFILL, "read")
        except QuotaExceeded:
            refused += 1
    return refused


def test_tickets_fill_this_windows_room_then_a_windows_room_each(build: Build) -> None:
    clock = FakeClock(NOON)
    _, admission = build(clock)

    tickets = admission.admit(Tier.BACKFILL, 150)

    # This window's room (66), then 84 at 5.9375 a window: 5 in the first (0.9375 carried),
    # then 6 a window as the carried fraction shrinks by 0.0625 each, 1 left for the 15th.
    assert windows(tickets) == {0: 66, 1: 5} | {n: 6 for n in range(2, 15)} | {15: 1}
    # Spread evenly over most of each window, in order.
    second = [t for t in tickets if t.window == tickets[0].window + 1]
    assert second[0].at.timestamp() == NOON + QUARTER
    assert second[4].at.timestamp() == pytest.approx(
        NOON + QUARTER + SPREAD * QUARTER * 4 / PER_WINDOW
    )
    assert [t.position for t in second] == list(range(5))


def test_work_that_fits_this_windows_room_goes_at_once(build: Build) -> None:
    # The first second of a quarter hour: a small import is not paced over the window.
    clock = FakeClock(NOON + 1)
    _, admission = build(clock)

    tickets = admission.admit(Tier.BACKFILL, 20, cost=2)

    assert {t.at.timestamp() for t in tickets} == {NOON + 1}


def test_a_second_request_continues_where_the_first_stopped(build: Build) -> None:
    clock = FakeClock(NOON)
    _, admission = build(clock)
    first = admission.admit(Tier.BACKFILL, 100)

    (next_one,) = admission.admit(Tier.BACKFILL)

    assert (next_one.window, next_one.position) == (first[-1].window, first[-1].position + 1)


def test_no_day_gets_more_tickets_than_the_tiers_daily_allowance(build: Build) -> None:
    clock = FakeClock(MIDNIGHT + 86400 - 2 * QUARTER)
    _, admission = build(clock)

    tickets = admission.admit(Tier.BACKFILL, 700)

    # Two windows left today: this one's room (66) and 5 of the last one's 5.9375; then the
    # next day's 96 windows at 5.9375 from midnight, its allowance of 570 exactly; the rest
    # the day after.
    days = Counter(int(t.at.timestamp() // 86400) for t in tickets)
    first_day = (MIDNIGHT + 86400 - 1) // 86400
    assert days == {first_day: 71, first_day + 1: 570, first_day + 2: 59}
    assert max(days.values()) <= 570
    tomorrow = [t for t in tickets if t.at.timestamp() >= MIDNIGHT + 86400]
    assert tomorrow[0].at.timestamp() == MIDNIGHT + 86400


def test_real_time_work_is_never_queued(build: Build) -> None:
    clock = FakeClock(NOON + 100)
    _, admission = build(clock)
    admission.admit(Tier.BACKFILL, 5000)

    (ticket,) = admission.admit(Tier.WEBHOOK)

    assert ticket.at.timestamp() == NOON + 100


def test_queued_work_is_delivered_in_its_window_without_a_refusal(build: Build) -> None:
    clock = FakeClock(NOON + 300)
    scheduler, admission = build(clock)
    for _ in range(20):
        scheduler.reserve(Tier.RECENT, "read")

    tickets = admission.admit(Tier.BACKFILL, 1000)

    assert deliver(clock, scheduler, tickets) == 0
    assert scheduler.status().denials.get(Tier.BACKFILL, 0) == 0
    # The next window holds the room backfill can expect of it, the day's allowance spread
    # over the day's windows (5 of 5.9375, the fraction carried on).
    assert windows(tickets)[1] == 5


def test_real_time_work_goes_ahead_and_refused_work_takes_the_next_free_place(
    build: Build,
) -> None:
    clock = FakeClock(NOON)
    scheduler, admission = build(clock)
    tickets = admission.admit(Tier.BACKFILL, 66 + 66)
    next_window = [t for t in tickets if t.window == tickets[0].window + 1]

    # The next window: a burst of webhooks arrives before any queued work is delivered.
    clock.now = NOON + QUARTER
    for _ in range(40):
        scheduler.reserve(Tier.WEBHOOK, "read")
    refused: list[Ticket] = []
    for ticket in next_window:
        clock.now = ticket.at.timestamp()
        try:
            scheduler.reserve(Tier.BACKFILL, "read")
        except QuotaExceeded:
            refused.append(ticket)

    # The webhooks were all served. The window's 5 places for backfill are at 0, 136, 273,
    # 409 and 545 s (spread over 0.9 of it at 5.9375 a window). The forecast keeps room for
    # the burst at this window's rate, 40 / elapsed (elapsed at least 0.25), over what is left
    # of it, under the real-time allowance of 95: a place fits once 40 + used + 1 +
    # 40 (1 - elapsed) / elapsed <= 95, from 0.43 of the window (383 s) on. The first three are
    # refused once, then placed in a later window, where they fit.
    assert scheduler.status().denials.get(Tier.WEBHOOK, 0) == 0
    assert len(refused) == 3
    replaced = admission.admit(Tier.BACKFILL, len(refused))
    assert min(t.window for t in replaced) > next_window[0].window
    assert deliver(clock, scheduler, replaced) == 0


def test_a_book_stays_a_few_bytes_for_a_million_queued_units(redis_url: str) -> None:
    scheduler = RedisQuotaScheduler.from_url(redis_url, CONFIG, FakeClock(NOON))
    admission = build_admission(scheduler)
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(10):
            tickets = admission.admit(Tier.BACKFILL, 100_000)

        size = client.memory_usage(f"{DEFAULT_PREFIX}tickets:backfill")
        assert size is not None
        assert size < 512
        # A million units at 570 a day: the last is placed about 1,754 days ahead.
        last_day = int(tickets[-1].at.timestamp() // 86400)
        assert last_day - NOON // 86400 == 1_000_000 // 570
    finally:
        client.close()
        scheduler.close()


def test_concurrent_processes_never_share_a_place(redis_url: str) -> None:
    clock = FakeClock(NOON)
    schedulers = [RedisQuotaScheduler.from_url(redis_url, CONFIG, clock) for _ in range(4)]
    places: list[tuple[int, int]] = []
    lock = threading.Lock()

    def admit(scheduler: RedisQuotaScheduler) -> None:
        admission = RedisAdmission(scheduler.client, scheduler, scheduler.prefix)
        for _ in range(50):
            (ticket,) = admission.admit(Tier.BACKFILL)
            with lock:
                places.append((ticket.window, ticket.position))

    threads = [threading.Thread(target=admit, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for scheduler in schedulers:
        scheduler.close()

    assert len(places) == 200
    assert len(set(places)) == 200


def test_a_lower_queued_tier_gets_the_room_the_tiers_above_it_left(build: Build) -> None:
    clock = FakeClock(NOON)
    _, admission = build(clock)
    # Recent work may fill floor(100 x 0.95 x 0.85) = 80 of this window, then expect its day,
    # floor(1000 x 0.95 x 0.8) = 760, over 96 windows: 7.92 a window (7, then 8 a window with
    # the fraction carried). 120 places reach six windows ahead, where the last one is.
    recent = admission.admit(Tier.RECENT, 120)

    backfill = admission.admit(Tier.BACKFILL, 30)

    assert windows(recent) == {0: 80, 1: 7, 2: 8, 3: 8, 4: 8, 5: 8, 6: 1}
    # Backfill starts in recent's last window: its 5.9375 less recent's 1 leave 4; the rest
    # goes to the windows after, 6 a window with the fraction carried.
    last_window = recent[-1].window
    assert Counter(t.window - last_window for t in backfill) == {0: 4, 1: 6, 2: 6, 3: 6, 4: 6, 5: 2}


def test_two_queued_tiers_delivered_together_are_never_refused(build: Build) -> None:
    clock = FakeClock(NOON)
    scheduler, admission = build(clock)
    recent = admission.admit(Tier.RECENT, 300)
    backfill = admission.admit(Tier.BACKFILL, 300)

    refused = 0
    for tier, ticket in sorted(
        [(Tier.RECENT, t) for t in recent] + [(Tier.BACKFILL, t) for t in backfill],
        key=lambda pair: pair[1].at,
    ):
        clock.now = max(clock.now, ticket.at.timestamp())
        try:
            scheduler.reserve(tier, "read")
        except QuotaExceeded:
            refused += 1

    assert refused == 0


def test_refused_work_is_placed_after_the_window_that_refused_it(build: Build) -> None:
    clock = FakeClock(NOON + 100)
    _, admission = build(clock)
    admission.admit(Tier.BACKFILL, 10)

    (place,) = admission.admit(Tier.BACKFILL, refused=True)

    # The book still had room in this window, but the scheduler has just said it is full.
    assert place.window == int((NOON + 100) // QUARTER) + 1
    assert place.at.timestamp() == NOON + QUARTER
