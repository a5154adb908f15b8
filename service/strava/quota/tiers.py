"""Priority tiers of Strava calls, highest first."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    """Who a Strava call is for. Lower tiers leave free what the higher ones are forecast to
    need, so that a 10,000-activity backfill never starves webhooks or a user waiting on a
    page, and take the rest."""

    ON_DEMAND = "on_demand"
    WEBHOOK = "webhook"
    RECENT = "recent"
    BACKFILL = "backfill"
    RECONCILE = "reconcile"


TIERS_BY_PRIORITY: tuple[Tier, ...] = tuple(Tier)

# The tiers someone is waiting on now. What they want (used, and refused) is forecast from
# recent windows and kept free from the lower tiers (scheduler.py `kept_for_realtime`).
REALTIME_TIERS: tuple[Tier, ...] = (Tier.ON_DEMAND, Tier.WEBHOOK)


def above(tier: Tier) -> tuple[Tier, ...]:
    """The tiers that go before ``tier``: a lower tier keeps room for their forecast demand."""
    return TIERS_BY_PRIORITY[: TIERS_BY_PRIORITY.index(tier)]
