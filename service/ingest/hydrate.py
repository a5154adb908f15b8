"""Hydration: fetching an activity's detail with its owner's token and storing it."""

from __future__ import annotations

import logging

from sqlmodel import Session

from service.ingest.activities import mark_not_available, save_detail
from service.ingest.context import IngestContext
from service.ingest.tokens import access_token_for
from service.models import Activity
from service.strava.errors import NotFound, Unauthorized

log = logging.getLogger(__name__)


def hydrate(ctx: IngestContext, athlete_id: int, activity_id: int) -> None:
    """Fetch and store the detail (which carries laps and splits, strava-api.md §4.2)."""
    token = access_token_for(ctx, athlete_id)
    try:
        result = ctx.strava.get_activity(token, activity_id)
    except (NotFound, Unauthorized) as error:
        # Deleted since, or hidden from our scope (§4.2): there is nothing to fetch.
        mark_not_available(ctx.engine, activity_id, type(error).__name__, ctx.clock())
        log.info("activity not available activity_id=%s reason=%s", activity_id, error)
        return
    save_detail(ctx.engine, result.data, result.raw, ctx.clock())
    log.info("activity hydrated athlete_id=%s activity_id=%s", athlete_id, activity_id)


def hydrate_stored(ctx: IngestContext, activity_id: int) -> bool:
    """Hydrate an activity we already hold (e.g. a summary from a backfill). Returns False
    when the row is gone (deleted since it was queued)."""
    with Session(ctx.engine) as session:
        activity = session.get(Activity, activity_id)
        if activity is None:
            return False
        athlete_id = activity.athlete_id
    hydrate(ctx, athlete_id, activity_id)
    return True
