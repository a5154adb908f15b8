"""A backfill larger than a window's room, through the real actors (Redis broker, dramatiq
workers, PostgreSQL, the emulator with the same sped-up windows) and the release duty that
admits waiting hydrations: each is handed to a worker once, its request reserved before it
goes, and neither the scheduler nor Strava refuses one."""

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from launch import wait_until
from sqlmodel import Session, col, select
from support import CLIENT_ID, CLIENT_SECRET, FakeStrava, Workers

from service.clock import Clock
from service.emulator import Emulator, EmulatorConfig
from service.emulator.config import RateLimits
from service.emulator.ratelimits import RateLimiter, Usage
from service.emulator.server import EmulatorServer
from service.ingest.sync import start_job
from service.models import Activity, SyncKind, utcnow
from service.strava.quota import Tier

WINDOW = 5
ACTIVITIES = 20
# Backfill may fill floor(10 x 0.95) = 9 reads of a window: the hydrations need three.
PER_WINDOW = 9
LIMITS = RateLimits(overall_short=20, overall_daily=20 * 96, read_short=10, read_daily=10 * 96)
DEADLINE = 12 * WINDOW


class PeakLimiter(RateLimiter):
    """Strava's counting, remembering how many requests each short window counted."""

    def __init__(self, limits: RateLimits, clock: Clock, window_seconds: int) -> None:
        super().__init__(limits, clock, window_seconds)
        self.clock = clock
        self.window_seconds = window_seconds
        self.counted: Counter[int] = Counter()
        self.refused = 0
        self._seen = threading.Lock()

    def hit(self) -> tuple[bool, Usage]:
        allowed, usage = super().hit()
        with self._seen:
            self.counted[math.floor(self.clock() / self.window_seconds)] += 1
            self.refused += not allowed
        return allowed, usage


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
    emulator.limiter = PeakLimiter(LIMITS, emulator.clock, WINDOW)
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


def all_hydrated(workers: Workers) -> bool:
    rows = hydrations(workers)
    return len(rows) == ACTIVITIES and all(row.hydration_status == "complete" for row in rows)


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
    job_id = start_job(workers.ctx.engine, workers.athlete_id, SyncKind.BACKFILL, utcnow()).job.id
    assert job_id is not None
    workers.dispatcher.send_sync(job_id)


def test_a_backfill_beyond_the_windows_room_is_admitted_window_by_window_without_a_refusal(
    start_workers: Callable[..., Workers], strava: FakeStrava
) -> None:
    workers = start(start_workers, count=2, release=True)

    start_backfill(workers)

    wait_until(lambda: all_hydrated(workers), timeout=DEADLINE, what="every hydration")
    rows = hydrations(workers)
    status = workers.ctx.quota.status()
    assert status.denials.get(Tier.BACKFILL, 0) == 0
    assert status.throttled == 0
    assert all(row.hydrate_attempts == 0 and row.retry_after is None for row in rows)
    assert all(row.hydration_held_until is None for row in rows)
    # Each hydration went to Strava once, and Strava never had to refuse a request.
    assert strava.emulator.calls["GET /activities/{id}"] == ACTIVITIES
    limiter = strava.emulator.limiter
    assert isinstance(limiter, PeakLimiter)
    assert limiter.refused == 0
    assert max(limiter.counted.values()) <= LIMITS.read_short
    # Admitted as the room came, not all at once: the hydrations took at least three windows.
    per_window = Counter(
        math.floor(row.hydrated_at.timestamp() / WINDOW)
        for row in rows
        if row.hydrated_at is not None
    )
    assert max(per_window.values()) <= PER_WINDOW + 1
    assert len(per_window) >= math.ceil(ACTIVITIES / PER_WINDOW)
