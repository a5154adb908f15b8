"""Activity rows: upserts keyed by Strava's id, so repeating an effect changes nothing."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from service.db import session_scope, upsert_insert
from service.models import (
    Activity,
    ActivityRemoval,
    ActivityStream,
    HydrationStatus,
    PendingHydration,
    RemovalReason,
)
from service.strava.schemas import DetailedActivity, Stream, SummaryActivity

# What `hydration_missing` names when the detail is stored and the streams are not.
STREAMS = "streams"
# How the error of a row whose streams Strava refused begins: `partial` for good.
STREAMS_REFUSED = "streams: "


def summary_columns(activity: SummaryActivity) -> dict[str, Any]:
    """The queryable columns of an activity, from a summary or a detailed representation."""
    return {
        "athlete_id": activity.athlete.id,
        "name": activity.name,
        "sport_type": activity.sport_type,
        "type": activity.type,
        "start_date": activity.start_date,
        "start_date_local": activity.start_date_local,
        "timezone": activity.timezone,
        "utc_offset": activity.utc_offset,
        "distance": activity.distance,
        "moving_time": activity.moving_time,
        "elapsed_time": activity.elapsed_time,
        "total_elevation_gain": activity.total_elevation_gain,
        "average_speed": activity.average_speed,
        "max_speed": activity.max_speed,
        "average_heartrate": activity.average_heartrate,
        "max_heartrate": activity.max_heartrate,
        "workout_type": activity.workout_type,
        "visibility": activity.visibility,
        "private": activity.private,
        "trainer": activity.trainer,
        "commute": activity.commute,
        "manual": activity.manual,
        "gear_id": activity.gear_id,
        "summary_polyline": activity.map.summary_polyline if activity.map else None,
    }


def upsert_activity(
    session: Session, engine: Engine, activity_id: int, values: dict[str, Any], now: datetime
) -> None:
    """Insert the activity with `values`, or set them on the stored row (its `created_at`
    stays), in the caller's transaction."""
    statement = upsert_insert(engine, Activity).values(id=activity_id, created_at=now, **values)
    changed = {k: statement.excluded[k] for k in values}
    session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=changed))


def detail_columns(
    detail: DetailedActivity, raw: dict[str, Any], now: datetime, missing: list[str] | None
) -> dict[str, Any]:
    """The columns a fetched detail sets: its values, and the hydration status it leaves,
    `complete`, or `partial` while `missing` names what is still to be fetched. Shared by the
    hydrations and the webhook path (hydrate.py::fetch_detail)."""
    status = HydrationStatus.PARTIAL if missing else HydrationStatus.COMPLETE
    return {
        **summary_columns(detail),
        "raw_detail": raw,
        "hydration_status": status.value,
        "hydration_missing": missing or None,
        "hydrated_at": now,
        # Attempts count failures since the last success; a success starts afresh.
        "hydrate_attempts": 0,
        "last_hydrate_error": None,
        "retry_after": None,
    }


def save_streams(
    engine: Engine, activity_id: int, streams: dict[str, Stream], now: datetime
) -> None:
    """Store the activity's streams, replacing any fetched before, and mark it `complete`,
    in one transaction. Strava returns only the types the activity recorded (§4.3), so
    fewer streams than asked for is complete, not partial."""
    rows = [
        {
            "activity_id": activity_id,
            "type": key,
            "data": stream.data,
            "series_type": stream.series_type,
            "original_size": stream.original_size,
            "resolution": stream.resolution,
            "fetched_at": now,
        }
        for key, stream in streams.items()
    ]
    with session_scope(engine) as session:
        session.execute(
            sa.delete(ActivityStream).where(col(ActivityStream.activity_id) == activity_id)
        )
        if rows:
            session.execute(sa.insert(ActivityStream), rows)
        session.execute(
            sa.update(Activity)
            .where(col(Activity.id) == activity_id)
            .values(
                hydration_status=HydrationStatus.COMPLETE.value,
                hydration_missing=None,
                hydrated_at=now,
                hydrate_attempts=0,
                last_hydrate_error=None,
                retry_after=None,
                updated_at=now,
            )
        )


def mark_streams_not_available(engine: Engine, activity_id: int, error: str, now: datetime) -> None:
    """Strava has the detail but no streams for us (404/401): `partial` for good, saying so."""
    with session_scope(engine) as session:
        session.execute(
            sa.update(Activity)
            .where(col(Activity.id) == activity_id)
            .values(
                hydration_status=HydrationStatus.PARTIAL.value,
                hydration_missing=[STREAMS],
                last_hydrate_error=f"{STREAMS_REFUSED}{error}",
                retry_after=None,
                updated_at=now,
            )
        )


def mark_not_available(session: Session, activity_id: int, error: str, now: datetime) -> None:
    """Strava will not show us this activity (404/401): keep what we have, say why."""
    session.execute(
        sa.update(Activity)
        .where(col(Activity.id) == activity_id)
        .values(
            hydration_status=HydrationStatus.NOT_AVAILABLE.value,
            last_hydrate_error=error,
            updated_at=now,
        )
    )


@dataclass(frozen=True)
class Tombstone:
    """What a removal leaves so that events older than it cannot bring the activity back."""

    reason: RemovalReason
    event_time: int


def remove_activities(
    session: Session,
    athlete_id: int,
    activity_ids: Collection[int],
    now: datetime,
    tombstone: Tombstone | None = None,
) -> int:
    """Delete the athlete's activities among `activity_ids` and what derives from them (the
    rows that reference them cascade), in the caller's transaction. With a `tombstone`, also
    their pending fetches, which must not bring them back, and the tombstones (a newer one
    is kept). Returns how many activities were deleted."""
    deleted = session.execute(
        sa.delete(Activity)
        .where(col(Activity.athlete_id) == athlete_id)
        .where(col(Activity.id).in_(activity_ids))
    ).rowcount  # type: ignore[attr-defined]
    if tombstone is not None:
        for activity_id in activity_ids:
            _leave_tombstone(session, athlete_id, activity_id, tombstone, now)
    return int(deleted)


def _leave_tombstone(
    session: Session, athlete_id: int, activity_id: int, tombstone: Tombstone, now: datetime
) -> None:
    session.execute(
        sa.delete(PendingHydration).where(col(PendingHydration.activity_id) == activity_id)
    )
    removal = session.get(ActivityRemoval, activity_id)
    if removal is None:
        removal = ActivityRemoval(
            activity_id=activity_id,
            athlete_id=athlete_id,
            reason=tombstone.reason.value,
            event_time=tombstone.event_time,
            removed_at=now,
        )
    elif tombstone.event_time >= removal.event_time:
        removal.reason = tombstone.reason.value
        removal.event_time = tombstone.event_time
        removal.removed_at = now
    session.add(removal)
