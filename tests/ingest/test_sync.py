"""Sync jobs against the emulator and PostgreSQL: the backfill, resuming after a kill or a
rate limit, the full refresh, one active job per athlete, leases and cancelling."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from support import CLIENT_ID, CLIENT_SECRET, FakeStrava, FakeUtcClock, exhaust_quota
from sync_support import Sent, activities, job, run_to_end, summaries_by_id

from service.config import Settings, default
from service.ingest import backfill, sync
from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext
from service.ingest.policy import HydrationPolicy
from service.ingest.sync import (
    Finished,
    NotClaimed,
    SyncOptions,
    Wait,
    cancel_active_jobs,
    cancel_job,
    start_job,
    sweep,
)
from service.models import (
    Activity,
    Athlete,
    AthleteStatus,
    HydrationStatus,
    SyncKind,
    SyncStatus,
    utcnow,
)
from service.strava.client import Result, StravaClient
from service.strava.quota import QuotaHooks, Tier, build_scheduler
from service.strava.quota.scheduler import QuotaExceeded
from service.strava.ratelimit import RateLimitSnapshot, WindowPair
from service.strava.schemas import TokenResponse

LIST = "GET /athlete/activities"
OPTIONS = SyncOptions(per_page=2)


def backfill_job(ctx: IngestContext, athlete_id: int, kind: SyncKind = SyncKind.BACKFILL) -> int:
    started = start_job(ctx.engine, athlete_id, kind, ctx.clock())
    assert started.job.id is not None
    return started.job.id


def test_a_backfill_stores_every_page_of_the_history_and_ends_on_an_empty_page(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = backfill_job(ctx, athlete_id)

    outcome = run_to_end(ctx, job_id, OPTIONS)

    assert outcome == Finished(SyncStatus.COMPLETED)
    listing = strava.emulator.activities_of(athlete_id)
    stored = activities(ctx.engine, athlete_id)
    assert set(stored) == {item["id"] for item in listing}
    assert all(row.raw_summary == summaries_by_id(listing)[row.id] for row in stored.values())
    done = job(ctx.engine, job_id)
    assert (done.new, done.updated, done.deleted) == (5, 0, 0)
    assert strava.emulator.calls[LIST] == done.pages


def test_activities_sharing_the_boundary_second_are_all_stored(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    # Three starts in one second, straddling the 2-item page boundary (before is exclusive).
    oldest = min(item["start_date"] for item in strava.emulator.activities_of(athlete_id))
    second = int(datetime.fromisoformat(oldest.replace("Z", "+00:00")).timestamp()) - 86400
    tied = {strava.emulator.create_activity(athlete_id, start_date=second)["id"] for _ in range(3)}

    run_to_end(ctx, backfill_job(ctx, athlete_id), OPTIONS)

    assert tied <= set(activities(ctx.engine, athlete_id))
    assert len(activities(ctx.engine, athlete_id)) == 8


def test_new_rows_are_pending_or_none_by_the_policy_and_queued_by_tier(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    just_now = int(utcnow().timestamp()) - 60
    recent = strava.emulator.create_activity(athlete_id, start_date=just_now)["id"]
    sent = Sent()
    policy = HydrationPolicy(recent=timedelta(minutes=10), older="on_demand")
    options = SyncOptions(per_page=2, policy=policy)

    run_to_end(ctx, backfill_job(ctx, athlete_id), options, sent)

    stored = activities(ctx.engine, athlete_id)
    assert sent.hydrations == [(recent, "recent")]
    assert stored[recent].hydration_status == HydrationStatus.PENDING
    assert {row.hydration_status for i, row in stored.items() if i != recent} == {"none"}


def test_a_backfill_killed_mid_page_resumes_at_that_page_without_duplicates(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = backfill_job(ctx, athlete_id)
    real = sync.upsert_summaries
    calls = {"n": 0}

    def dies_on_second_page(*args: object, **kwargs: object) -> backfill.PageResult:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")  # not an Exception: nothing cleans up
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sync, "upsert_summaries", dies_on_second_page)
    with pytest.raises(KeyboardInterrupt):
        run_to_end(ctx, job_id, OPTIONS, owner="dead-worker")
    monkeypatch.setattr(sync, "upsert_summaries", real)
    assert job(ctx.engine, job_id).pages == 1
    assert job(ctx.engine, job_id).status == SyncStatus.RUNNING

    ctx.clock = FakeUtcClock(utcnow() + OPTIONS.lease + timedelta(seconds=1))
    taken = run_to_end(ctx, job_id, OPTIONS, owner="next-worker")

    assert taken == Finished(SyncStatus.COMPLETED)
    assert set(activities(ctx.engine, athlete_id)) == {
        item["id"] for item in strava.emulator.activities_of(athlete_id)
    }
    # The killed page was listed again, once; nothing else was.
    assert strava.emulator.calls[LIST] == job(ctx.engine, job_id).pages + 1


def test_a_backfill_denied_quota_waits_rate_limited_and_resumes_where_it_stopped(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int, quota_clock: FakeUtcClock
) -> None:
    job_id = backfill_job(ctx, athlete_id)
    options = SyncOptions(per_page=2, time_slice=timedelta(0))
    sync.run_job(ctx, job_id, owner="w", options=options, send_hydration=Sent())
    first = job(ctx.engine, job_id)
    exhaust_quota(ctx)

    waiting = run_to_end(ctx, job_id, OPTIONS)

    row = job(ctx.engine, job_id)
    assert isinstance(waiting, Wait)
    assert (row.status, row.retry_after, row.lease_owner) == ("rate_limited", waiting.at, None)
    assert row.cursor == first.cursor
    quota_clock.advance(timedelta(minutes=15))
    assert run_to_end(ctx, job_id, OPTIONS) == Finished(SyncStatus.COMPLETED)
    assert len(activities(ctx.engine, athlete_id)) == 5
    assert strava.emulator.calls[LIST] == job(ctx.engine, job_id).pages


def test_a_full_refresh_keeps_app_owned_columns_and_removes_only_what_strava_dropped(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    run_to_end(ctx, backfill_job(ctx, athlete_id), OPTIONS)
    kept, dropped = [item["id"] for item in strava.emulator.activities_of(athlete_id)[:2]]
    with Session(ctx.engine) as session:
        row = session.get_one(Activity, kept)
        row.raw_detail = {"app": "detail"}
        row.hydration_status = HydrationStatus.COMPLETE.value
        session.add(row)
        session.commit()
    before = activities(ctx.engine, athlete_id)
    strava.emulator.delete_activity(dropped)

    outcome = run_to_end(ctx, backfill_job(ctx, athlete_id, SyncKind.FULL_REFRESH), OPTIONS)

    assert outcome == Finished(SyncStatus.COMPLETED)
    after = activities(ctx.engine, athlete_id)
    assert set(after) == set(before) - {dropped}
    assert after[kept].raw_detail == {"app": "detail"}
    assert after[kept].hydration_status == HydrationStatus.COMPLETE
    assert all(after[i].created_at == before[i].created_at for i in after)
    assert all(after[i].updated_at == before[i].updated_at for i in after)


def test_concurrent_triggers_leave_one_active_job_per_athlete(
    ctx: IngestContext, athlete_id: int
) -> None:
    results: list[sync.Started] = []
    barrier = threading.Barrier(8)

    def trigger() -> None:
        barrier.wait()
        results.append(start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow()))

    threads = [threading.Thread(target=trigger) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 8
    assert sum(result.created for result in results) == 1
    assert len({result.job.id for result in results}) == 1


def test_the_database_refuses_a_second_active_job(ctx: IngestContext, athlete_id: int) -> None:
    backfill_job(ctx, athlete_id)

    with pytest.raises(sa.exc.IntegrityError), ctx.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO sync_jobs (athlete_id, kind, status, cursor, cancel_requested, "
                "pages, listed, new, updated, deleted, hydrations_queued, failed, "
                "created_at, updated_at) "
                "VALUES (:a, 'reconcile', 'running', '{}', false, "
                "0, 0, 0, 0, 0, 0, 0, now(), now())"
            ),
            {"a": athlete_id},
        )


def test_a_job_whose_lease_expired_is_taken_over_by_the_next_sweep(
    ctx: IngestContext, athlete_id: int
) -> None:
    job_id = backfill_job(ctx, athlete_id)
    assert sync.claim(ctx.engine, job_id, "dead-worker", utcnow(), OPTIONS.lease)
    sent: list[int] = []

    assert sweep(ctx.engine, utcnow(), sent.append) == 0
    sweep(ctx.engine, utcnow() + OPTIONS.lease + timedelta(seconds=1), sent.append)
    assert sent == [job_id]
    assert run_to_end(ctx, job_id, OPTIONS, owner="live-worker") == NotClaimed()
    ctx.clock = FakeUtcClock(utcnow() + OPTIONS.lease + timedelta(seconds=1))
    outcome = run_to_end(ctx, job_id, OPTIONS, owner="live-worker")

    assert outcome == Finished(SyncStatus.COMPLETED)


def test_a_cancelled_job_stops_at_the_next_page_boundary_and_a_new_sync_resumes_it(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = backfill_job(ctx, athlete_id)
    options = SyncOptions(per_page=2, time_slice=timedelta(0))
    sync.run_job(ctx, job_id, owner="w", options=options, send_hydration=Sent())
    stopped_at = job(ctx.engine, job_id).cursor
    sync.claim(ctx.engine, job_id, "w", utcnow(), OPTIONS.lease)

    cancel_job(ctx.engine, athlete_id, "operator", utcnow())
    outcome = run_to_end(ctx, job_id, OPTIONS, owner="w")

    assert outcome == Finished(SyncStatus.CANCELLED)
    assert job(ctx.engine, job_id).pages == 1
    resumed = backfill_job(ctx, athlete_id)
    assert job(ctx.engine, resumed).cursor == stopped_at
    run_to_end(ctx, resumed, OPTIONS)
    assert len(activities(ctx.engine, athlete_id)) == 5
    assert strava.emulator.calls[LIST] == 1 + job(ctx.engine, resumed).pages


def test_deauthorization_cancels_active_jobs_at_once(ctx: IngestContext, athlete_id: int) -> None:
    job_id = backfill_job(ctx, athlete_id)
    sync.claim(ctx.engine, job_id, "w", utcnow(), OPTIONS.lease)

    cancelled = cancel_active_jobs(ctx.engine, athlete_id, "deauthorized")

    assert cancelled == 1
    assert job(ctx.engine, job_id).status == SyncStatus.CANCELLED
    assert run_to_end(ctx, job_id, OPTIONS, owner="w") == NotClaimed()


def test_a_backfill_lists_while_its_hydrations_have_filled_the_backfill_tiers_share(
    ctx: IngestContext,
    strava: FakeStrava,
    athlete_id: int,
    make_settings: Callable[..., Settings],
    quota_clock: FakeUtcClock,
) -> None:
    # An operator's hard cap (QUOTA_SHARES): backfill hydrations fill at most 70 % of a window.
    shares = {**default("quota_shares"), "backfill": (0.7, 1.0), "reconcile": (0.7, 1.0)}
    quota = build_scheduler(
        make_settings(quota_shares=shares), clock=lambda: quota_clock().timestamp()
    )
    client = StravaClient(
        api_url=strava.server.api_url,
        oauth_url=strava.server.oauth_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        hooks=QuotaHooks(quota),
    )
    capped = replace(ctx, strava=client, quota=quota)
    while True:  # the hydrations take the backfill's 66 of this window's 95
        try:
            quota.reserve(Tier.BACKFILL, "read")
        except QuotaExceeded:
            break
    job_id = backfill_job(capped, athlete_id)

    outcome = run_to_end(capped, job_id, OPTIONS)

    assert outcome == Finished(SyncStatus.COMPLETED)
    assert len(activities(capped.engine, athlete_id)) == 5
    client.close()


def read_usage(short: int) -> RateLimitSnapshot:
    return RateLimitSnapshot(
        limit=WindowPair(200, 2000),
        usage=WindowPair(short, short),
        read_limit=WindowPair(100, 1000),
        read_usage=WindowPair(short, short),
    )


def test_a_short_page_holding_only_the_boundary_activity_does_not_end_the_backfill(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Strava may return fewer items than asked for before the end (docs/strava.md §4.1), as
    # if some were filtered out of a page after paging: hide the third newest everywhere,
    # so the second page (the overlap at the boundary, then it) shows the boundary alone.
    listing = strava.emulator.activities_of(athlete_id)
    hidden = listing[2]["id"]
    real = ctx.strava.list_activities

    def short_pages(*args: Any, **kwargs: Any) -> Result[Any]:
        result = real(*args, **kwargs)
        raws = [raw for raw in result.raw if raw["id"] != hidden]
        data = [summary for summary in result.data if summary.id != hidden]
        return replace(result, data=data, raw=raws, text=json.dumps(raws))

    monkeypatch.setattr(ctx.strava, "list_activities", short_pages)

    outcome = run_to_end(ctx, backfill_job(ctx, athlete_id), OPTIONS)

    assert outcome == Finished(SyncStatus.COMPLETED)
    assert set(activities(ctx.engine, athlete_id)) == {
        item["id"] for item in listing if item["id"] != hidden
    }


def test_a_listing_refused_for_lack_of_activity_read_makes_the_athlete_reconnect(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id, "read"))
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read_all", utcnow())

    outcome = run_to_end(ctx, backfill_job(ctx, athlete_id), OPTIONS)

    assert outcome == Finished(SyncStatus.FAILED)
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.status == AthleteStatus.NEEDS_REAUTH
    assert "activity:read_permission" in (athlete.status_reason or "")
