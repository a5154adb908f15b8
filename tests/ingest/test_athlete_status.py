"""An athlete's state as the routes and the CLI show it, on real PostgreSQL: each athlete's
own counts and own job, the active job before older ones, pages by id."""

from __future__ import annotations

import pytest
from sqlmodel import Session
from support import FakeStrava, connect_emulator_athlete

from service.ingest.athlete_status import (
    UnknownAthlete,
    athlete_page,
    athlete_state,
)
from service.ingest.context import IngestContext
from service.ingest.sync import cancel_job, start_job
from service.models import Activity, AthleteStatus, HydrationStatus, SyncKind, utcnow


def test_counts_and_job_are_each_athletes_own(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    other = connect_emulator_athlete(ctx.engine, strava, strava.emulator.add_athlete())
    with Session(ctx.engine) as session:
        session.add(Activity(id=1, athlete_id=athlete_id, hydration_status=HydrationStatus.PARTIAL))
        session.add(Activity(id=2, athlete_id=other, hydration_status=HydrationStatus.COMPLETE))
        session.add(Activity(id=3, athlete_id=other, hydration_status=HydrationStatus.COMPLETE))
        session.commit()
    job = start_job(ctx.engine, other, SyncKind.BACKFILL, utcnow()).job

    mine = athlete_state(ctx.engine, athlete_id)
    theirs = athlete_state(ctx.engine, other)

    assert (mine.activities.partial, mine.activities.complete, mine.activities.total) == (1, 0, 1)
    assert (theirs.activities.complete, theirs.activities.total) == (2, 2)
    assert mine.sync_job is None
    assert theirs.sync_job is not None
    assert theirs.sync_job.id == job.id


def test_the_active_job_is_shown_else_the_last_one(ctx: IngestContext, athlete_id: int) -> None:
    first = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow()).job
    cancel_job(ctx.engine, athlete_id, "stopped by the operator", utcnow())
    last = athlete_state(ctx.engine, athlete_id).sync_job
    assert last is not None
    assert (last.id, last.status) == (first.id, "cancelled")

    active = start_job(ctx.engine, athlete_id, SyncKind.FULL_REFRESH, utcnow()).job
    shown = athlete_state(ctx.engine, athlete_id).sync_job

    assert shown is not None
    assert (shown.id, shown.kind, shown.status) == (active.id, "full_refresh", "queued")


def test_a_page_starts_after_the_given_id_and_says_where_the_next_one_does(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    ids = sorted(
        [
            athlete_id,
            *(
                connect_emulator_athlete(ctx.engine, strava, strava.emulator.add_athlete())
                for _ in range(3)
            ),
        ]
    )

    first = athlete_page(ctx.engine, limit=2)
    second = athlete_page(ctx.engine, after_id=first.after_id, limit=2)

    assert [a.id for a in first.athletes] == ids[:2]
    assert first.after_id == ids[1]
    assert [a.id for a in second.athletes] == ids[2:]
    assert second.after_id is None
    assert athlete_page(ctx.engine, statuses=[AthleteStatus.DEAUTHORIZED]).athletes == []


def test_an_athlete_never_connected_is_unknown(ctx: IngestContext) -> None:
    with pytest.raises(UnknownAthlete):
        athlete_state(ctx.engine, 424242)


@pytest.mark.parametrize("limit", [0, 201])
def test_a_page_of_more_than_200_or_none_is_refused(ctx: IngestContext, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        athlete_page(ctx.engine, limit=limit)
