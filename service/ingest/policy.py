"""Which listed activities get hydrated, and at what priority: a pure decision.

Listing summaries is cheap (one call per 200, docs/strava.md §4.1); hydrating costs a call per
activity (§4.2), so only what the product needs soon is hydrated eagerly: the recent window
of the configured sport types at `recent` priority, older ones at `backfill` priority or only
on demand (README, "Connecting athletes, backfill and reconciliation").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.config import Settings, comma_separated, default
from service.models import HydrationStatus
from service.strava.quota import Tier
from service.strava.quota.tiers import TIERS_BY_PRIORITY

# The stream types a hydration asks for unless HYDRATE_STREAM_KEYS says otherwise.
DEFAULT_STREAM_KEYS = tuple(comma_separated(default("hydrate_stream_keys")))


@dataclass(frozen=True)
class HydrationPolicy:
    """Parameters:
    recent: how far back from now an activity counts as recent.
    sport_types: the sport types hydrated eagerly; empty means all.
    older: "backfill" hydrates older activities at backfill priority, "on_demand" never eagerly.
    streams: which hydrations also fetch streams: "recent" those above backfill priority,
      "all" every one, "none" none.
    stream_keys: the stream types asked for (docs/strava.md §4.3).
    """

    recent: timedelta = timedelta(weeks=default("hydrate_recent_weeks"))
    sport_types: frozenset[str] = frozenset()
    older: Literal["backfill", "on_demand"] = default("hydrate_older")
    streams: Literal["all", "recent", "none"] = default("hydrate_streams")
    stream_keys: tuple[str, ...] = DEFAULT_STREAM_KEYS

    @classmethod
    def from_settings(cls, settings: Settings) -> HydrationPolicy:
        types = frozenset(comma_separated(settings.hydrate_sport_types))
        return cls(
            recent=timedelta(weeks=settings.hydrate_recent_weeks),
            sport_types=types,
            older=settings.hydrate_older,
            streams=settings.hydrate_streams,
            stream_keys=tuple(comma_separated(settings.hydrate_stream_keys)),
        )


@dataclass(frozen=True)
class Plan:
    """What a newly listed activity starts as: `pending` with the tier to hydrate it at, or
    `none` (hydrated only on demand) with no tier."""

    status: HydrationStatus
    tier: Tier | None


ON_DEMAND = Plan(HydrationStatus.NONE, None)


def plan_hydration(
    policy: HydrationPolicy, sport_type: str | None, start: datetime | None, now: datetime
) -> Plan:
    if policy.sport_types and sport_type not in policy.sport_types:
        return ON_DEMAND
    if start is not None and now - start <= policy.recent:
        return Plan(HydrationStatus.PENDING, Tier.RECENT)
    if policy.older == "backfill":
        return Plan(HydrationStatus.PENDING, Tier.BACKFILL)
    return ON_DEMAND


def hydration_cost(policy: HydrationPolicy, tier: Tier) -> int:
    """Strava calls of one hydration at `tier`: the detail, and the streams when fetched."""
    return 2 if streams_for(policy, tier) else 1


def streams_for(policy: HydrationPolicy, tier: Tier) -> tuple[str, ...]:
    """The stream types a hydration at `tier` fetches after the detail; empty: none."""
    above_backfill = TIERS_BY_PRIORITY.index(tier) < TIERS_BY_PRIORITY.index(Tier.BACKFILL)
    if policy.streams == "all" or (policy.streams == "recent" and above_backfill):
        return policy.stream_keys
    return ()
