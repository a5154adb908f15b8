"""When waiting work of one tier should finish, at the budget that tier gets now.

The rate is the tier's allowance per short window as the scheduler reports it (`status()`:
the tightest bucket, never more per window than a day's allowance spread over the day's
windows, docs/strava.md §2.1). What is left of the current window is spent first, then a
window's allowance at a time. It is a forecast at today's shares and usage, not a promise:
real-time work and the app's other clients come first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.strava.quota.scheduler import BUCKETS, QuotaScheduler
from service.strava.quota.tiers import Tier


@dataclass(frozen=True)
class FinishEstimate:
    """Parameters:
    waiting: units of work still to do.
    done: units already done.
    rate_per_hour: requests per hour the tier may spend at today's shares and limits.
    finishes_at: when the last unit should be done; None when the tier gets no budget.
    sentence: the estimate for people, e.g. "120 of 450 hydrated; about 14:45 UTC at the
        backfill tier's budget".
    """

    waiting: int
    done: int
    rate_per_hour: float
    finishes_at: datetime | None
    sentence: str


def finish_estimate(
    scheduler: QuotaScheduler, tier: Tier, waiting: int, done: int, now: datetime
) -> FinishEstimate:
    """Estimate when `waiting` units of `tier` work (one request each) are done."""
    status = scheduler.status()
    config = scheduler.config
    windows_per_day = config.day_seconds / config.window_seconds
    per_window = min(
        min(
            float(status.window(bucket, "short").allowed[tier]),
            status.window(bucket, "daily").allowed[tier] / windows_per_day,
        )
        for bucket in BUCKETS
    )
    room_now = max(
        0,
        min(
            status.window(bucket, "short").allowed[tier] - status.window(bucket, "short").used
            for bucket in BUCKETS
        ),
    )
    rate_per_hour = per_window * 3600 / config.window_seconds
    resets_at = status.window("read", "short").resets_at
    finishes_at: datetime | None
    if waiting <= 0:
        finishes_at = now
    elif per_window <= 0:
        finishes_at = None
    elif waiting <= room_now:
        finishes_at = min(resets_at, now + timedelta(hours=waiting / rate_per_hour))
    else:
        windows = math.ceil((waiting - room_now) / per_window)
        last_start = resets_at + timedelta(seconds=(windows - 1) * config.window_seconds)
        share = ((waiting - room_now) - (windows - 1) * per_window) / per_window
        finishes_at = last_start + timedelta(seconds=share * config.window_seconds)
    return FinishEstimate(
        waiting=waiting,
        done=done,
        rate_per_hour=rate_per_hour,
        finishes_at=finishes_at,
        sentence=_sentence(tier, waiting, done, finishes_at),
    )


def _sentence(tier: Tier, waiting: int, done: int, finishes_at: datetime | None) -> str:
    progress = f"{done:,} of {done + waiting:,} hydrated"
    if waiting <= 0:
        return f"{progress}; nothing waits"
    if finishes_at is None:
        return f"{progress}; the {tier.value} tier gets no budget at today's limits"
    return f"{progress}; about {finishes_at:%Y-%m-%d %H:%M} UTC at the {tier.value} tier's budget"
