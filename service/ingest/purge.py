"""Deauthorization: Strava's terms require deleting the athlete's data (strava-api.md §5)."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.models import Activity, Athlete, AthleteStatus

log = logging.getLogger(__name__)


def purge_athlete(engine: Engine, athlete_id: int, now: datetime) -> bool:
    """Remove tokens and activities in one transaction, keeping the athlete row as a
    tombstone. Idempotent; returns False when the athlete was never known."""
    with session_scope(engine) as session:
        athlete = session.get(Athlete, athlete_id, with_for_update=True)
        if athlete is None:
            return False
        deleted = session.execute(
            sa.delete(Activity).where(col(Activity.athlete_id) == athlete_id)
        ).rowcount  # type: ignore[attr-defined]
        athlete.access_token_enc = None
        athlete.refresh_token_enc = None
        athlete.expires_at = None
        athlete.status = AthleteStatus.DEAUTHORIZED.value
        athlete.deauthorized_at = athlete.deauthorized_at or now
        athlete.updated_at = now
        session.add(athlete)
    log.info("athlete purged athlete_id=%s activities_deleted=%s", athlete_id, deleted)
    return True
