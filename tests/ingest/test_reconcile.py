"""Reconciliation against the emulator and PostgreSQL: what the webhooks missed is caught,
and a pass that would delete everything aborts; plus the scheduler's pure decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import FakeStrava
from sync_support import activities, job, run_to_end

from service.config import Settings
from service.ingest.context import IngestContext
from service.ingest.reconcile import (
    Candidate,
    choose,
    due,
    reconcile_after,
    schedule_reconciliations,
    start_reconcile,
)
from service.ingest.sync import Finished, SyncOptions, start_job
from service.models import Activity, SyncKind, SyncStatus, utcnow

OPTIONS = SyncOptions(per_page=2)
WEEK = timedelta(days=7)


def backfilled(ctx: IngestContext, athlete_id: int) -> None:
    started = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow())
    assert started.job.id is not None
    assert run_to_end(ctx, started.job.id, OPTIONS) == Finished(SyncStatus.COMPLETED)


def reconciled(ctx: IngestContext, athlete_id: int) -> tuple[Finished, int]:
    reconcile = start_reconcile(ctx.engine, athlete_id, WEEK, utcnow()).job
    assert reconcile.id is not None
    outcome = run_to_end(ctx, reconcile.id, OPTIONS)
    assert isinstance(outcome, Finished)
    return outcome, reconcile.id


def newest_start(ctx: IngestContext, athlete_id: int) -> int:
    stored = activities(ctx.engine, athlete_id).values()
    return int(max(row.start_date for row in stored if row.start_date).timestamp())


def test_reconciliation_stores_an_activity_whose_create_event_was_missed(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfilled(ctx, athlete_id)
    missed = strava.emulator.create_activity(athlete_id)["id"]

    reconciled(ctx, athlete_id)

    assert missed in activities(ctx.engine, athlete_id)


def test_reconciliation_finds_a_backdated_upload_inside_the_overlap(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfilled(ctx, athlete_id)
    three_days_earlier = newest_start(ctx, athlete_id) - 3 * 86400
    late = strava.emulator.create_activity(athlete_id, start_date=three_days_earlier)["id"]

    reconciled(ctx, athlete_id)

    assert late in activities(ctx.engine, athlete_id)


def test_reconciliation_applies_an_edit_to_a_listed_field(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfilled(ctx, athlete_id)
    newest = strava.emulator.activities_of(athlete_id)[0]["id"]
    strava.emulator.update_activity(newest, title="Renamed while we were away")

    _, job_id = reconciled(ctx, athlete_id)

    assert activities(ctx.engine, athlete_id)[newest].name == "Renamed while we were away"
    assert job(ctx.engine, job_id).updated == 1


def test_reconciliation_removes_an_activity_deleted_inside_the_window(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfilled(ctx, athlete_id)
    deleted = strava.emulator.activities_of(athlete_id)[1]["id"]
    strava.emulator.delete_activity(deleted)

    outcome, job_id = reconciled(ctx, athlete_id)

    assert outcome == Finished(SyncStatus.COMPLETED)
    assert deleted not in activities(ctx.engine, athlete_id)
    assert job(ctx.engine, job_id).deleted == 1


def test_reconciliation_aborts_rather_than_delete_everything_in_its_window(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int, engine: Engine
) -> None:
    backfilled(ctx, athlete_id)
    stored_before = set(activities(ctx.engine, athlete_id))
    for item in strava.emulator.activities_of(athlete_id):
        strava.emulator.delete_activity(item["id"])

    outcome, job_id = reconciled(ctx, athlete_id)

    assert outcome == Finished(SyncStatus.FAILED)
    assert "safety abort" in (job(ctx.engine, job_id).last_error or "")
    assert set(activities(ctx.engine, athlete_id)) == stored_before


def test_the_window_starts_the_overlap_before_the_newest_known_start() -> None:
    newest = datetime(2026, 5, 10, 12, tzinfo=UTC)

    assert reconcile_after(newest, WEEK) == int(datetime(2026, 5, 3, 12, tzinfo=UTC).timestamp())
    assert reconcile_after(None, WEEK) is None


def test_an_athlete_is_due_once_per_period_after_its_slot() -> None:
    day = timedelta(days=1)
    now = datetime(2026, 5, 10, 23, 59, tzinfo=UTC)

    assert due(1, None, now, day)
    assert not due(1, now - timedelta(seconds=1), now, day)
    assert due(1, now - 2 * day, now, day)


def test_the_scheduler_spreads_athletes_over_the_day() -> None:
    midnight = datetime(2026, 5, 10, tzinfo=UTC)
    yesterday = midnight - timedelta(hours=1)
    athletes = [Candidate(i, yesterday, True) for i in range(1, 241)]

    by_hour = [
        len(choose(athletes, midnight + timedelta(hours=h), timedelta(days=1), 0, 10_000))
        for h in range(1, 25)
    ]

    assert by_hour == sorted(by_hour)  # more become due as the day passes
    assert by_hour[0] < 40
    assert by_hour[11] < 170
    assert by_hour[-1] == 240


def test_the_scheduler_stops_at_the_days_reconciliation_budget() -> None:
    now = datetime(2026, 5, 10, 23, 59, tzinfo=UTC)
    athletes = [Candidate(i, None, True) for i in range(50)]

    assert len(choose(athletes, now, timedelta(days=1), spent_today=370, budget=380)) == 10


def test_stored_rows_unknown_to_strava_are_untouched_by_a_plain_backfill(
    ctx: IngestContext, athlete_id: int, engine: Engine
) -> None:
    now = utcnow()
    with Session(engine) as session:
        session.add(Activity(id=1, athlete_id=athlete_id, start_date=now, name="local"))
        session.commit()

    backfilled(ctx, athlete_id)

    assert activities(ctx.engine, athlete_id)[1].name == "local"


def test_the_periodic_duty_starts_a_pass_for_a_due_athlete_whose_history_was_listed(
    ctx: IngestContext, athlete_id: int, make_settings: Callable[..., Settings]
) -> None:
    backfilled(ctx, athlete_id)
    # A one-minute period: two minutes on, the athlete's slot has come since the backfill.
    settings = make_settings(reconcile_period_seconds=60)
    sent: list[int] = []

    started = schedule_reconciliations(
        ctx.engine, settings, utcnow() + timedelta(minutes=2), sent.append
    )

    assert started == 1
    assert job(ctx.engine, sent[0]).kind == SyncKind.RECONCILE
