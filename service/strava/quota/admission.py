"""Admission of queued work: the quota is reserved first, then the work goes to a worker.

Work below the real-time tiers (a backfill's hydrations) waits outside the broker, in its
rows (service/ingest/held.py). Every ``release_tick`` the release duty asks ``admit_now`` how
many units of a tier the quota takes now; ``admit_now`` reserves their requests in the
scheduler at once, and the units go to the workers *prepaid* (``hooks.using_prepaid``): their
calls spend what was reserved for them instead of asking again. A unit is therefore handed to
a worker once, with its room already counted, rather than refused every window; nothing
waits in Redis but what runs now; and real-time work, which reserves as it comes, always
finds the room the forecast keeps for it.

How much to take at a tick: the tier's room now (``QuotaScheduler.tier_capacity``: what the
forecast of real-time work and other clients leaves for the rest of the window and day)
spread over the next ``PACE_SPAN_SECONDS`` of the window, ``PACE`` ticks' worth at a time.
Taken all at once, a window's room would land on the workers in one burst and a webhook
that arrives then would queue behind all of it; spread over the whole quarter hour, a small
import would crawl through room nobody else wants. A part of the window
(``BURST_RESERVE``) is only released as the window goes by: real-time work is sparse and
bursty (a webhook or two a quarter hour), its forecast is a few requests, and a burst that
found the window spent early would wait for the next one. Room freed later (the forecast and
the reserve shrink as the window ends) is taken the same way, up to ``DELIVERY_SECONDS``
before the window ends: work admitted later might reach Strava in the next window, which
Strava would count there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from service.strava.quota.scheduler import QuotaExceeded, QuotaScheduler, window_index
from service.strava.quota.tiers import REALTIME_TIERS, TIERS_BY_PRIORITY, Tier

# The tiers whose work waits for admission, highest first; real-time work never does.
QUEUED_TIERS: tuple[Tier, ...] = tuple(t for t in TIERS_BY_PRIORITY if t not in REALTIME_TIERS)

# Admitted work must reach Strava before the window ends (seconds; at most a quarter window).
DELIVERY_SECONDS = 0.3

# How often the release duty admits work (seconds; at most 1/48 of a short window).
RELEASE_TICK_SECONDS = 1.0

# The room is spread over this much of the window ahead (seconds): a few seconds of the
# workers' time, however long the window ...
PACE_SPAN_SECONDS = 5.0

# ... taking this many ticks' share of it at each tick, so that it is spent before then.
PACE = 1.5

# The share of a window's budget (``TierCapacity.window_budget``) a queued tier leaves for
# bursts of real-time work at the window's start, shrinking to nothing at its end.
BURST_RESERVE = 0.1


def release_tick(window_seconds: float) -> float:
    """Seconds between two admissions for short windows of ``window_seconds``."""
    return min(RELEASE_TICK_SECONDS, window_seconds / 48)


@dataclass(frozen=True)
class Admitted:
    """Units of work admitted now, in order.

    Parameters:
        window: the short window (``window_index``) their requests were reserved in.
        requests: the requests reserved for each unit (its cost, fewer for the last one if
            the room ran out while reserving); they are valid in ``window`` only.
    """

    window: int
    requests: tuple[int, ...] = ()

    @property
    def units(self) -> int:
        return len(self.requests)


def admit_now(
    scheduler: QuotaScheduler,
    tier: Tier,
    count: int,
    cost: int = 1,
    rng: random.Random | None = None,
) -> Admitted:
    """Admit up to ``count`` units of queued ``tier`` work, each making ``cost`` read
    requests, and reserve their requests now.

    The share of the room at one tick is fractional; it is rounded up or down at random in
    proportion (``rng``), so that over many ticks the tier gets its share, not its floor.
    """
    if tier in REALTIME_TIERS:
        raise ValueError(f"{tier.value} work reserves as it comes; it is never queued")
    now = scheduler.now()
    length = scheduler.config.window_seconds
    window = window_index(now, length)
    left = (window + 1) * length - now
    usable = left - min(DELIVERY_SECONDS, length / 4)
    if count < 1 or usable <= 0:
        return Admitted(window)
    capacity = scheduler.tier_capacity(tier)
    room = capacity.room_now
    reserve = BURST_RESERVE * capacity.window_budget * left / length
    paced = room * min(1.0, PACE * release_tick(length) / min(usable, PACE_SPAN_SECONDS))
    share = max(0.0, min(paced, room - reserve)) / cost
    whole = math.floor(share)
    if (rng or random).random() < share - whole:
        whole += 1
    units = min(whole, count, room // cost)
    requests: list[int] = []
    for _ in range(units):
        reserved = 0
        try:
            while reserved < cost:
                scheduler.reserve(tier, "read")
                reserved += 1
        except QuotaExceeded:
            # Real-time work took the room meanwhile: this unit is admitted with what it got
            # (it reserves the rest itself), the others wait for the next tick.
            if reserved:
                requests.append(reserved)
            break
        requests.append(reserved)
    return Admitted(window, tuple(requests))
