"""Stored athletes and activities for the tests of the activity reads (importable: tests/ is
on sys.path)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from service.db import session_scope
from service.models import Activity, ActivityStream, Athlete, AthleteStatus, utcnow

# A fixed instant the stored activities start around.
BASE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

_ids = itertools.count(9_000_000_001)


def stored_athlete(
    engine: Engine, athlete_id: int, status: AthleteStatus = AthleteStatus.CONNECTED
) -> int:
    with session_scope(engine) as session:
        session.add(Athlete(id=athlete_id, status=status.value, scopes="activity:read_all"))
    return athlete_id


def stored_activity(
    engine: Engine,
    athlete_id: int,
    start: datetime | None,
    activity_id: int | None = None,
    **columns: Any,
) -> int:
    """A summary-only activity (hydration `none` unless `columns` say otherwise), starting at
    `start`, with Strava's raw summary; its id."""
    activity_id = activity_id if activity_id is not None else next(_ids)
    values: dict[str, Any] = {
        "name": f"Activity {activity_id}",
        "sport_type": "Run",
        "type": "Run",
        "raw_summary": {"id": activity_id, "name": f"Activity {activity_id}"},
        "hydration_status": "none",
        **columns,
    }
    with session_scope(engine) as session:
        session.add(Activity(id=activity_id, athlete_id=athlete_id, start_date=start, **values))
    return activity_id


def hydrated_activity(engine: Engine, athlete_id: int, start: datetime) -> int:
    """A complete activity: detail with laps, and a heart-rate stream."""
    activity_id = stored_activity(
        engine,
        athlete_id,
        start,
        hydration_status="complete",
        raw_detail={"id": 1, "laps": [{"lap_index": 1, "distance": 1000.0}]},
        hydrated_at=utcnow(),
    )
    with session_scope(engine) as session:
        session.add(
            ActivityStream(
                activity_id=activity_id,
                type="heartrate",
                data=[120, 121, 125],
                series_type="distance",
                original_size=3,
                resolution="high",
            )
        )
    return activity_id


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
