"""Reading stored activities for the product API: an athlete's activities newest first, page
by page, and one activity with what hydration has stored of it.

Pages are keyset pages over `ix_activities_athlete_start_id` (athlete, start date, id): a
page starts strictly after the position of the last row of the one before, so rows inserted
or deleted meanwhile neither repeat nor hide a row that existed throughout. Activities
without a start date (Strava always gives one; none is known without) come after all
others, by id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.models import Activity, ActivityStream, Athlete, AthleteStatus, UTCDateTime

# The columns a listed activity shows: everything a product filters or draws a list with, none
# of the raw JSON (a page of 200 stays small).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "id",
    "athlete_id",
    "name",
    "sport_type",
    "type",
    "start_date",
    "start_date_local",
    "timezone",
    "utc_offset",
    "distance",
    "moving_time",
    "elapsed_time",
    "total_elevation_gain",
    "average_speed",
    "max_speed",
    "average_heartrate",
    "max_heartrate",
    "workout_type",
    "visibility",
    "private",
    "trainer",
    "commute",
    "manual",
    "gear_id",
    "summary_polyline",
    "hydration_status",
    "hydrated_at",
    "updated_at",
)


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    # Row._asdict looks its keys up again for every row; they are the same for the whole page.
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


@dataclass(frozen=True)
class Position:
    """Where a page ends: the last row's start date (None for the rows without one) and id."""

    start_date: datetime | None
    activity_id: int


@dataclass(frozen=True)
class ActivityFilter:
    """Which of an athlete's activities a listing holds; empty or None means any.

    Parameters:
      after, before: the start date lies strictly after / before this instant (rows without a
        start date match neither bound).
      sport_types: the sport type is one of these.
      workout_type: Strava's workout type equals this (1: a race, for runs).
      hydration_statuses: the hydration status is one of these.
    """

    after: datetime | None = None
    before: datetime | None = None
    sport_types: Sequence[str] = ()
    workout_type: int | None = None
    hydration_statuses: Sequence[str] = ()


@dataclass(frozen=True)
class Page:
    """One page of activities (rows of SUMMARY_COLUMNS) and where the next one starts (None
    when this is the last)."""

    rows: list[dict[str, Any]]
    next_position: Position | None


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A session for reads of one statement each: no transaction around them, so a read
    costs one round trip to the database, not three (BEGIN, the read, ROLLBACK)."""
    with engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        with Session(autocommit) as session:
            yield session


def athlete_exists(engine: Engine, athlete_id: int) -> bool:
    with reading(engine) as session:
        return session.get(Athlete, athlete_id) is not None


def list_activities(
    engine: Engine,
    athlete_id: int,
    filters: ActivityFilter,
    limit: int,
    after_position: Position | None = None,
) -> Page:
    """The athlete's activities matching `filters`, newest first (start date, then id,
    descending), at most `limit` of them, from just past `after_position`."""
    rows: list[dict[str, Any]] = []
    # Asked for one more than the page holds: its presence says whether there is a next page.
    wanted = limit + 1
    params: dict[str, Any] = {
        "athlete_id": athlete_id,
        "after": filters.after,
        "before": filters.before,
        "sport_types": list(filters.sport_types),
        "workout_type": filters.workout_type,
        "statuses": list(filters.hydration_statuses),
    }
    # Core rows rather than ORM entities: a page is read-only, and this halves its cost.
    with engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        if after_position is None or after_position.start_date is not None:
            resume = after_position is not None
            statement = page_statement(filters, dated=True, resume=resume)
            cursor: dict[str, Any] = {"cursor_start": None, "cursor_id": None}
            if after_position is not None:
                cursor = {
                    "cursor_start": after_position.start_date,
                    "cursor_id": after_position.activity_id,
                }
            found = autocommit.execute(statement, {**params, **cursor, "wanted": wanted})
            rows.extend(_dicts(found))
        if len(rows) < wanted and filters.after is None and filters.before is None:
            resume = after_position is not None and after_position.start_date is None
            statement = page_statement(filters, dated=False, resume=resume)
            cursor_id = after_position.activity_id if after_position is not None else None
            found = autocommit.execute(
                statement, {**params, "cursor_id": cursor_id, "wanted": wanted - len(rows)}
            )
            rows.extend(_dicts(found))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, Position(last["start_date"], last["id"]))


@dataclass(frozen=True)
class _Shape:
    """Which filters a listing has: the statements are built once per shape."""

    after: bool
    before: bool
    sport_types: bool
    workout_type: bool
    statuses: bool


def _shape(filters: ActivityFilter) -> _Shape:
    return _Shape(
        after=filters.after is not None,
        before=filters.before is not None,
        sport_types=bool(filters.sport_types),
        workout_type=filters.workout_type is not None,
        statuses=bool(filters.hydration_statuses),
    )


def page_statement(filters: ActivityFilter, *, dated: bool, resume: bool) -> Any:
    """One page's statement for listings with these filters, with bound parameters only
    (`list_activities` gives them). `dated`: the activities with a start date, else those
    without; `resume`: past a cursor's position."""
    return _statement(_shape(filters), dated, resume)


