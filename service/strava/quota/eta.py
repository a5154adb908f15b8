"""When waiting work should finish, at the budget its tier can expect (``tier_capacity``).

The estimate spends what the tier may still use in the current window and today, then a full
window's room per window, never more in a UTC day than the tier's daily allowance (docs/
strava.md §2.1). It is a forecast at today's shares and usage, not a promise: real-time work
and other clients of the app come first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.strava.quota.scheduler import BUCKETS, QuotaScheduler, TierCapacity
from service.strava.quota.tiers import Tier


@dataclass(frozen=True)
class FinishEstimate:
    """Parameters:
    waiting: units of work still to do.
    done: units already done.
    rate_per_hour: requests per hour the tier can expect from the next window on, averaged
        over a UTC day (so a daily allowance smaller than the windows' sum counts).
    finishes_at: when the last unit should be done; ``None`` when the tier gets no budget.
    sentence: the estimate for people, e.g. "1,840 of 9,500 hydrated; at today's budget
        about 2026-12-04 06:00 UTC".
    """

    waiting: int
    done: int
    rate_per_hour: float
    finishes_at: datetime | None
    sentence: str


def finish_estimate(
    scheduler: QuotaScheduler,
    tier: Tier,
    waiting: int,
    done: int,
    now: datetime,
    *,
    calls_per_item: float = 1.0,
    verb: str = "hydrated",
) -> FinishEstimate:
    """Estimate when ``waiting`` units of ``tier`` work finish, each costing
    ``calls_per_item`` requests (a hydration with streams costs two)."""
    capacity = scheduler.tier_capacity(tier)
    status = scheduler.status()
    per_day = min(status.window(bucket, "daily").allowed[tier] for bucket in BUCKETS)
    day_seconds = scheduler.config.day_seconds
    window_seconds = scheduler.config.window_seconds
    windows_per_day = day_seconds / window_seconds
    per_window = min(capacity.per_window, per_day / windows_per_day)
    rate_per_hour = per_window * 3600 / window_seconds
    finishes_at = finish_time(
        capacity, waiting * calls_per_item, now, window_seconds, day_seconds, per_day
    )
    return FinishEstimate(
        waiting=waiting,
        done=done,
        rate_per_hour=rate_per_hour,
        finishes_at=finishes_at,
        sentence=_sentence(waiting, done, finishes_at, verb),
    )


def finish_time(
    capacity: TierCapacity,
    requests: float,
    now: datetime,
    window_seconds: int,
    day_seconds: int,
    per_day: int,
) -> datetime | None:
    """When ``requests`` more requests of a tier with ``capacity`` are spent: first the room
    of this window, then a window's room at a time until today's room is gone, then
    ``per_day`` a day, spread evenly over the day's windows. ``None``: never, at this
    budget."""
    if requests <= 0:
        return now
    this_window = min(capacity.room_now, capacity.daily_room)
    if requests <= this_window:
        # Spent over what is left of this window, as the work arrives.
        left = (capacity.window_resets_at - now).total_seconds()
        return now + timedelta(seconds=left * requests / this_window)
    requests -= this_window
    today = capacity.daily_room - this_window
    windows_today = (capacity.day_resets_at - capacity.window_resets_at).total_seconds() / (
        window_seconds
    )
    if capacity.per_window > 0 and today > 0:
        spendable = min(float(today), capacity.per_window * windows_today)
        if requests <= spendable:
            windows = math.ceil(requests / capacity.per_window)
            end = capacity.window_resets_at + timedelta(seconds=windows * window_seconds)
            return min(end, capacity.day_resets_at)
        requests -= spendable
    per_day_spent = min(float(per_day), capacity.per_window * day_seconds / window_seconds)
    if per_day_spent <= 0:
        return None
    # Whole days, then within the last day a window's room at a time from midnight.
    days = math.floor(requests / per_day_spent)
    rest = requests - days * per_day_spent
    if rest == 0:
        days, rest = days - 1, per_day_spent
    windows = math.ceil(rest / capacity.per_window)
    return capacity.day_resets_at + timedelta(seconds=days * day_seconds + windows * window_seconds)


def _sentence(waiting: int, done: int, finishes_at: datetime | None, verb: str) -> str:
    progress = f"{done:,} of {done + waiting:,} {verb}"
    if waiting <= 0:
        return f"{progress}; nothing waits"
    if finishes_at is None:
        return f"{progress}; this tier gets no budget at today's shares"
    return f"{progress}; at today's budget about {_minute(finishes_at)}"


def _minute(moment: datetime) -> str:
    # Rounded up: "about 06:00" should not promise a minute before the estimate.
    whole = moment.replace(second=0, microsecond=0)
    if whole < moment:
        whole += timedelta(minutes=1)
    return whole.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class TierBacklog:
    """The work waiting for one tier, and its estimate.

    Parameters:
        tier: the quota tier the work is charged to.
        waiting: hydrations waiting (and webhook fetches held for coalescing).
        sync_jobs: sync jobs whose list calls run at this tier and are not finished.
        estimate: when the hydrations should finish.
    """

    tier: Tier
    waiting: int
    sync_jobs: int
    estimate: FinishEstimate

    def as_json(self) -> dict[str, object]:
        finishes_at = self.estimate.finishes_at
        return {
            "waiting": self.waiting,
            "done": self.estimate.done,
            "sync_jobs": self.sync_jobs,
            "rate_per_hour": round(self.estimate.rate_per_hour, 1),
            "finishes_at": (
                None if finishes_at is None else finishes_at.isoformat().replace("+00:00", "Z")
            ),
            "estimate": self.estimate.sentence,
        }
