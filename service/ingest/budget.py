"""What one athlete's webhook events may spend: a bounded number of real-time calls that
events can ask for on their own word, and a count of the creates Strava then denied.

Strava signs nothing (docs/strava.md §1.8): anyone who knows an athlete id can post creates
with made-up activity ids, updates and deletes of the athlete's activities, each costing a
fetch, or deauthorizations, each costing the check of the grant. Coalescing bounds the
fetches per activity, not per athlete. Real uploads, edits, deletions and revocations of one
athlete in one quota window are few, so past `webhook_fetches_per_window` such calls wait at
the `recent` tier: they are not dropped, but they can no longer spend the room the webhook
tier keeps for everyone else's real-time work. The counters live on the athlete row and
change under the owner's row lock (coalesce.lock_owner), so every worker process sees one
budget.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from sqlmodel import Session

from service.ingest.context import IngestContext
from service.models import Athlete
from service.strava.quota import Tier

log = logging.getLogger(__name__)


def quota_window(ctx: IngestContext) -> int:
    """The index of the current short quota window, by the quota scheduler's clock."""
    return math.floor(ctx.quota.now() / ctx.quota.config.window_seconds)


def tier_for_unverified_call(ctx: IngestContext, session: Session, athlete_id: int) -> Tier:
    """Charge one call an event asks for on its own word (any fetch of an activity, the grant
    check of a deauthorization) to the athlete's budget in this window: `webhook` while
    within it, `recent` past it. Call under the owner's lock."""
    athlete = session.get(Athlete, athlete_id)
    if athlete is None:
        return Tier.WEBHOOK
    window = quota_window(ctx)
    if athlete.new_fetch_window != window:
        athlete.new_fetch_window = window
        athlete.new_fetch_count = 0
    athlete.new_fetch_count += 1
    session.add(athlete)
    if athlete.new_fetch_count <= ctx.webhook_fetches_per_window:
        return Tier.WEBHOOK
    if athlete.new_fetch_count == ctx.webhook_fetches_per_window + 1:
        log.warning(
            "athlete past the webhook budget of unverified calls athlete_id=%s window=%s; "
            "further ones wait at the recent tier",
            athlete_id,
            window,
        )
    return Tier.RECENT


def count_forged_create(
    ctx: IngestContext, session: Session, athlete_id: int, activity_id: int, now: datetime
) -> None:
    """Strava answered 404 for an activity a create announced and we had never seen (or
    showed it under another athlete): count it, and flag the athlete once the count reaches
    `forged_creates_to_flag`."""
    athlete = session.get(Athlete, athlete_id)
    if athlete is None:
        return
    athlete.forged_creates += 1
    log.warning(
        "create of an activity Strava does not have athlete_id=%s activity_id=%s count=%s",
        athlete_id,
        activity_id,
        athlete.forged_creates,
    )
    if athlete.flagged_at is None and athlete.forged_creates >= ctx.forged_creates_to_flag:
        athlete.flagged_at = now
        athlete.flag_reason = (
            f"{athlete.forged_creates} creates of activities Strava answered 404 for "
            "or listed under another athlete"
        )
        log.warning("athlete flagged athlete_id=%s reason=%s", athlete_id, athlete.flag_reason)
    session.add(athlete)
