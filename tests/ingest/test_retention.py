"""Retention on real PostgreSQL: each limit prunes exactly what it says (a row just inside
stays, just outside goes) and touches nothing else, unset limits keep everything, work is
bounded per run and goes on at the next, the scheduler runs it, and reconciliation against
the emulator never lists a pruned activity back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select
from support import FakeStrava, connect_new_emulator_athlete, duty_deps, stored_event
from sync_support import activities, job, run_to_end

from service.cli.run import periodic_duties
from service.config import Settings
from service.ingest.context import IngestContext
from service.ingest.reconcile import schedule_reconciliations
from service.ingest.retention import RetentionPolicy, RetentionRun, enforce
from service.ingest.sync import Finished, SyncOptions, start_job
from service.models import (
    Activity,
    ActivityRemoval,
    ActivityStream,
    Athlete,
    HydrationStatus,
    InboxEvent,
    SyncJob,
    SyncKind,
    SyncStatus,
    utcnow,
)

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
OPTIONS = SyncOptions(per_page=2)


def add_activity(
    engine: Engine,
    athlete_id: int,
    activity_id: int,
    *,
    started: datetime,
    written: datetime,
    streams_fetched: datetime | None = None,
) -> None:
    """A hydrated activity that started at `started`, last written from Strava at
    `written`, with two streams fetched at `streams_fetched` (when given)."""
    with Session(engine) as session:
        session.add(
            Activity(
                id=activity_id,
                athlete_id=athlete_id,
                name=f"activity {activity_id}",
                start_date=started,
                raw_summary={"id": activity_id, "name": "summary"},
                raw_detail={"id": activity_id, "name": "detail", "laps": []},
                hydration_status=HydrationStatus.COMPLETE.value,
                hydrated_at=written,
                created_at=written,
                updated_at=written,
            )
        )
        session.flush()
        if streams_fetched is not None:
            for kind in ("time", "heartrate"):
                session.add(
                    ActivityStream(
                        activity_id=activity_id,
                        type=kind,
                        data=[1, 2, 3],
                        fetched_at=streams_fetched,
                    )
                )
        session.commit()


def rows(engine: Engine, table: type[SQLModel]) -> dict[Any, dict[str, Any]]:
    """Every row of `table`, all columns, keyed by primary key."""
    with Session(engine) as session:
        found = session.exec(select(table)).all()
        keys = [c.name for c in table.__table__.primary_key]  # type: ignore[attr-defined]
        return {tuple(getattr(r, k) for k in keys): r.model_dump() for r in found}


def without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


def test_raw_json_goes_once_written_longer_ago_than_the_limit_and_nothing_else_changes(
    engine: Engine, ctx: IngestContext, athlete_id: int
) -> None:
    now = utcnow()
    limit = 7 * DAY
    long_ago = now - 400 * DAY
    add_activity(engine, athlete_id, 1, started=long_ago, written=now - limit - SECOND,
                 streams_fetched=long_ago)  # fmt: skip
    add_activity(engine, athlete_id, 2, started=long_ago, written=now - limit + SECOND)
    before = rows(engine, Activity)
    streams_before = rows(engine, ActivityStream)

    run = enforce(engine, RetentionPolicy(raw_json=limit), now)

    after = rows(engine, Activity)
    assert run == RetentionRun(raw_json_cleared=1)
    assert (after[(1,)]["raw_summary"], after[(1,)]["raw_detail"]) == (None, None)
    assert without(after[(1,)], "raw_summary", "raw_detail") == without(
        before[(1,)], "raw_summary", "raw_detail"
    )
    assert after[(2,)] == before[(2,)]
    assert rows(engine, ActivityStream) == streams_before
    # SQL NULL, not JSON's null: "has raw JSON" queries see the column empty.
    with Session(engine) as session:
        empty = session.execute(
            sa.select(sa.func.count()).where(col(Activity.raw_summary).is_(None))
        ).scalar_one()
    assert empty == 1


def test_streams_go_once_fetched_longer_ago_than_the_limit_and_the_activity_stays_complete(
    engine: Engine, ctx: IngestContext, athlete_id: int
) -> None:
    now = utcnow()
    limit = 30 * DAY
    long_ago = now - 400 * DAY
    add_activity(engine, athlete_id, 1, started=long_ago, written=long_ago,
                 streams_fetched=now - limit - SECOND)  # fmt: skip
    add_activity(engine, athlete_id, 2, started=long_ago, written=long_ago,
                 streams_fetched=now - limit + SECOND)  # fmt: skip
    activities_before = rows(engine, Activity)

    run = enforce(engine, RetentionPolicy(streams=limit), now)

    assert run == RetentionRun(streams_deleted=2)
    assert sorted(rows(engine, ActivityStream)) == [(2, "heartrate"), (2, "time")]
    assert rows(engine, Activity) == activities_before
    assert activities_before[(1,)]["hydration_status"] == HydrationStatus.COMPLETE.value


def test_activities_go_by_start_date_with_their_streams_and_nothing_of_anyone_else(
    engine: Engine, ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    now = utcnow()
    limit = 90 * DAY
    other = connect_new_emulator_athlete(engine, strava)
    # Fetched just now: the start date decides, not the fetch.
    add_activity(engine, athlete_id, 1, started=now - limit - SECOND, written=now,
                 streams_fetched=now)  # fmt: skip
    add_activity(engine, athlete_id, 2, started=now - limit + SECOND, written=now - 900 * DAY)
    add_activity(engine, other, 3, started=now - limit - DAY, written=now)
    add_activity(engine, other, 4, started=now - DAY, written=now, streams_fetched=now)
    start_job(engine, athlete_id, SyncKind.BACKFILL, now)
    stored_event(ctx, 1, athlete_id, "update", updates={"title": "x"})
    jobs, events = rows(engine, SyncJob), rows(engine, InboxEvent)
    kept = {k: v for k, v in rows(engine, Activity).items() if k in ((2,), (4,))}

    run = enforce(engine, RetentionPolicy(activities=limit), now)

    assert run == RetentionRun(activities_deleted=2)
    assert rows(engine, Activity) == kept
    assert sorted(rows(engine, ActivityStream)) == [(4, "heartrate"), (4, "time")]
    # Retention leaves no tombstone (nothing was deleted on Strava) and no other row moves.
    assert rows(engine, ActivityRemoval) == {}
    assert (rows(engine, SyncJob), rows(engine, InboxEvent)) == (jobs, events)


def test_unset_limits_keep_everything(
    engine: Engine, athlete_id: int, make_settings: Callable[..., Settings]
) -> None:
    now = utcnow()
    ancient = now - 5000 * DAY
    add_activity(engine, athlete_id, 1, started=ancient, written=ancient, streams_fetched=ancient)
    before = (rows(engine, Activity), rows(engine, ActivityStream))

    run = enforce(engine, RetentionPolicy.from_settings(make_settings()), now)

    assert run == RetentionRun()
    assert (rows(engine, Activity), rows(engine, ActivityStream)) == before


@pytest.mark.parametrize(
    ("policy", "left"),
    [
        (RetentionPolicy(raw_json=DAY, batch=2, max_batches=2), "raw"),
        (RetentionPolicy(streams=DAY, batch=2, max_batches=2), "streams"),
        (RetentionPolicy(activities=DAY, batch=2, max_batches=2), "activities"),
    ],
)
def test_a_run_does_at_most_batch_times_max_batches_and_the_next_run_goes_on(
    engine: Engine, athlete_id: int, policy: RetentionPolicy, left: str
) -> None:
    now = utcnow()
    old = now - 10 * DAY
    for activity_id in range(1, 8):  # 7 activities, 14 streams
        add_activity(engine, athlete_id, activity_id, started=old, written=old,
                     streams_fetched=old)  # fmt: skip

    def remaining() -> int:
        with Session(engine) as session:
            if left == "raw":
                query = sa.select(sa.func.count()).where(col(Activity.raw_detail).is_not(None))
            elif left == "streams":
                query = sa.select(sa.func.count()).select_from(ActivityStream)
            else:
                query = sa.select(sa.func.count()).select_from(Activity)
            return int(session.execute(query).scalar_one())

    total = remaining()
    runs = []
    while remaining():
        before = remaining()
        enforce(engine, policy, now)
        runs.append(before - remaining())
        assert len(runs) < 10

    assert all(done <= 4 for done in runs)  # batch 2, 2 transactions
    assert runs[0] == 4
    assert sum(runs) == total


def test_the_scheduler_applies_the_configured_retention(
    engine: Engine, athlete_id: int, make_settings: Callable[..., Settings]
) -> None:
    now = utcnow()
    add_activity(engine, athlete_id, 1, started=now - 40 * DAY, written=now)
    add_activity(engine, athlete_id, 2, started=now - DAY, written=now - 20 * DAY,
                 streams_fetched=now - 20 * DAY)  # fmt: skip
    settings = make_settings(
        activity_retention_days=30, streams_retention_days=10, raw_json_retention_days=10
    )
    duty = next(d for d in periodic_duties(duty_deps(settings, engine)) if d.name == "retention")

    duty.run()

    stored = rows(engine, Activity)
    assert list(stored) == [(2,)]
    assert (stored[(2,)]["raw_summary"], stored[(2,)]["raw_detail"]) == (None, None)
    assert rows(engine, ActivityStream) == {}
    assert duty.every == settings.retention_interval_seconds


def backfilled(ctx: IngestContext, athlete_id: int) -> None:
    started = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow())
    assert started.job.id is not None
    assert run_to_end(ctx, started.job.id, OPTIONS) == Finished(SyncStatus.COMPLETED)


def scheduled_reconciliation(ctx: IngestContext, settings: Settings, now: datetime) -> int:
    """The scheduler's reconciliation pass for the athlete, two minutes after `now` (with a
    one-minute period the athlete's slot has come), run to its end; its job id."""
    settings = settings.model_copy(update={"reconcile_period_seconds": 60})
    sent: list[int] = []
    later = now + timedelta(minutes=2)
    assert schedule_reconciliations(ctx.engine, settings, later, sent.append) == 1
    assert run_to_end(ctx, sent[0], as_workers_run(settings)) == Finished(SyncStatus.COMPLETED)
    return sent[0]


