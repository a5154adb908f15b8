"""Hydration: fetching an activity's detail, and by policy its streams, with its owner's token.

Two calls (docs/strava.md §4.2, §4.3), each committed as it returns: the detail makes the row
`partial` with `hydration_missing = ["streams"]` until the streams are stored too. When the
streams call is denied quota or fails, the error propagates (the actor waits or backs off)
and the row stays `partial`; the retry fetches only the streams.

The detail fetch and its storing (`fetch_detail`, `store_fetched`) are also the webhook
path's (coalesce.py), which stores under the owner's lock and in event order; its streams
are fetched here too (`hydrate_missing_streams`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from service.db import session_scope
from service.ingest.activities import (
    STREAMS,
    detail_columns,
    mark_not_available,
    mark_streams_not_available,
    save_streams,
    upsert_activity,
)
from service.ingest.context import IngestContext
from service.ingest.tokens import AccessToken, current_access_token, mark_if_activity_read_missing
from service.log_ids import add_log_ids
from service.models import Activity, HydrationStatus
from service.strava.errors import NotFound, StravaError, Unauthorized

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What the row already holds, as far as hydrating it is concerned."""

    athlete_id: int
    # The detail is stored and only the streams are missing (an earlier attempt got that far).
    streams_missing: bool
    # Nothing is missing: another hydration (an on-demand one) completed it meanwhile.
    complete: bool = False


def needs_detail(stored: Stored | None, stream_keys: Sequence[str]) -> bool:
    """Whether to fetch the detail: always, unless streams are wanted and a previous attempt
    already stored the detail, so only the streams are left."""
    return not (stream_keys and stored is not None and stored.streams_missing)


def missing_after_detail(stream_keys: Sequence[str]) -> list[str] | None:
    """What a freshly stored detail still lacks: the streams, when they are wanted."""
    return [STREAMS] if stream_keys else None


# Why a fetched activity is not stored: it belongs to someone other than the athlete asked for.
OTHER_OWNER = "OtherOwner"


@dataclass(frozen=True)
class Absent:
    """Strava did not return the activity: why, and whether that confirms a delete."""

    error: str
    confirms_removal: bool
    reason: str


def absence(ctx: IngestContext, athlete_id: int, error: StravaError, refreshed: bool) -> Absent:
    """What a 404/401 for an activity tells. A 404 confirms it is gone (deleted, or hidden
    from our scope, §4.2). A 401 does so only with a token Strava has just issued: otherwise
    the token may be what it rejects. A 401 for lack of activity:read confirms nothing and
    puts the athlete in need of reconnecting."""
    name = type(error).__name__
    if isinstance(error, NotFound):
        return Absent(name, True, "Strava answered 404")
    if mark_if_activity_read_missing(ctx, athlete_id, error):
        return Absent(name, False, "the token lacks activity:read; the athlete must reconnect")
    if refreshed:
        return Absent(name, True, "Strava refused the activity to a token it just issued")
    return Absent(name, False, "Strava rejected the athlete's token for the activity")


# What a detail fetch returns: the columns to store, or why there is nothing to store.
Fetch = dict[str, Any] | Absent


def fetch_detail(
    ctx: IngestContext,
    athlete_id: int,
    activity_id: int,
    token: AccessToken,
    stream_keys: Sequence[str] = (),
) -> Fetch:
    """GET /activities/{id} (§4.2) with the athlete's token: the detail's columns
    (`partial` while `stream_keys` are wanted), or why Strava did not return it. Every path
    that fetches an activity's detail goes through here; each caller stores the answer with
    `store_fetched` in a transaction of its own choosing."""
    try:
        result = ctx.strava.get_activity(token.value, activity_id)
    except (NotFound, Unauthorized) as error:
        # Deleted since, or hidden from our scope (§4.2): there is nothing to fetch.
        log.info("activity not available activity_id=%s reason=%s", activity_id, error)
        return absence(ctx, athlete_id, error, token.refreshed)
    if result.data.athlete.id != athlete_id:
        # Strava shows other athletes' public activities too (§4.2): nothing of another
        # athlete is stored under this one.
        log.warning(
            "activity belongs to another athlete activity_id=%s athlete_id=%s",
            activity_id,
            athlete_id,
        )
        return Absent(OTHER_OWNER, False, "Strava lists the activity under another athlete")
    return detail_columns(result.data, result.raw, ctx.clock(), missing_after_detail(stream_keys))


def store_fetched(
    ctx: IngestContext, session: Session, activity_id: int, fetched: Fetch, now: datetime
) -> None:
    """Store what `fetch_detail` returned, in the caller's transaction: the detail, or the
    row (when there is one) `not_available` with the reason."""
    if isinstance(fetched, Absent):
        mark_not_available(session, activity_id, fetched.error, now)
    else:
        upsert_activity(session, ctx.engine, activity_id, {**fetched, "updated_at": now}, now)


def hydrate(
    ctx: IngestContext, athlete_id: int, activity_id: int, stream_keys: Sequence[str] = ()
) -> None:
    """Fetch and store the detail (which carries laps and splits, §4.2), then the streams of
    `stream_keys` when given (none: the detail alone is complete)."""
    add_log_ids(athlete_id=athlete_id, activity_id=activity_id)
    stored = _stored(ctx, activity_id)
    token = current_access_token(ctx, athlete_id)
    if needs_detail(stored, stream_keys):
        fetched = fetch_detail(ctx, athlete_id, activity_id, token, stream_keys)
        with session_scope(ctx.engine) as session:
            store_fetched(ctx, session, activity_id, fetched, ctx.clock())
        if isinstance(fetched, Absent):
            return
    if stream_keys:
        try:
            streams = ctx.strava.get_activity_streams(token.value, activity_id, list(stream_keys))
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
        complete = row.hydration_status == HydrationStatus.COMPLETE.value
        return Stored(row.athlete_id, streams_missing, complete)


def hydrate_stored(ctx: IngestContext, activity_id: int, stream_keys: Sequence[str] = ()) -> bool:
    """Hydrate an activity we already hold (e.g. a summary from a backfill). Returns False
    when the row is gone (deleted since it was queued). A row completed since it was queued
    (an on-demand hydration overtook this one) costs no call."""
    stored = _stored(ctx, activity_id)
    if stored is None:
        return False
    if stored.complete:
        log.info("activity already complete activity_id=%s", activity_id)
        return True
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
