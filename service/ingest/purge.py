"""Deauthorization: Strava's terms require deleting the athlete's data (docs/strava.md §5).

A deauthorization arrives as an athlete `update` with `"authorized": "false"` (§1.4). Anyone
can post one, so the purge runs only once Strava confirms the grant is gone
(service/ingest/tokens.py::grant_revoked, called by process.py). The purge removes, in one
transaction: the tokens, the activities (and what references them,
through ON DELETE CASCADE), pending fetches, activity tombstones, the payloads of the
athlete's inbox events, and the athlete's profile. The athlete row stays as a tombstone with
the time of deauthorization, so late events for them are recognised and ignored.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from service.db import session_scope
from service.ingest.sync import cancel_active_jobs
from service.models import (
    Activity,
    ActivityRemoval,
    Athlete,
    AthleteStatus,
    InboxEvent,
    PendingHydration,
)

log = logging.getLogger(__name__)


def purge_athlete_in(session: Session, athlete_id: int, now: datetime) -> bool:
    """The purge inside the caller's transaction. Returns False for an athlete never known."""
    athlete = session.get(Athlete, athlete_id, with_for_update=True)
    if athlete is None:
        return False
    cancel_active_jobs(session, athlete_id, "athlete deauthorized", now)
    deleted = session.execute(
        sa.delete(Activity).where(col(Activity.athlete_id) == athlete_id)
    ).rowcount  # type: ignore[attr-defined]
    for table in (PendingHydration, ActivityRemoval):
        session.execute(sa.delete(table).where(col(table.athlete_id) == athlete_id))
    # Activity events carry titles (§1.4); the rows stay, without payload, so that Strava's
    # retries of them still collapse onto them.
    session.execute(
        sa.update(InboxEvent)
        .where(col(InboxEvent.owner_id) == athlete_id)
        .where(col(InboxEvent.object_type) == "activity")
        .values(updates={})
    )
    athlete.access_token_enc = None
    athlete.refresh_token_enc = None
    athlete.expires_at = None
    athlete.username = athlete.firstname = athlete.lastname = None
    athlete.raw = None
    athlete.status = AthleteStatus.DEAUTHORIZED.value
    athlete.deauthorized_at = athlete.deauthorized_at or now
    athlete.updated_at = now
    session.add(athlete)
    log.info("athlete purged athlete_id=%s activities_deleted=%s", athlete_id, deleted)
    return True


def purge_athlete(engine: Engine, athlete_id: int, now: datetime) -> bool:
    """Purge the athlete in one transaction, keeping the athlete row as a tombstone.
    Idempotent; returns False when the athlete was never known."""
    with session_scope(engine) as session:
        return purge_athlete_in(session, athlete_id, now)