def as_workers_run(settings: Settings) -> SyncOptions:
    """The workers' sync options (from the settings), with small pages."""
    return replace(SyncOptions.from_settings(settings), per_page=2)


def test_reconciliation_does_not_list_back_what_retention_removed_inside_its_overlap(
    ctx: IngestContext, strava: FakeStrava, make_settings: Callable[..., Settings]
) -> None:
    athlete_id = connect_new_emulator_athlete(ctx.engine, strava)
    now = utcnow()
    pruned = strava.emulator.create_activity(
        athlete_id, start_date=int((now - 5 * DAY).timestamp())
    )["id"]
    newest = strava.emulator.create_activity(athlete_id, start_date=int((now - DAY).timestamp()))[
        "id"
    ]
    backfilled(ctx, athlete_id)
    # The overlap (7 days before the newest start) reaches past the retention limit (3 days).
    settings = make_settings(reconcile_overlap_days=7, activity_retention_days=3)
    enforce(ctx.engine, RetentionPolicy.from_settings(settings), now)
    assert set(activities(ctx.engine, athlete_id)) == {newest}

    job_id = scheduled_reconciliation(ctx, settings, now)

    assert set(activities(ctx.engine, athlete_id)) == {newest}
    assert pruned in {a["id"] for a in strava.emulator.activities_of(athlete_id)}
    assert job(ctx.engine, job_id).new == 0


