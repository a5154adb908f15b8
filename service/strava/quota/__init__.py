"""The Strava quota scheduler: every Strava call reserves budget here first (docs/strava.md §2).

Usage::

    scheduler = build_scheduler(settings)
    client = StravaClient(..., hooks=QuotaHooks(scheduler))
    with using_tier(Tier.WEBHOOK):
        client.get_activity(token, activity_id)   # may raise QuotaExceeded before sending

The backend is chosen here only: in memory for embedded mode (BROKER_URL=memory://), else
Redis at BROKER_URL, so that every process shares the application's one budget.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from service.clock import Clock
from service.strava.quota.hooks import (
    AsyncQuotaHooks,
    QuotaHooks,
    current_tier,
    using_prepaid,
    using_tier,
)
from service.strava.quota.scheduler import (
    Bucket,
    QuotaConfig,
    QuotaError,
    QuotaExceeded,
    QuotaScheduler,
    QuotaStatus,
    TierCapacity,
    TierNotSet,
    WindowStatus,
    WindowUsage,
)
from service.strava.quota.tiers import TIERS_BY_PRIORITY, Tier

if TYPE_CHECKING:
    from service.config import Settings

__all__ = [
    "TIERS_BY_PRIORITY",
    "AsyncQuotaHooks",
    "Bucket",
    "QuotaConfig",
    "QuotaError",
    "QuotaExceeded",
    "QuotaHooks",
    "QuotaScheduler",
    "QuotaStatus",
    "Tier",
    "TierCapacity",
    "TierNotSet",
    "WindowStatus",
    "WindowUsage",
    "build_scheduler",
    "current_tier",
    "using_prepaid",
    "using_tier",
]


def build_scheduler(settings: Settings, *, clock: Clock = time.time) -> QuotaScheduler:
    """The scheduler for these settings; the caller closes it."""
    config = QuotaConfig.from_settings(settings)
    if settings.broker_url == "memory://":
        from service.strava.quota.memory import MemoryQuotaScheduler

        return MemoryQuotaScheduler(config, clock)
    from service.strava.quota.redis import RedisQuotaScheduler

    return RedisQuotaScheduler.from_url(settings.broker_url, config, clock)
