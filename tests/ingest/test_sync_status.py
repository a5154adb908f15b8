"""An athlete's sync state and its publication by the jobs and hydrations that change it,
against the emulator and PostgreSQL (the progress log in memory: its Redis twin is
tests/ingest/test_progress.py)."""

from __future__ import annotations

from datetime import datetime

from support import FakeStrava, exhaust_quota
from sync_support import job, run_to_end

from service.ingest.context import IngestContext
from service.ingest.hydrate import hydrate_stored
from service.ingest.progress import START
from service.ingest.sync import SyncOptions, Wait, cancel_job, run_job, start_job
from service.ingest.sync_status import (
    publish_hydration_state,
    publish_sync_state,
    read_sync_state,
)
from service.models import SyncKind, SyncStatus
from service.strava.quota import Tier, using_tier

OPTIONS = SyncOptions(per_page=2)


def published(ctx: IngestContext) -> list[dict[str, object]]:
    return [event.state for event in ctx.progress.read(START, timeout=0.1)]


def counters(state: dict[str, object], name: str) -> int:
    found = state["counters"]
    assert isinstance(found, dict)
    return int(found[name])


def backfill(ctx: IngestContext, athlete_id: int) -> int:
    started = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, ctx.clock())
    assert started.job.id is not None
    return started.job.id


def test_a_job_publishes_when_claimed_after_every_page_and_when_it_lets_go(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = backfill(ctx, athlete_id)

    run_to_end(ctx, job_id, OPTIONS)

    states = published(ctx)
    pages = job(ctx.engine, job_id).pages
    assert len(states) == 1 + pages + 1
    assert [s["phase"] for s in states[:-1]] == ["listing"] * (1 + pages)
    listed = [counters(s, "listed") for s in states]
    assert listed == sorted(listed)
    # Listed and queued for hydration, none hydrated yet: the phase after the listing.
    last = states[-1]
    assert last["phase"] == "hydrating"
    assert counters(last, "waiting") == counters(last, "hydrations_queued") == 5
    assert last["message"] == "hydrating: 0 hydrated, 5 waiting"
    assert isinstance(last["estimate"], dict)
    assert last["estimate"]["waiting"] == 5


def test_the_hydration_that_finishes_the_last_activity_publishes_done(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    run_to_end(ctx, backfill(ctx, athlete_id), OPTIONS)
    ids = [item["id"] for item in strava.emulator.activities_of(athlete_id)]

    for activity_id in ids:
        with using_tier(Tier.RECENT):
            hydrate_stored(ctx, activity_id)
        publish_hydration_state(ctx.engine, ctx.quota, ctx.progress, activity_id, ctx.clock)

    after = published(ctx)[-len(ids) :]
    assert [counters(s, "hydrated") for s in after] == [1, 2, 3, 4, 5]
    assert [s["phase"] for s in after] == ["hydrating"] * 4 + ["done"]
    assert after[-1]["estimate"] is None
    assert str(after[-1]["message"]).startswith("done: ")


def test_a_job_waiting_for_quota_says_until_when(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    job_id = backfill(ctx, athlete_id)
    exhaust_quota(ctx)

    outcome = run_job(ctx, job_id, owner="w", options=OPTIONS, send_hydration=lambda *_: None)

    assert isinstance(outcome, Wait)
    state = published(ctx)[-1]
    assert state["rate_limited"] is True
    resumes = datetime.fromisoformat(str(state["retry_after"]))
    assert resumes == job(ctx.engine, job_id).retry_after == outcome.at
    assert state["message"] == (f"waiting for Strava's rate limit, resuming at {resumes:%H:%M} UTC")


def test_a_cancelled_job_is_done_and_says_why(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfill(ctx, athlete_id)

    cancelled = cancel_job(ctx.engine, athlete_id, "cancelled by an operator", ctx.clock())

    assert cancelled is not None
    assert cancelled.status == SyncStatus.CANCELLED
    state = read_sync_state(ctx.engine, ctx.quota, athlete_id, ctx.clock())
    assert state.phase == "done"
    assert state.estimate is None
    assert state.message == "cancelled: cancelled by an operator"


def test_a_state_that_changed_nothing_is_not_published_again(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    backfill(ctx, athlete_id)

    first = publish_sync_state(ctx.engine, ctx.quota, ctx.progress, athlete_id, ctx.clock)
    again = publish_sync_state(ctx.engine, ctx.quota, ctx.progress, athlete_id, ctx.clock)

    assert first is not None
    assert again is None
    assert len(published(ctx)) == 1