def test_reconciliation_does_not_list_the_whole_history_back_when_retention_removed_it_all(
    ctx: IngestContext, strava: FakeStrava, make_settings: Callable[..., Settings]
) -> None:
    athlete_id = connect_new_emulator_athlete(ctx.engine, strava)
    now = utcnow()
    for days in (60, 90):
        strava.emulator.create_activity(athlete_id, start_date=int((now - days * DAY).timestamp()))
    backfilled(ctx, athlete_id)
    settings = make_settings(activity_retention_days=30)
    enforce(ctx.engine, RetentionPolicy.from_settings(settings), now)
    assert activities(ctx.engine, athlete_id) == {}

    job_id = scheduled_reconciliation(ctx, settings, now)

    assert activities(ctx.engine, athlete_id) == {}
    assert (job(ctx.engine, job_id).listed, job(ctx.engine, job_id).new) == (0, 0)


@pytest.mark.parametrize("kind", [SyncKind.BACKFILL, SyncKind.FULL_REFRESH])
def test_a_history_listing_lists_nothing_older_than_activity_retention_keeps(
    ctx: IngestContext, strava: FakeStrava, make_settings: Callable[..., Settings], kind: SyncKind
) -> None:
    athlete_id = connect_new_emulator_athlete(ctx.engine, strava)
    now = utcnow()
    recent = strava.emulator.create_activity(athlete_id, start_date=int((now - DAY).timestamp()))[
        "id"
    ]
    strava.emulator.create_activity(athlete_id, start_date=int((now - 60 * DAY).timestamp()))
    settings = make_settings(activity_retention_days=30)
    started = start_job(ctx.engine, athlete_id, kind, now).job
    assert started.id is not None

    outcome = run_to_end(ctx, started.id, as_workers_run(settings))

    assert outcome == Finished(SyncStatus.COMPLETED)
    assert set(activities(ctx.engine, athlete_id)) == {recent}


def test_embedded_mode_applies_every_limit_on_sqlite(sqlite_engine: Engine) -> None:
    now = utcnow()
    with Session(sqlite_engine) as session:
        session.add(Athlete(id=7))
        session.commit()
    add_activity(sqlite_engine, 7, 1, started=now - 40 * DAY, written=now)
    add_activity(sqlite_engine, 7, 2, started=now - DAY, written=now - 20 * DAY,
                 streams_fetched=now - 20 * DAY)  # fmt: skip
    add_activity(sqlite_engine, 7, 3, started=now - DAY, written=now, streams_fetched=now)
    policy = RetentionPolicy(raw_json=10 * DAY, streams=10 * DAY, activities=30 * DAY)

    run = enforce(sqlite_engine, policy, now)

    assert run == RetentionRun(raw_json_cleared=1, streams_deleted=2, activities_deleted=1)
    stored = rows(sqlite_engine, Activity)
    assert sorted(stored) == [(2,), (3,)]
    assert (stored[(2,)]["raw_summary"], stored[(2,)]["raw_detail"]) == (None, None)
    assert stored[(3,)]["raw_detail"] == {"id": 3, "name": "detail", "laps": []}
    assert sorted(rows(sqlite_engine, ActivityStream)) == [(3, "heartrate"), (3, "time")]
