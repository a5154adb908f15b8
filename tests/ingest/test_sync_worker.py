"""The sync actor on a real Redis broker with a dramatiq worker in this process: a job
denied quota waits `rate_limited` and resumes by itself once the window rolls."""

from collections.abc import Callable, Iterator

import dramatiq
import pytest
from launch import wait_until
from sqlalchemy.engine import Engine
from support import FakeStrava, exhaust_quota
from sync_support import activities, job

from service.config import Settings
from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext, build_context
from service.ingest.sync import SyncOptions, start_job
from service.messaging import Dispatcher, build_broker
from service.models import SyncKind, SyncStatus, utcnow
from service.strava.schemas import TokenResponse
from workers.actors import setup_workers

DEADLINE = 20.0
WINDOW_SECONDS = 2  # sped-up quota windows, so waiting for the next one takes seconds


@pytest.fixture
def worker_ctx(
    engine: Engine, redis_url: str, strava: FakeStrava, make_settings: Callable[..., Settings]
) -> Iterator[tuple[IngestContext, Dispatcher]]:
    settings = make_settings(
        broker_url=redis_url,
        quota_window_seconds=WINDOW_SECONDS,
        # A short day too: the quota keeps room for the rest of the day at the rate the day's
        # usage so far shows, and the exhausted window below makes that rate high until the
        # day ends.
        quota_day_seconds=4 * WINDOW_SECONDS,
        **strava.urls,
    )
    broker = build_broker(redis_url)
    ctx = build_context(settings, engine=engine)
    setup_workers(broker, ctx, sync_options=SyncOptions(per_page=2))
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    yield ctx, Dispatcher(broker)
    worker.stop()
    broker.close()
    ctx.strava.close()


def test_a_job_denied_quota_shows_rate_limited_and_resumes_by_itself(
    worker_ctx: tuple[IngestContext, Dispatcher], strava: FakeStrava
) -> None:
    ctx, dispatcher = worker_ctx
    athlete_id = strava.emulator.athlete_ids[0]
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read_all", utcnow())
    job_id = start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow()).job.id
    assert job_id is not None
    exhaust_quota(ctx)

    dispatcher.send_sync(job_id)

    waiting = wait_until(
        lambda: (row := job(ctx.engine, job_id)).status == SyncStatus.RATE_LIMITED and row,
        timeout=DEADLINE,
        what="the job to wait for quota",
    )
    assert waiting.retry_after is not None
    wait_until(
        lambda: job(ctx.engine, job_id).status == SyncStatus.COMPLETED,
        timeout=DEADLINE,
        what="the job to resume and complete",
    )
    assert len(activities(ctx.engine, athlete_id)) == 5
