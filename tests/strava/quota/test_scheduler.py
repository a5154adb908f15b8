"""The quota scheduler's rules, on both backends, with an injected clock (no sleeps)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
from support import TIER_SHARES, FakeClock

from service.config import Settings
from service.strava.client import RequestKind
from service.strava.quota import (
    QuotaConfig,
    QuotaExceeded,
    QuotaScheduler,
    Tier,
    build_scheduler,
)
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import DEFAULT_PREFIX, EXPIRY_GRACE_SECONDS, RedisQuotaScheduler
from service.strava.quota.scheduler import (
    FORECAST_WINDOWS,
    HISTORY_WINDOWS,
    allowance,
    window_index,
)
from service.strava.ratelimit import EMPTY_SNAPSHOT, RateLimitSnapshot, WindowPair

MIDNIGHT = 1780272000  # 2026-06-01T00:00:00Z
NOON = MIDNIGHT + 12 * 3600
QUARTER = 900

# Round numbers so that shares are easy to check: 100 per window and bucket, 1000 a day.
CONFIG = QuotaConfig(
    limit=WindowPair(short=100, daily=1000),
    read_limit=WindowPair(short=100, daily=1000),
    shares=TIER_SHARES,
)


MakeScheduler = Callable[..., QuotaScheduler]


@pytest.fixture(params=["memory", "redis"])
def make_scheduler(request: pytest.FixtureRequest) -> Iterator[MakeScheduler]:
    """Builds schedulers on one backend; with Redis, all of them share one flushed db."""
    made: list[QuotaScheduler] = []

    def build(clock: FakeClock, config: QuotaConfig = CONFIG) -> QuotaScheduler:
        scheduler: QuotaScheduler
        if request.param == "memory":
            scheduler = MemoryQuotaScheduler(config, clock)
        else:
            url = request.getfixturevalue("redis_url")
            scheduler = RedisQuotaScheduler.from_url(url, config, clock)
        made.append(scheduler)
        return scheduler

    yield build
    for scheduler in made:
        scheduler.close()


def snapshot(
    *,
    usage: tuple[int, int] | None = None,
    read_usage: tuple[int, int] | None = None,
    limit: tuple[int, int] | None = None,
    read_limit: tuple[int, int] | None = None,
) -> RateLimitSnapshot:
    def pair(values: tuple[int, int] | None) -> WindowPair | None:
        return None if values is None else WindowPair(*values)

    return RateLimitSnapshot(
        limit=pair(limit),
        usage=pair(usage),
        read_limit=pair(read_limit),
        read_usage=pair(read_usage),
    )


def used(scheduler: QuotaScheduler) -> dict[str, int]:
    status = scheduler.status()
    return {f"{w.bucket}.{w.window}": w.used for w in status.windows}


def reserve_until_denied(scheduler: QuotaScheduler, tier: Tier, kind: RequestKind = "read") -> int:
    """How many reservations succeed before the first denial."""
    for granted in range(10_000):
        try:
            scheduler.reserve(tier, kind)
        except QuotaExceeded:
            return granted
    raise AssertionError("the budget never ran out")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The arithmetic


def test_epoch_multiples_of_the_window_lengths_are_quarter_hours_and_utc_midnights() -> None:
    assert window_index(NOON + 15 * 60 - 0.001, QUARTER) + 1 == window_index(
        NOON + 15 * 60, QUARTER
    )
    assert datetime.fromtimestamp(window_index(NOON, 86400) * 86400, UTC) == at("2026-06-01")


def test_allowance_is_not_lost_to_floating_point_error() -> None:
    # 200 x 0.95 x 0.7 is 132.99999999999997 in binary floating point.
    assert allowance(200, (1 - 0.05) * 0.7) == 133


def test_config_from_settings_takes_every_quota_setting(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(quota_window_seconds=9, quota_read_limit_short=42)

    config = QuotaConfig.from_settings(settings)

    assert config.window_seconds == 9
    assert config.read_limit == WindowPair(42, 1000)
    assert config.shares[Tier.BACKFILL] == (1.0, 1.0)  # no hard cap unless set
    assert config.shares == QuotaConfig().shares


def test_build_scheduler_uses_memory_for_memory_broker_and_redis_otherwise(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    memory = build_scheduler(make_settings())
    shared = build_scheduler(make_settings(broker_url=redis_url))

    assert isinstance(memory, MemoryQuotaScheduler)
    assert isinstance(shared, RedisQuotaScheduler)
    shared.close()


# Reserving


def test_a_read_counts_in_both_buckets_and_both_windows(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.reserve(Tier.WEBHOOK, "read")

    assert used(scheduler) == {
        "overall.short": 1,
        "overall.daily": 1,
        "read.short": 1,
        "read.daily": 1,
    }
    assert scheduler.status().window("read", "short").used_by_tier[Tier.WEBHOOK] == 1


def test_a_write_spends_both_buckets_as_a_non_upload_call(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.reserve(Tier.ON_DEMAND, "write")

    assert used(scheduler) == {
        "overall.short": 1,
        "overall.daily": 1,
        "read.short": 1,
        "read.daily": 1,
    }


def test_an_oauth_call_passes_without_being_counted(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.reserve(Tier.ON_DEMAND, "oauth")

    assert set(used(scheduler).values()) == {0}


def test_the_short_window_rolls_at_the_quarter_hour(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON + QUARTER - 0.001)
    scheduler = make_scheduler(clock)
    scheduler.reserve(Tier.WEBHOOK, "read")

    clock.now = NOON + QUARTER
    scheduler.reserve(Tier.WEBHOOK, "read")

    assert used(scheduler)["read.short"] == 1
    assert used(scheduler)["read.daily"] == 2


def test_the_daily_window_rolls_at_utc_midnight(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(MIDNIGHT + 86400 - 1)
    scheduler = make_scheduler(clock)
    scheduler.reserve(Tier.WEBHOOK, "read")

    clock.now = MIDNIGHT + 86400
    scheduler.reserve(Tier.WEBHOOK, "read")

    assert used(scheduler)["read.daily"] == 1


def test_sped_up_windows_roll_at_their_configured_length(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, replace(CONFIG, window_seconds=9, day_seconds=9 * 96))
    scheduler.reserve(Tier.WEBHOOK, "read")

    clock.now = NOON + 9
    scheduler.reserve(Tier.WEBHOOK, "read")

    assert used(scheduler)["read.short"] == 1
    assert used(scheduler)["read.daily"] == 2


# Tiers, shares and the safety margin


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        (Tier.ON_DEMAND, 95),  # 100 x 0.95: the 5 % margin is never spent
        (Tier.WEBHOOK, 95),
        (Tier.RECENT, 80),  # floor(100 x 0.95 x 0.85)
        (Tier.BACKFILL, 66),  # floor(100 x 0.95 x 0.7)
        (Tier.RECONCILE, 47),  # floor(100 x 0.95 x 0.5)
    ],
)
def test_each_tier_stops_at_its_share_of_the_short_window(
    make_scheduler: MakeScheduler, tier: Tier, expected: int
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    assert reserve_until_denied(scheduler, tier) == expected


def test_a_higher_tier_still_fits_where_a_lower_tier_stopped(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    reserve_until_denied(scheduler, Tier.BACKFILL)

    granted_to_webhooks = reserve_until_denied(scheduler, Tier.WEBHOOK)

    assert granted_to_webhooks == 95 - 66


def test_the_safety_margin_is_never_spent_even_on_demand(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    reserve_until_denied(scheduler, Tier.ON_DEMAND)

    assert used(scheduler)["read.short"] == 95


def test_a_tier_stops_at_its_daily_share_across_short_windows(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(MIDNIGHT)
    scheduler = make_scheduler(clock)
    granted = 0
    for quarter in range(10):  # 66 a quarter would be 660
        clock.now = MIDNIGHT + quarter * QUARTER
        granted += reserve_until_denied(scheduler, Tier.BACKFILL)

    assert granted == 570  # floor(1000 x 0.95 x 0.6)
    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.BACKFILL, "read")
    assert denied.value.window == "daily"


# The room kept for real-time work: a forecast over the rest of the window and day

# No shares: every tier may fill the budget (95 of 100), less the room kept.
UNCAPPED = replace(CONFIG, shares={tier: (1.0, 1.0) for tier in Tier})


def webhooks_in(
    scheduler: QuotaScheduler, clock: FakeClock, start: float, counts: list[int]
) -> None:
    """``counts[i]`` webhook calls in the i-th quarter hour from ``start``."""
    for quarter, count in enumerate(counts):
        clock.now = start + quarter * QUARTER
        for _ in range(count):
            scheduler.reserve(Tier.WEBHOOK, "read")


def held(scheduler: QuotaScheduler, window: str = "short") -> int:
    body = scheduler.status().as_json()
    return int(body["buckets"]["read"][window]["held_for_realtime"])


def test_lower_tiers_leave_room_for_the_recent_peak_of_real_time_work(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - 2 * QUARTER, [25, 40])

    clock.now = NOON
    kept = held(scheduler)
    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)
    webhooks = reserve_until_denied(scheduler, Tier.WEBHOOK)

    assert (kept, backfill, webhooks) == (40, 95 - 40, 40)


def test_the_room_kept_shrinks_as_the_window_ends(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - QUARTER, [40])

    kept = []
    for elapsed in (0.0, 0.5, 0.75):
        clock.now = NOON + elapsed * QUARTER
        kept.append(held(scheduler))
    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)

    assert kept == [40, 20, 10]
    assert backfill == 95 - 10  # three quarters in, only a quarter of the forecast is kept
    clock.now = NOON + QUARTER - 1
    assert held(scheduler) == 1


def test_the_room_kept_shrinks_to_nothing_when_real_time_demand_stops(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - QUARTER, [40])

    kept = []
    for quarter in range(FORECAST_WINDOWS + 1):  # quiet quarter hours, nothing but the backfill
        clock.now = NOON + quarter * QUARTER
        kept.append(held(scheduler))
    clock.now = MIDNIGHT + 2 * 86400  # a whole quiet day later

    # After the recent peak: only today's rate, 40 in 13 hours, 0.77 a quarter hour, with
    # four deviations of headroom. A day later not even that.
    assert kept == [40] * FORECAST_WINDOWS + [5]
    assert held(scheduler) == 0
    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 95


def test_a_burst_of_webhooks_after_a_quiet_window_still_goes_first(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - 2 * QUARTER, [40, 0])  # busy, then quiet

    clock.now = NOON
    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)  # the backlog comes first
    clock.now = NOON + 60
    burst = reserve_until_denied(scheduler, Tier.WEBHOOK)

    assert (backfill, burst) == (55, 40)


def test_a_burst_in_this_window_raises_the_room_kept_at_once(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON + QUARTER / 4)
    scheduler = make_scheduler(clock, UNCAPPED)  # no history: nothing forecast
    for _ in range(20):
        scheduler.reserve(Tier.WEBHOOK, "read")

    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)
    webhooks = reserve_until_denied(scheduler, Tier.WEBHOOK)

    # 20 in the first quarter of the window is a rate of 80: 60 kept for the other three.
    assert (backfill, webhooks) == (95 - 20 - 60, 60)


def test_what_was_refused_to_real_time_work_counts_as_demand(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 95  # nothing forecast yet
    for _ in range(10):
        with pytest.raises(QuotaExceeded):
            scheduler.reserve(Tier.WEBHOOK, "read")

    clock.now = NOON + QUARTER

    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 95 - 10


def test_the_backfill_yields_to_recent_work_while_it_lasts(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON + QUARTER / 2)
    scheduler = make_scheduler(clock, UNCAPPED)
    for _ in range(30):
        scheduler.reserve(Tier.RECENT, "read")

    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)
    recent = reserve_until_denied(scheduler, Tier.RECENT)
    clock.now = NOON + QUARTER
    next_window = reserve_until_denied(scheduler, Tier.BACKFILL)

    # 30 recent in half a window: 30 more kept for the other half. Recent hydrations are work
    # that ends, not a rate: the next window forecasts none of it.
    assert (backfill, recent, next_window) == (95 - 30 - 30, 30, 95)


def test_real_time_tiers_themselves_are_never_held_back(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - QUARTER, [90])

    clock.now = NOON

    assert reserve_until_denied(scheduler, Tier.WEBHOOK) == 95


def test_a_tier_held_back_by_the_room_kept_fits_again_before_the_window_ends(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - QUARTER, [40])
    clock.now = NOON
    reserve_until_denied(scheduler, Tier.BACKFILL)

    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.BACKFILL, "read")

    # 55 used, 40 kept: one more fits once 39 are kept, 1/40 of the window in, but a refused
    # tier is not asked back sooner than 1/8 of a window.
    assert denied.value.window == "short"
    assert denied.value.retry_at == at("2026-06-01T12:01:52.500")
    clock.now = NOON + QUARTER / 8
    scheduler.reserve(Tier.BACKFILL, "read")


def test_the_days_remainder_flows_to_the_backlog_before_midnight(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(MIDNIGHT - 86400)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, MIDNIGHT - 86400, [1] * 96)  # yesterday: one a quarter hour
    for quarter in range(49):  # from midnight to noon the backlog takes all it may
        clock.now = MIDNIGHT + quarter * QUARTER
        reserve_until_denied(scheduler, Tier.BACKFILL)
    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.BACKFILL, "read")

    # At noon, yesterday's 96 at half a day left: 48, and four deviations (of one more) for
    # bursts; the day, not the quarter hour, stops the backlog there.
    assert held(scheduler, "daily") == math.ceil(48 + 4 * math.sqrt(48 + 1)) == 76
    assert scheduler.status().window("read", "daily").used == 950 - 76
    assert scheduler.tier_capacity(Tier.BACKFILL).daily_room == 0
    assert denied.value.window == "daily"
    assert at("2026-06-01T12:00:00") < denied.value.retry_at < at("2026-06-02T00:00:00")

    clock.now = MIDNIGHT + 86400 - QUARTER
    used_today = scheduler.status().window("read", "daily").used
    # One quarter hour left: 1 expected and four deviations of 2; the rest goes to the backlog.
    assert held(scheduler, "daily") == math.ceil(1 + 4 * math.sqrt(2)) == 7
    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 950 - used_today - 7 == 69
    assert scheduler.status().window("read", "daily").used == 943

    # The day's last second: next to nothing expected, and still four deviations of one
    # request kept, for a webhook that would otherwise wait for midnight.
    clock.now = MIDNIGHT + 86400 - 1
    expected = 96 / 86400
    assert held(scheduler, "daily") == math.ceil(expected + 4 * math.sqrt(expected + 1)) == 5


def test_usage_other_clients_reported_counts_against_the_forecast(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON + QUARTER / 2)
    scheduler = make_scheduler(clock, UNCAPPED)
    scheduler.reserve(Tier.BACKFILL, "read")
    # Strava counted 31 in the first half of this window; one of them was ours.
    scheduler.observe("read", 200, snapshot(usage=(31, 31), read_usage=(31, 31)))

    kept = held(scheduler)
    backfill = reserve_until_denied(scheduler, Tier.BACKFILL)

    # 30 in half a window: 30 more kept for them in the other half.
    assert (kept, backfill) == (30, 95 - 31 - 30)


def test_other_clients_usage_of_recent_windows_lowers_what_the_backlog_can_expect(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON - 4 * QUARTER)
    # A day that never binds: the short window's forecast decides.
    roomy_day = WindowPair(short=100, daily=100_000)
    scheduler = make_scheduler(clock, replace(UNCAPPED, limit=roomy_day, read_limit=roomy_day))
    for quarter in range(4):
        clock.now = NOON - (4 - quarter) * QUARTER
        scheduler.reserve(Tier.WEBHOOK, "read")
        # Strava counted 3 in the window: our webhook call and two of another client.
        daily = 3 * (quarter + 1)
        scheduler.observe("read", 200, snapshot(usage=(3, daily), read_usage=(3, daily)))
    clock.now = NOON

    # Three a window expected, two of them the other client's.
    assert scheduler.tier_capacity(Tier.BACKFILL).per_window == pytest.approx(95 - 3)


def test_a_sudden_external_spender_never_takes_us_past_the_budget(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 95

    # Other clients spent 40 more than they ever did; the headers say so.
    scheduler.observe("read", 200, snapshot(usage=(95 + 40, 135), read_usage=(95 + 40, 135)))

    assert reserve_until_denied(scheduler, Tier.ON_DEMAND) == 0
    assert scheduler.status().window("read", "short").used == 135
    clock.now = NOON + QUARTER
    # One full window is not forecast to recur in each of the next four: the backlog leaves
    # the call refused to us, and today's rate of other use (41 in half a day) for this one,
    # 0.85 with four deviations of headroom.
    assert reserve_until_denied(scheduler, Tier.BACKFILL) == 95 - 5


def test_tier_capacity_gives_room_now_and_the_rate_expected_going_forward(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock, UNCAPPED)
    webhooks_in(scheduler, clock, NOON - 4 * QUARTER, [5, 5, 5, 5])
    clock.now = NOON

    backfill = scheduler.tier_capacity(Tier.BACKFILL)
    webhook = scheduler.tier_capacity(Tier.WEBHOOK)

    assert backfill.room_now == 95 - 5
    # Today's 20 in half a day: 40 expected in a whole day, which leaves the backlog 950 - 40
    # of a day (a few quarter hours' mean times 96, 480, would be mostly noise).
    assert backfill.per_window == pytest.approx((950 - 40) / 96)
    # Today's 20 in half a day: 20 more expected by midnight, with four deviations of headroom.
    assert backfill.daily_room == math.floor(950 - 20 - (20 + 4 * math.sqrt(20 + 1)))
    assert webhook.room_now == 95
    assert webhook.per_window == pytest.approx(950 / 96)
    assert backfill.window_resets_at == at("2026-06-01T12:15:00")
    assert backfill.day_resets_at == at("2026-06-02T00:00:00")


# Denials


def test_a_denial_in_the_short_window_says_the_next_quarter_hour(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON + 7 * 60))
    reserve_until_denied(scheduler, Tier.BACKFILL)

    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.BACKFILL, "read")

    assert denied.value.window == "short"
    assert denied.value.tier is Tier.BACKFILL
    assert denied.value.retry_at == at("2026-06-01T12:15:00")


def test_a_denial_in_the_daily_window_says_the_next_utc_midnight(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    scheduler.observe("read", 200, snapshot(read_usage=(0, 950)))

    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.WEBHOOK, "read")

    assert denied.value.window == "daily"
    assert denied.value.retry_at == at("2026-06-02T00:00:00")


def test_a_denial_when_both_windows_block_waits_for_the_later_one(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    scheduler.observe("read", 200, snapshot(read_usage=(99, 999)))

    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.WEBHOOK, "read")

    assert denied.value.retry_at == at("2026-06-02T00:00:00")


def test_a_denied_reservation_counts_only_the_denial(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    reserve_until_denied(scheduler, Tier.RECONCILE)

    status = scheduler.status()

    assert status.window("overall", "short").used == 47
    assert status.window("overall", "daily").used == 47
    assert status.denials[Tier.RECONCILE] == 1


def test_retry_at_is_the_start_of_the_next_window(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON + 60))

    assert scheduler.retry_at("short") == at("2026-06-01T12:15:00")
    assert scheduler.retry_at("daily") == at("2026-06-02T00:00:00")


# Reconciling with Strava's headers


def test_reported_usage_raises_the_counters(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    scheduler.reserve(Tier.WEBHOOK, "read")

    scheduler.observe("read", 200, snapshot(usage=(30, 400), read_usage=(20, 300)))

    assert used(scheduler) == {
        "overall.short": 30,
        "overall.daily": 400,
        "read.short": 20,
        "read.daily": 300,
    }


def test_reported_usage_never_lowers_the_counters(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    for _ in range(5):
        scheduler.reserve(Tier.WEBHOOK, "read")

    # An answer sent before our other requests reached Strava reports less than we spent.
    scheduler.observe("read", 200, snapshot(usage=(2, 2), read_usage=(2, 2)))

    assert set(used(scheduler).values()) == {5}


def test_reported_usage_by_other_clients_leaves_less_for_us(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    scheduler.observe("read", 200, snapshot(read_usage=(60, 60)))

    assert reserve_until_denied(scheduler, Tier.WEBHOOK) == 95 - 60
    assert scheduler.status().as_json()["buckets"]["read"]["short"]["other"] == 60


def test_usage_counted_before_a_boundary_is_not_carried_into_the_next_window(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON + QUARTER - 0.01)
    scheduler = make_scheduler(clock)
    sent_at = scheduler.now()
    scheduler.reserve(Tier.WEBHOOK, "read")
    clock.now = NOON + QUARTER + 0.05  # the answer arrives in the next quarter hour

    scheduler.observe("read", 200, snapshot(usage=(90, 500), read_usage=(90, 500)), sent_at)

    # The old quarter hour's 90 would have shut the new one to all but 5 for 15 minutes; the
    # day has not rolled, so its usage still counts.
    assert used(scheduler) == {
        "overall.short": 0,
        "overall.daily": 500,
        "read.short": 0,
        "read.daily": 500,
    }
    assert reserve_until_denied(scheduler, Tier.WEBHOOK) == 95  # not 95 - 90


def test_usage_of_a_request_sent_in_the_current_window_still_counts(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock)
    sent_at = scheduler.now()
    clock.now = NOON + 0.2

    scheduler.observe("read", 200, snapshot(read_usage=(60, 60)), sent_at)

    assert used(scheduler)["read.short"] == 60


def test_reported_limits_replace_the_configured_ones(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.observe("read", 200, snapshot(limit=(400, 4000), read_limit=(200, 2000)))

    assert reserve_until_denied(scheduler, Tier.ON_DEMAND) == 190
    assert scheduler.status().window("overall", "daily").limit == 4000


def test_reported_limits_are_shared_by_schedulers_on_the_same_backend(redis_url: str) -> None:
    clock = FakeClock(NOON)
    web = RedisQuotaScheduler.from_url(redis_url, CONFIG, clock)
    worker = RedisQuotaScheduler.from_url(redis_url, CONFIG, clock)

    web.observe("read", 200, snapshot(read_limit=(200, 2000)))

    assert worker.status().window("read", "short").limit == 200
    web.close()
    worker.close()


def test_a_response_without_headers_changes_nothing(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))
    scheduler.reserve(Tier.WEBHOOK, "read")

    scheduler.observe("oauth", 200, EMPTY_SNAPSHOT)
    scheduler.observe("read", None, EMPTY_SNAPSHOT)

    assert set(used(scheduler).values()) == {1}


# 429s


def test_a_429_marks_the_short_window_full_until_it_rolls(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock)

    scheduler.observe("read", 429, EMPTY_SNAPSHOT)

    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.ON_DEMAND, "read")
    assert denied.value.window == "short"
    assert denied.value.retry_at == at("2026-06-01T12:15:00")
    clock.now = NOON + QUARTER
    scheduler.reserve(Tier.ON_DEMAND, "read")


def test_a_429_with_the_daily_usage_at_its_limit_marks_the_day_full(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON)
    scheduler = make_scheduler(clock)

    scheduler.observe(
        "read", 429, snapshot(limit=(100, 1000), usage=(40, 1000), read_usage=(40, 1000))
    )

    clock.now = NOON + QUARTER
    with pytest.raises(QuotaExceeded) as denied:
        scheduler.reserve(Tier.ON_DEMAND, "read")
    assert denied.value.window == "daily"
    assert denied.value.retry_at == at("2026-06-02T00:00:00")


def test_a_429_on_a_write_shuts_both_buckets(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.observe("write", 429, EMPTY_SNAPSHOT)

    assert used(scheduler)["overall.short"] == CONFIG.limit.short
    assert used(scheduler)["read.short"] == CONFIG.read_limit.short


def test_429s_are_counted(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON))

    scheduler.observe("read", 429, EMPTY_SNAPSHOT)
    scheduler.observe("read", 429, EMPTY_SNAPSHOT)

    assert scheduler.status().throttled == 2


# Status


def test_status_as_json_has_every_bucket_window_and_tier(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(FakeClock(NOON + 60))
    scheduler.reserve(Tier.BACKFILL, "read")

    body = scheduler.status().as_json()

    assert body["at"] == "2026-06-01T12:01:00Z"
    short = body["buckets"]["read"]["short"]
    assert short["used"] == 1
    assert short["limit"] == 100
    assert short["resets_at"] == "2026-06-01T12:15:00Z"
    assert short["seconds_to_reset"] == 840
    assert short["tiers"]["backfill"] == {"used": 1, "allowed": 66}
    assert body["buckets"]["overall"]["daily"]["tiers"]["reconcile"] == {"used": 0, "allowed": 380}
    assert body["throttled"] == 0
    assert body["denials"] == {tier.value: 0 for tier in Tier}


def test_each_window_of_the_last_day_keeps_its_usage_for_the_chart(
    make_scheduler: MakeScheduler,
) -> None:
    clock = FakeClock(NOON + 60)
    scheduler = make_scheduler(clock)
    scheduler.reserve(Tier.WEBHOOK, "read")
    clock.now = NOON + QUARTER + 60
    for _ in range(3):
        scheduler.reserve(Tier.BACKFILL, "read")
    # Strava's count, other clients included, raises the window's.
    scheduler.observe("read", 200, snapshot(usage=(7, 50), read_usage=(5, 40)))
    clock.now = NOON + 2 * QUARTER + 1

    history = scheduler.usage_history()
    clock.now += 86400 - 2 * QUARTER
    a_day_later = scheduler.usage_history()

    assert len(history) == HISTORY_WINDOWS
    assert history[0].started_at == at("2026-05-31T12:45")
    assert [(h.started_at, dict(h.used)) for h in history[-3:]] == [
        (at("2026-06-01T12:00"), {"overall": 1, "read": 1}),
        (at("2026-06-01T12:15"), {"overall": 7, "read": 5}),
        (at("2026-06-01T12:30"), {"overall": 0, "read": 0}),
    ]
    assert sum(h.used["overall"] for h in history) == 8
    assert a_day_later[0].started_at == at("2026-06-01T12:15")
    assert [h.used["overall"] for h in a_day_later if h.used["overall"]] == [7]


# Redis specifics


def test_redis_window_keys_expire_soon_after_they_are_last_read(redis_url: str) -> None:
    scheduler = RedisQuotaScheduler.from_url(redis_url, CONFIG, FakeClock(NOON + 60))
    scheduler.reserve(Tier.WEBHOOK, "read")
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    ttls = sorted(client.ttl(key) for key in client.keys(f"{DEFAULT_PREFIX}*:*:*"))

    # 14 minutes left in the quarter and 11h59m in the day, each plus the grace period; a
    # quarter's counts are also read by the forecast of the quarters that follow it and by
    # the chart of the last day, and a day's by the next day's forecast.
    short, daily = ttls
    assert 840 - 5 <= short - HISTORY_WINDOWS * QUARTER - EXPIRY_GRACE_SECONDS <= 840
    assert 43140 - 5 <= daily - 86400 - EXPIRY_GRACE_SECONDS <= 43140  # read again tomorrow
    client.close()
    scheduler.close()
