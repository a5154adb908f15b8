"""Hydration: fetching an activity's detail, and by policy its streams, with its owner's token.

Two calls (docs/strava.md §4.2, §4.3), each committed as it returns: the detail makes the row
`partial` with `hydration_missing = ["streams"]` until the streams are stored too. When the
streams call is denied quota or fails, the error propagates (the actor waits or backs off)
and the row stays `partial`; the retry fetches only the streams.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from service.ingest.activities import (
    STREAMS,
    mark_not_available,
    mark_streams_not_available,
    save_detail,
    save_streams,
)
from service.ingest.context import IngestContext
from service.ingest.tokens import access_token_for, mark_if_activity_read_missing
from service.models import Activity
from service.strava.errors import NotFound, Unauthorized

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What the row already holds, as far as hydrating it is concerned."""

    athlete_id: int
    # The detail is stored and only the streams are missing (an earlier attempt got that far).
    streams_missing: bool


def needs_detail(stored: Stored | None, stream_keys: Sequence[str]) -> bool:
    """Whether to fetch the detail: always, unless streams are wanted and a previous attempt
    already stored the detail, so only the streams are left."""
    return not (stream_keys and stored is not None and stored.streams_missing)


def missing_after_detail(stream_keys: Sequence[str]) -> list[str] | None:
    """What a freshly stored detail still lacks: the streams, when they are wanted."""
    return [STREAMS] if stream_keys else None


def hydrate(
    ctx: IngestContext, athlete_id: int, activity_id: int, stream_keys: Sequence[str] = ()
) -> None:
    """Fetch and store the detail (which carries laps and splits, §4.2), then the streams of
    `stream_keys` when given (none: the detail alone is complete)."""
    stored = _stored(ctx, activity_id)
    token = access_token_for(ctx, athlete_id)
    if needs_detail(stored, stream_keys):
        try:
            result = ctx.strava.get_activity(token, activity_id)
        except (NotFound, Unauthorized) as error:
            # Deleted since, or hidden from our scope (§4.2): there is nothing to fetch. A
            # token without activity:read at all puts the athlete in need of reconnecting.
            mark_if_activity_read_missing(ctx, athlete_id, error)
            mark_not_available(ctx.engine, activity_id, type(error).__name__, ctx.clock())
            log.info("activity not available activity_id=%s reason=%s", activity_id, error)
            return
        save_detail(
            ctx.engine, result.data, result.raw, ctx.clock(), missing_after_detail(stream_keys)
        )
    if stream_keys:
        try:
            streams = ctx.strava.get_activity_streams(token, activity_id, list(stream_keys))
        except (NotFound, Unauthorized) as error:
            # The detail is there, the streams are not (§4.3): partial, with the reason.
            mark_streams_not_available(ctx.engine, activity_id, type(error).__name__, ctx.clock())
            log.info("streams not available activity_id=%s reason=%s", activity_id, error)
            return
        save_streams(ctx.engine, activity_id, streams.data, ctx.clock())
    log.info(
        "activity hydrated athlete_id=%s activity_id=%s streams=%s",
        athlete_id,
        activity_id,
        len(stream_keys) > 0,
    )


def _stored(ctx: IngestContext, activity_id: int) -> Stored | None:
    with Session(ctx.engine) as session:
        row = session.get(Activity, activity_id)
        if row is None:
            return None
        streams_missing = row.raw_detail is not None and row.hydration_missing == [STREAMS]
        return Stored(row.athlete_id, streams_missing)


def hydrate_stored(ctx: IngestContext, activity_id: int, stream_keys: Sequence[str] = ()) -> bool:
    """Hydrate an activity we already hold (e.g. a summary from a backfill). Returns False
    when the row is gone (deleted since it was queued)."""
    stored = _stored(ctx, activity_id)
    if stored is None:
        return False
    hydrate(ctx, stored.athlete_id, activity_id, stream_keys)
    return True


def hydrate_missing_streams(
    ctx: IngestContext, activity_id: int, stream_keys: Sequence[str]
) -> bool:
    """Fetch the streams of an activity whose detail is stored and whose streams are missing
    (the webhook path, after its fetch stored the detail): never the detail again. Returns
    False, with no call, when the row is gone or no longer misses them."""
    stored = _stored(ctx, activity_id)
    if stored is None or not stored.streams_missing or not stream_keys:
        return False
    hydrate(ctx, stored.athlete_id, activity_id, stream_keys)
    return True
