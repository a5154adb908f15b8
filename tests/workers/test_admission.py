"""A backfill larger than a window's room, through the real actors (Redis broker, a dramatiq
worker, PostgreSQL, the emulator with the same sped-up windows): each hydration is handed to
a worker once, in the window its ticket names, and is not refused."""

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from launch import wait_until
from sqlmodel import Session, col, select
from support import CLIENT_ID, CLIENT_SECRET, FakeStrava, Workers

from service.emulator import Emulator, EmulatorConfig
from service.emulator.config import RateLimits
from service.emulator.server import EmulatorServer
from service.ingest.held import release
from service.ingest.policy import HydrationPolicy
from service.ingest.sync import start_job
from service.models import Activity, SyncKind, utcnow
from service.periodic import Duty, run_duties

WINDOW = 5
ACTIVITIES = 20
# Backfill may fill floor(10 x 0.95) = 9 reads of a window, and with no real-time demand
# forecast expects that many of every window after this one (its day, floor(960 x 0.95) = 912,
# spread over 96 windows is 9.5: scheduler.WindowPlan.capacity): the hydrations need three.
PER_WINDOW = 9
LIMITS = RateLimits(overall_short=20, overall_daily=20 * 96, read_short=10, read_daily=10 * 96)
DEADLINE = 12 * WINDOW


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    """An emulator whose windows and limits are the workers' own, so that the usage it
    reports agrees with the scheduler's windows."""
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=ACTIVITIES,
            window_seconds=WINDOW,
            limits=LIMITS,
            # Older than the recent window (12 weeks): every one is hydrated at backfill
            # priority, the detail only (service/ingest/policy.py).
            data_end=int(time.time()) - 200 * 86400,
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


def hydrations(workers: Workers) -> list[Activity]:
    with Session(workers.ctx.engine) as session:
        return list(
            session.exec(
                select(Activity).where(col(Activity.athlete_id) == workers.athlete_id)
            ).all()
        )


def start(start_workers: Callable[..., Workers], **overrides: Any) -> Workers:
    return start_workers(
        quota_window_seconds=WINDOW,
        quota_day_seconds=96 * WINDOW,
        quota_limit_short=LIMITS.overall_short,
        quota_limit_daily=LIMITS.overall_daily,
        quota_read_limit_short=LIMITS.read_short,
        quota_read_limit_daily=LIMITS.read_daily,
        **overrides,
    )


def start_backfill(workers: Workers) -> None:
    # Start at the beginning of a window, so that the first tickets (for now) cannot spill
    # into the next window's room.
    wait_until(
        lambda: utcnow().timestamp() % WINDOW < 0.2,
        timeout=2 * WINDOW,
        what="the start of a quota window",
        interval=0.01,
    )
    job_id = start_job(workers.ctx.engine, workers.athlete_id, SyncKind.BACKFILL, utcnow()).job.id
    assert job_id is not None
    workers.dispatcher.send_sync(job_id)


def assert_delivered_in_windows_without_a_refusal(workers: Workers, strava: FakeStrava) -> None:
    wait_until(
        lambda: (
            (rows := hydrations(workers))
            and len(rows) == ACTIVITIES
            and all(row.hydration_status == "complete" for row in rows)
        ),
        timeout=DEADLINE,
        what="every hydration to complete",
    )

    rows = hydrations(workers)
    # Only a list call of the backfill (a tier above its hydrations, taking its place after
    # some were placed) may take a place promised to a hydration: one refusal at most for
    # each, never one per window per unit.
    refused = sum(workers.ctx.quota.status().denials.values())
    assert refused <= strava.emulator.calls["GET /athlete/activities"]
    assert all(row.hydrate_attempts == 0 and row.retry_after is None for row in rows)
    assert strava.emulator.calls["GET /activities/{id}"] == ACTIVITIES
    # Queued, not sent at once: no window held more than the backfill's nine, give or take the
    # one a loaded machine may store just after the window its call was made in ended.
    per_window = Counter(
        int(row.hydrated_at.timestamp() // WINDOW) for row in rows if row.hydrated_at is not None
    )
    assert max(per_window.values()) <= PER_WINDOW + 1
    assert len(per_window) >= 3


def test_a_backfill_beyond_the_windows_room_is_delivered_in_its_windows_without_a_refusal(
    start_workers: Callable[..., Workers], strava: FakeStrava
) -> None:
    workers = start(start_workers)

    start_backfill(workers)

    assert_delivered_in_windows_without_a_refusal(workers, strava)


def test_places_beyond_the_horizon_wait_in_their_rows_until_the_release_duty_sends_them(
    start_workers: Callable[..., Workers], strava: FakeStrava
) -> None:
    horizon = timedelta(seconds=1.5 * WINDOW)
    workers = start(start_workers, admission_horizon_seconds=horizon.total_seconds())
    policy = HydrationPolicy()
    duty = Duty(
        "hydration-release",
        0.2,
        lambda: release(
            workers.ctx.engine, policy, utcnow(), horizon, workers.dispatcher.send_hydration
        ),
    )
    stop = threading.Event()
    duties = threading.Thread(target=run_duties, args=([duty], stop), daemon=True)

    start_backfill(workers)
    # Twenty places at nine a window (fewer in the first, where the list call went) reach two
    # windows ahead, beyond the horizon of one and a half: the last ones are held.
    wait_until(
        lambda: any(row.hydration_held_until is not None for row in hydrations(workers)),
        timeout=DEADLINE,
        what="a hydration held in its row",
    )
    duties.start()
    try:
        assert_delivered_in_windows_without_a_refusal(workers, strava)
    finally:
        stop.set()
        duties.join(timeout=5)
    assert all(row.hydration_held_until is None for row in hydrations(workers))
