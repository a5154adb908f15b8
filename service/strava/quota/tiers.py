"""Priority tiers of Strava calls, highest first."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    """Who a Strava call is for. Lower tiers may only fill part of each window, so that a
    10,000-activity backfill never starves webhooks or a user waiting on a page."""

    ON_DEMAND = "on_demand"
    WEBHOOK = "webhook"
    RECENT = "recent"
    BACKFILL = "backfill"
    RECONCILE = "reconcile"


TIERS_BY_PRIORITY: tuple[Tier, ...] = tuple(Tier)

# The tiers someone is waiting on now. What they wanted in the last short window (used, and
# refused) is held free from the lower tiers in the next one (scheduler.py `held_for_realtime`).
REALTIME_TIERS: tuple[Tier, ...] = (Tier.ON_DEMAND, Tier.WEBHOOK)