@cache
def _statement(shape: _Shape, dated: bool, resume: bool) -> Any:
    # Built (and compiled) once per shape: building a select of this many columns costs
    # more than running it.
    start, activity_id = col(Activity.start_date), col(Activity.id)
    statement = sa.select(*(getattr(Activity, name) for name in SUMMARY_COLUMNS)).where(
        col(Activity.athlete_id) == sa.bindparam("athlete_id", type_=sa.BigInteger())
    )
    if shape.after:
        statement = statement.where(start > sa.bindparam("after", type_=UTCDateTime()))
    if shape.before:
        statement = statement.where(start < sa.bindparam("before", type_=UTCDateTime()))
    if shape.sport_types:
        statement = statement.where(
            col(Activity.sport_type).in_(sa.bindparam("sport_types", expanding=True))
        )
    if shape.workout_type:
        # The value is written into the SQL (a validated integer), so that PostgreSQL can
        # match `workout_type = 1` to the races' partial index, which a parameter hides.
        statement = statement.where(
            col(Activity.workout_type)
            == sa.bindparam("workout_type", type_=sa.Integer(), literal_execute=True)
        )
    if shape.statuses:
        statement = statement.where(
            col(Activity.hydration_status).in_(sa.bindparam("statuses", expanding=True))
        )
    cursor_id = sa.bindparam("cursor_id", type_=sa.BigInteger())
    if dated:
        statement = statement.where(start.is_not(None))
        if resume:
            cursor_start = sa.bindparam("cursor_start", type_=UTCDateTime())
            statement = statement.where(
                sa.tuple_(start, activity_id) < sa.tuple_(cursor_start, cursor_id)
            )
        statement = statement.order_by(start.desc(), activity_id.desc())
    else:
        statement = statement.where(start.is_(None))
        if resume:
            statement = statement.where(activity_id < cursor_id)
        statement = statement.order_by(activity_id.desc())
    return statement.limit(sa.bindparam("wanted", type_=sa.Integer()))


def latest_activity_id(engine: Engine, athlete_id: int) -> int | None:
    """The id of the athlete's newest activity, as the first row of their listing."""
    page = list_activities(engine, athlete_id, ActivityFilter(), 1)
    return int(page.rows[0]["id"]) if page.rows else None


@dataclass(frozen=True)
class StoredActivity:
    """One activity as stored: its row, the types of its stored streams, and whether its
    owner is connected (only then can it be hydrated)."""

    row: Activity
    stream_types: list[str]
    owner_connected: bool


def stored_activity(engine: Engine, activity_id: int) -> StoredActivity | None:
    with reading(engine) as session:
        found = session.execute(
            sa.select(Activity, col(Athlete.status))
            .join(Athlete, col(Athlete.id) == col(Activity.athlete_id))
            .where(col(Activity.id) == activity_id)
        ).first()
        if found is None:
            return None
        row, owner_status = found
        types = session.execute(
            sa.select(col(ActivityStream.type))
            .where(col(ActivityStream.activity_id) == activity_id)
            .order_by(col(ActivityStream.type))
        )
        connected = owner_status == AthleteStatus.CONNECTED.value
        stream_types = [str(t) for (t,) in types]
        session.expunge(row)
        return StoredActivity(row, stream_types, connected)


def stored_streams(engine: Engine, activity_id: int) -> list[ActivityStream]:
    """The activity's stored streams, by type."""
    with reading(engine) as session:
        streams = list(
            session.exec(
                select(ActivityStream)
                .where(col(ActivityStream.activity_id) == activity_id)
                .order_by(col(ActivityStream.type))
            )
        )
        for stream in streams:
            session.expunge(stream)
        return streams
