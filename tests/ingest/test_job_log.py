"""Sync job logs on PostgreSQL against the emulator: what a job writes while it lists, waits,
fails, is cancelled and ends; hydration progress in batches; reading; the per-job bound;
pruning after the retention."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from launch import wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from support import (
    FakeStrava,
    FakeUtcClock,
    connect_new_emulator_athlete,
    duty_deps,
    exhaust_quota,
)
from sync_support import Sent, job, run_to_end

from service.cli.run import periodic_duties
from service.config import Settings
from service.db import create_db_engine
from service.ingest import hydrate, job_log, sync
from service.ingest.context import IngestContext
from service.ingest.job_log import (
    MAX_ENTRIES_PER_JOB,
    HydrationProgress,
    UnknownAthlete,
    UnknownJob,
    read_log,
)
from service.ingest.policy import HydrationPolicy
from service.ingest.sync import Finished, SyncOptions, Wait, cancel_job, start_job
from service.models import LogLevel, SyncJobLogEntry, SyncKind, SyncStatus, utcnow
from service.strava.quota import Tier, using_tier

OPTIONS = SyncOptions(per_page=2)


def new_job(ctx: IngestContext, athlete_id: int) -> int:
    started = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, ctx.clock())
    assert started.job.id is not None
    return started.job.id


def entries(engine: Engine, job_id: int) -> list[SyncJobLogEntry]:
    with Session(engine) as session:
        query = select(SyncJobLogEntry).where(SyncJobLogEntry.job_id == job_id)
        return list(session.exec(query.order_by(col(SyncJobLogEntry.id))))


def messages(engine: Engine, job_id: int) -> list[str]:
    return [entry.message for entry in entries(engine, job_id)]


def test_a_backfill_logs_its_start_every_page_and_its_totals(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)

    assert run_to_end(ctx, job_id, OPTIONS) == Finished(SyncStatus.COMPLETED)

    written = entries(ctx.engine, job_id)
    done = job(ctx.engine, job_id)
    started, *pages, completed = written
    assert started.message == "backfill started"
    assert started.fields["kind"] == "backfill"
    assert started.fields["cursor"]["done"] is False
    # One entry per list call, numbered, whose figures add up to the job's counters.
    assert [e.fields["page"] for e in pages] == list(range(1, done.pages + 1))
    assert sum(e.fields["items"] for e in pages) == done.listed
    assert sum(e.fields["new"] for e in pages) == done.new == 5
    assert pages[0].message == "page 1: 2 listed, 2 new, 0 updated"
    assert pages[-1].fields["items"] == 0  # the empty page that ends the listing
    assert completed.level == "info"
    assert completed.message.startswith(f"completed: {done.pages} pages, {done.listed} listed")
    assert (completed.fields["pages"], completed.fields["new"]) == (done.pages, 5)
    assert {e.athlete_id for e in written} == {athlete_id}


def test_a_job_denied_quota_logs_the_wait_with_its_retry_after(
    ctx: IngestContext, athlete_id: int, quota_clock: FakeUtcClock
) -> None:
    job_id = new_job(ctx, athlete_id)
    exhaust_quota(ctx)

    waiting = run_to_end(ctx, job_id, OPTIONS)

    assert isinstance(waiting, Wait)
    wait = entries(ctx.engine, job_id)[-1]
    assert wait.level == "warning"
    assert wait.message.startswith("waiting for Strava's rate limit until")
    assert wait.fields["retry_after"] == waiting.at.isoformat()
    assert wait.fields["error"]["type"] == "QuotaExceeded"
    assert wait.fields["error"]["tier"] == Tier.RECENT.value
    quota_clock.advance(timedelta(minutes=15))
    assert run_to_end(ctx, job_id, OPTIONS) == Finished(SyncStatus.COMPLETED)
    assert messages(ctx.engine, job_id)[-1].startswith("completed:")


def test_a_429_from_strava_is_logged_as_a_wait_with_strava_s_fault(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    one_page = SyncOptions(per_page=2, time_slice=timedelta(0))
    sync.run_job(ctx, job_id, owner="w", options=one_page, send_hydration=Sent())
    # Another client of the same app spends the rest of Strava's window behind our back.
    for _ in range(strava.emulator.limiter.limits.read_short):
        strava.emulator.limiter.hit()

    waiting = run_to_end(ctx, job_id, OPTIONS)

    assert isinstance(waiting, Wait)
    wait = entries(ctx.engine, job_id)[-1]
    assert wait.level == "warning"
    assert wait.message.endswith("Strava answered 429 (its short rate limit)")
    assert wait.fields["retry_after"] == waiting.at.isoformat()
    strava_said = wait.fields["error"]["strava"]
    assert strava_said["status_code"] == 429
    assert {"resource": "Application", "field": "rate limit", "code": "exceeded"} in strava_said[
        "errors"
    ]


def test_a_strava_error_is_logged_with_its_status_and_fault(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    # The athlete revoked us on Strava: the listing is answered 401 with a fault.
    strava.emulator.deauthorize(athlete_id, send_event=False)

    outcome = run_to_end(ctx, job_id, OPTIONS)

    assert outcome == Finished(SyncStatus.FAILED)
    failed = entries(ctx.engine, job_id)[-1]
    assert failed.level == "error"
    assert failed.message.startswith("failed: Unauthorized")
    strava_said = failed.fields["error"]["strava"]
    assert strava_said["status_code"] == 401
    assert strava_said["message"] == "Authorization Error"
    assert {"resource": "Athlete", "field": "access_token", "code": "invalid"} in strava_said[
        "errors"
    ]


def test_a_transient_strava_failure_is_logged_with_the_retry_time(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    strava.emulator.fail_next(1, status=503)

    outcome = run_to_end(ctx, job_id, OPTIONS)

    assert isinstance(outcome, Wait)
    retry = entries(ctx.engine, job_id)[-1]
    assert retry.level == "warning"
    assert retry.fields["error"]["strava"]["status_code"] == 503
    assert retry.fields["retry_after"] == outcome.at.isoformat()
    assert retry.fields["attempts"] == 1


def test_cancelling_is_logged_for_a_held_job_and_when_it_stops(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    sync.claim(ctx.engine, job_id, "w", utcnow(), OPTIONS.lease)

    cancel_job(ctx.engine, athlete_id, "an operator stopped it", utcnow())
    run_to_end(ctx, job_id, OPTIONS, owner="w")

    requested, stopped = entries(ctx.engine, job_id)[-2:]
    assert requested.message == "cancel requested; the job stops at its next page"
    assert requested.fields["reason"] == "an operator stopped it"
    assert (stopped.level, stopped.message) == ("warning", "cancelled")
    assert stopped.fields["reason"] == "an operator stopped it"


def test_a_job_nobody_holds_is_logged_cancelled_at_once(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)

    cancel_job(ctx.engine, athlete_id, "stop", utcnow())

    assert messages(ctx.engine, job_id) == ["backfill started", "cancelled"]


def test_hydrations_are_logged_in_batches_and_once_when_none_is_left(
    ctx: IngestContext, athlete_id: int
) -> None:
    sent = Sent()
    options = SyncOptions(per_page=2, policy=HydrationPolicy(recent=timedelta(weeks=10_000)))
    job_id = new_job(ctx, athlete_id)
    run_to_end(ctx, job_id, options, sent)
    assert len(sent.hydrations) == 5
    progress = HydrationProgress(batch=2, every=timedelta(hours=1))
    before = len(entries(ctx.engine, job_id))

    for activity_id, tier in sent.hydrations:
        with using_tier(Tier(tier)):
            hydrate.hydrate_stored(ctx, activity_id)
        progress.record(ctx.engine, activity_id, Tier(tier), ctx.clock())

    written = entries(ctx.engine, job_id)[before:]
    assert [(e.fields.get("hydrated"), e.fields.get("remaining")) for e in written[:-1]] == [
        (2, 3),
        (2, 1),
        (1, 0),
    ]
    assert written[-1].message == "hydration finished"
    assert written[-1].fields["hydration"] == {"complete": 5}
    # A later hydration of the same athlete does not announce the end twice.
    progress.record(ctx.engine, sent.hydrations[0][0], Tier.RECENT, ctx.clock())
    assert messages(ctx.engine, job_id).count("hydration finished") == 1


def test_hydrations_are_logged_after_the_interval_even_below_the_batch(
    ctx: IngestContext, athlete_id: int
) -> None:
    sent = Sent()
    options = SyncOptions(per_page=2, policy=HydrationPolicy(recent=timedelta(weeks=10_000)))
    job_id = new_job(ctx, athlete_id)
    run_to_end(ctx, job_id, options, sent)
    progress = HydrationProgress(batch=100, every=timedelta(minutes=5))
    clock = FakeUtcClock()
    before = len(entries(ctx.engine, job_id))
    first, second = sent.hydrations[0][0], sent.hydrations[1][0]

    with using_tier(Tier.RECENT):
        hydrate.hydrate_stored(ctx, first)
    progress.record(ctx.engine, first, Tier.RECENT, clock())
    assert len(entries(ctx.engine, job_id)) == before
    clock.advance(timedelta(minutes=5))
    with using_tier(Tier.RECENT):
        hydrate.hydrate_stored(ctx, second)
    progress.record(ctx.engine, second, Tier.RECENT, clock())

    latest = entries(ctx.engine, job_id)[-1]
    assert (latest.fields["hydrated"], latest.fields["remaining"]) == (2, 3)


def test_hydrations_someone_waits_on_now_belong_to_no_job(
    ctx: IngestContext, athlete_id: int
) -> None:
    sent = Sent()
    options = SyncOptions(per_page=2, policy=HydrationPolicy(recent=timedelta(weeks=10_000)))
    job_id = new_job(ctx, athlete_id)
    run_to_end(ctx, job_id, options, sent)
    progress = HydrationProgress(batch=1)
    before = len(entries(ctx.engine, job_id))

    activity_id = sent.hydrations[0][0]
    with using_tier(Tier.WEBHOOK):
        hydrate.hydrate_stored(ctx, activity_id)
    progress.record(ctx.engine, activity_id, Tier.WEBHOOK, ctx.clock())

    assert len(entries(ctx.engine, job_id)) == before


def test_a_jobs_log_stops_growing_at_its_bound_but_still_gets_its_end(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    now = utcnow()
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.insert(SyncJobLogEntry),
            [
                {
                    "job_id": job_id,
                    "athlete_id": athlete_id,
                    "at": now,
                    "level": "info",
                    "message": f"entry {n}",
                    "fields": {},
                }
                for n in range(MAX_ENTRIES_PER_JOB - 1)
            ],
        )

    written = [
        job_log.write(ctx.engine, job_id, athlete_id, LogLevel.INFO, f"more {n}", now=now)
        for n in range(3)
    ]
    job_log.write(ctx.engine, job_id, athlete_id, LogLevel.INFO, "the end", now=now, final=True)

    assert written == [False, False, False]
    tail = messages(ctx.engine, job_id)[-2:]
    assert tail[0].startswith("log full: entries after the first")
    assert tail[1] == "the end"
    assert len(entries(ctx.engine, job_id)) == MAX_ENTRIES_PER_JOB + 2


def test_an_entry_that_cannot_be_written_is_dropped_without_raising(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    unstorable: dict[str, Any] = {"not json": object()}

    written = job_log.write(
        ctx.engine, job_id, athlete_id, LogLevel.INFO, "x", unstorable, now=utcnow()
    )

    assert written is False
    assert messages(ctx.engine, job_id) == ["backfill started"]
    assert run_to_end(ctx, job_id, OPTIONS) == Finished(SyncStatus.COMPLETED)


def test_reading_filters_by_level_and_continues_after_an_entry_id(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    now = utcnow()
    for level in (LogLevel.DEBUG, LogLevel.WARNING, LogLevel.INFO, LogLevel.ERROR):
        job_log.write(ctx.engine, job_id, athlete_id, level, level.value, now=now)

    first = read_log(ctx.engine, athlete_id, limit=2)
    rest = read_log(ctx.engine, athlete_id, after=first.next_after, limit=2)
    warnings = read_log(ctx.engine, athlete_id, job_id=job_id, level=LogLevel.WARNING)

    assert [e.message for e in first.entries] == ["backfill started", "debug"]
    assert first.more is True
    assert [e.message for e in rest.entries] == ["warning", "info"]
    assert [e.message for e in warnings.entries] == ["warning", "error"]
    assert warnings.more is False
    empty = read_log(ctx.engine, athlete_id, after=warnings.next_after)
    assert (empty.entries, empty.next_after) == ([], warnings.next_after)


def test_the_latest_job_is_read_by_default_and_another_athletes_job_is_unknown(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    first = new_job(ctx, athlete_id)
    cancel_job(ctx.engine, athlete_id, "stop", utcnow())
    second = new_job(ctx, athlete_id)
    stranger = connect_new_emulator_athlete(ctx.engine, strava)

    assert read_log(ctx.engine, athlete_id).job.id == second
    assert read_log(ctx.engine, athlete_id, job_id=first).job.id == first
    with pytest.raises(UnknownJob):
        read_log(ctx.engine, stranger, job_id=first)
    with pytest.raises(UnknownJob):
        read_log(ctx.engine, stranger)
    with pytest.raises(UnknownAthlete):
        read_log(ctx.engine, 123456)


def test_entries_past_the_retention_are_pruned_in_bounded_batches(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    now = utcnow()
    for days in (9, 8, 8, 8, 8):
        job_log.write(
            ctx.engine,
            job_id,
            athlete_id,
            LogLevel.INFO,
            f"{days}d",
            now=now - timedelta(days=days),
        )

    first = job_log.prune(ctx.engine, older_than=timedelta(days=7), now=now, batch=2, max_batches=2)
    second = job_log.prune(ctx.engine, older_than=timedelta(days=7), now=now, batch=2)

    assert (first, second) == (4, 1)
    assert messages(ctx.engine, job_id) == ["backfill started"]


def test_the_scheduler_prunes_the_log_after_sync_log_retention_days(
    ctx: IngestContext, athlete_id: int, make_settings: Callable[..., Settings]
) -> None:
    job_id = new_job(ctx, athlete_id)
    now = utcnow()
    job_log.write(ctx.engine, job_id, athlete_id, LogLevel.INFO, "old", now=now - timedelta(days=3))
    deps = duty_deps(make_settings(sync_log_retention_days=2), ctx.engine)
    duty = next(d for d in periodic_duties(deps) if d.name == "sync-log-prune")

    duty.run()

    assert messages(ctx.engine, job_id) == ["backfill started"]


def test_a_job_with_nothing_to_hydrate_logs_the_hydration_finished_at_its_end(
    ctx: IngestContext, athlete_id: int
) -> None:
    policy = HydrationPolicy(recent=timedelta(0), older="on_demand")
    job_id = new_job(ctx, athlete_id)

    run_to_end(ctx, job_id, SyncOptions(per_page=2, policy=policy))

    *_, completed, finished = entries(ctx.engine, job_id)
    assert completed.message.startswith("completed:")
    assert finished.message == "hydration finished"
    assert finished.fields["hydration"] == {"none": 5}


def test_a_write_does_not_wait_for_the_athletes_row_that_a_purge_holds(
    ctx: IngestContext, athlete_id: int
) -> None:
    # A purge locks the athlete's row, then cancels the job, whose row a write locks: a
    # write that also waited for the athlete's row would deadlock with it.
    job_id = new_job(ctx, athlete_id)
    done = threading.Event()
    with ctx.engine.connect() as purge:
        purge.execute(
            sa.text("SELECT id FROM athletes WHERE id = :id FOR UPDATE"), {"id": athlete_id}
        )

        def write() -> None:
            job_log.write(ctx.engine, job_id, athlete_id, LogLevel.INFO, "meanwhile", now=utcnow())
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        written = wait_until(done.is_set, timeout=10, what="the write")
        purge.rollback()
    writer.join()

    assert written is True
    assert messages(ctx.engine, job_id)[-1] == "meanwhile"


def test_events_whose_database_is_unreachable_are_dropped_without_raising(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = new_job(ctx, athlete_id)
    row = job(ctx.engine, job_id)
    unreachable = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    now = utcnow()

    job_log.ended(unreachable, job_id, now)
    job_log.cancelled(unreachable, row, now)
    job_log.page_stored(
        unreachable, row, items=1, new=1, updated=0, hydrations_queued=0, gone=0, now=now
    )
    HydrationProgress(batch=1).record(unreachable, 1, Tier.RECENT, now)
    written = job_log.write(unreachable, job_id, athlete_id, LogLevel.ERROR, "x", now=now)

    unreachable.dispose()
    assert written is False
    assert messages(ctx.engine, job_id) == ["backfill started"]
