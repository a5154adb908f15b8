"""Processing of one inbox event: decide (events.plan_event), then carry it out."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col

from service.db import session_scope
from service.ingest.activities import delete_activity
from service.ingest.context import IngestContext
from service.ingest.events import Action, Deauthorize, DeleteActivity, Hydrate, Ignore, plan_event
from service.ingest.hydrate import hydrate
from service.ingest.purge import purge_athlete
from service.ingest.tokens import AthleteNotConnected
from service.models import Athlete, AthleteStatus, InboxEvent, InboxStatus

log = logging.getLogger(__name__)

# Finished rows are not processed again: a redelivered message is a no-op.
_FINISHED = (InboxStatus.PROCESSED.value, InboxStatus.IGNORED.value)


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
                retry_after=None,
                updated_at=now,
                processed_at=now,
            )
        )
