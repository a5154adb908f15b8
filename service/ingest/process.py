"""Processing of one inbox event: decide (events.plan_event), then carry it out."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col

from service.db import session_scope
from service.ingest.activities import delete_activity, mark_not_available, save_detail
from service.ingest.context import IngestContext
from service.ingest.events import Action, Deauthorize, DeleteActivity, Hydrate, Ignore, plan_event
from service.ingest.purge import purge_athlete
from service.ingest.tokens import AthleteNotConnected, access_token_for
from service.models import Athlete, AthleteStatus, InboxEvent, InboxStatus
from service.strava.errors import NotFound, Unauthorized

log = logging.getLogger(__name__)

# Finished rows are not processed again: a redelivered message is a no-op.
_FINISHED = (InboxStatus.PROCESSED.value, InboxStatus.IGNORED.value)


def hydrate(ctx: IngestContext, athlete_id: int, activity_id: int) -> None:
    """Fetch an activity's detail with its owner's token and store it."""
    token = access_token_for(ctx, athlete_id)
    try:
        result = ctx.strava.get_activity(token, activity_id)
    except (NotFound, Unauthorized) as error:
        # Deleted since, or hidden from our scope (strava-api.md §4.2): nothing to fetch.
        mark_not_available(ctx.engine, activity_id, type(error).__name__, ctx.clock())
        log.info("activity not available activity_id=%s reason=%s", activity_id, error)
        return
    save_detail(ctx.engine, result.data, result.raw, ctx.clock())
    log.info("activity hydrated athlete_id=%s activity_id=%s", athlete_id, activity_id)


def _execute(ctx: IngestContext, action: Action, owner_id: int) -> InboxStatus:
    match action:
        case Hydrate(activity_id):
            try:
                hydrate(ctx, owner_id, activity_id)
            except AthleteNotConnected:
                return InboxStatus.IGNORED
        case DeleteActivity(activity_id):
            delete_activity(ctx.engine, owner_id, activity_id)
        case Deauthorize(athlete_id):
            if not purge_athlete(ctx.engine, athlete_id, ctx.clock()):
                return InboxStatus.IGNORED
        case Ignore(reason):
            log.info("event ignored owner_id=%s reason=%s", owner_id, reason)
            return InboxStatus.IGNORED
    return InboxStatus.PROCESSED


def process_event(ctx: IngestContext, inbox_id: int) -> InboxStatus | None:
    """Carry out one stored event. Effects are idempotent, so a redelivery is harmless.
    Returns the row's final status, or None when the row does not exist."""
    with session_scope(ctx.engine) as session:
        event = session.get(InboxEvent, inbox_id)
        if event is None:
            log.warning("event not in inbox inbox_id=%s", inbox_id)
            return None
        if event.status in _FINISHED:
            return InboxStatus(event.status)
        owner = session.get(Athlete, event.owner_id)
        owner_connected = owner is not None and owner.status == AthleteStatus.CONNECTED
        action = plan_event(
            event.object_type,
            event.aspect_type,
            event.object_id,
            event.owner_id,
            event.updates,
            owner_connected=owner_connected,
        )
    status = _execute(ctx, action, event.owner_id)
    _finish(ctx, inbox_id, status)
    log.info(
        "event done inbox_id=%s object_id=%s aspect=%s status=%s",
        inbox_id,
        event.object_id,
        event.aspect_type,
        status.value,
    )
    return status


def _finish(ctx: IngestContext, inbox_id: int, status: InboxStatus) -> None:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        session.execute(
            sa.update(InboxEvent)
            .where(col(InboxEvent.id) == inbox_id)
            .values(
                status=status.value,
                attempts=InboxEvent.attempts + 1,
                last_error=None,
                updated_at=now,
                processed_at=now,
            )
        )


def record_failure(
    ctx: IngestContext, inbox_id: int, error: BaseException, *, max_attempts: int
) -> bool:
    """Count a failed attempt; after `max_attempts` the row is `failed` (dead).
    Returns whether it is dead."""
    with session_scope(ctx.engine) as session:
        event = session.get(InboxEvent, inbox_id)
        if event is None:
            return True
        event.attempts += 1
        # The exception's type and message only: Strava's fault, never request data.
        event.last_error = f"{type(error).__name__}: {error}"[:2000]
        dead = event.attempts >= max_attempts
        if dead:
            event.status = InboxStatus.FAILED.value
        event.updated_at = ctx.clock()
        session.add(event)
        return dead
