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
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from service.db import session_scope
from service.ingest.sync import cancel_active_jobs
from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    ActivityRemoval,
    ActivityStream,
    Athlete,
    AthleteStatus,
    InboxEvent,
    PendingHydration,
    SyncJob,
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


@dataclass(frozen=True)
class PurgeScope:
    """What a purge of the athlete would delete, counted (`strava-ingest athletes purge`
    shows it before the operator confirms)."""

    activities: int
    streams: int
    pending_fetches: int
    tombstones: int
    event_payloads: int
    active_sync_jobs: int
    tokens: bool
    profile: bool


def purge_scope(engine: Engine, athlete_id: int) -> PurgeScope | None:
    """What `purge_athlete` would delete now; None for an athlete never known."""
    with session_scope(engine) as session:
        athlete = session.get(Athlete, athlete_id)
        if athlete is None:
            return None

        def count(query: sa.Select[tuple[int]] | sa.Select[int]) -> int:
            return int(session.execute(query).scalar_one())

        of_athlete = sa.select(sa.func.count()).select_from(Activity)
        streams = (
            sa.select(sa.func.count())
            .select_from(ActivityStream)
            .join(Activity, col(Activity.id) == col(ActivityStream.activity_id))
            .where(col(Activity.athlete_id) == athlete_id)
        )
        payloads = (
            sa.select(sa.func.count())
            .select_from(InboxEvent)
            .where(col(InboxEvent.owner_id) == athlete_id)
            .where(col(InboxEvent.object_type) == "activity")
            .where(sa.cast(col(InboxEvent.updates), sa.Text) != "{}")
        )
        active = (
            sa.select(sa.func.count())
            .select_from(SyncJob)
            .where(col(SyncJob.athlete_id) == athlete_id)
            .where(col(SyncJob.status).in_([s.value for s in ACTIVE_SYNC_STATUSES]))
        )
        return PurgeScope(
            activities=count(of_athlete.where(col(Activity.athlete_id) == athlete_id)),
            streams=count(streams),
            pending_fetches=count(
                sa.select(sa.func.count())
                .select_from(PendingHydration)
                .where(col(PendingHydration.athlete_id) == athlete_id)
            ),
            tombstones=count(
                sa.select(sa.func.count())
                .select_from(ActivityRemoval)
                .where(col(ActivityRemoval.athlete_id) == athlete_id)
            ),
            event_payloads=count(payloads),
            active_sync_jobs=count(active),
            tokens=athlete.access_token_enc is not None or athlete.refresh_token_enc is not None,
            profile=any(
                v is not None
                for v in (athlete.username, athlete.firstname, athlete.lastname, athlete.raw)
            ),
        )
