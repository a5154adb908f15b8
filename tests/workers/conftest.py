"""Real dramatiq workers in the test process, consuming a real Redis broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from support import FakeStrava, Workers

from service.cli.run import DutyDeps, periodic_duties
from service.clock import Clock
from service.config import Settings
from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext, build_context
from service.ingest.retry import Backoff
from service.messaging import Dispatcher, build_broker
from service.models import utcnow
from service.periodic import run_duties
from service.strava.quota import build_scheduler
from service.strava.schemas import TokenResponse
from workers.actors import setup_workers

Stop = Callable[[], None]


def start_release(settings: Settings, ctx: IngestContext, dispatcher: Dispatcher) -> Stop:
    """The scheduler process's hydration release, in a thread: without it, hydrations a
    sync queues below the real-time tiers wait in their rows for ever."""
    deps = DutyDeps(settings, ctx.engine, dispatcher, ctx.strava, ctx.quota)
    duty = next(d for d in periodic_duties(deps) if d.name == "hydration-release")
    stop = threading.Event()
    thread = threading.Thread(target=run_duties, args=([duty], stop), daemon=True)
    thread.start()

    def stop_release() -> None:
        stop.set()
        thread.join(timeout=5)

    return stop_release


@pytest.fixture
def start_workers(
    engine: Engine,
    redis_url: str,
    strava: FakeStrava,
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., Workers]]:
    """Starts `count` workers with the given settings overrides, fast backoff, and the
    emulator's athlete connected; stops them after the test. A `quota_clock` drives the
    quota scheduler's windows instead of the wall clock; `release` also runs the duty that
    admits waiting hydrations, as the scheduler process does."""
    stops: list[Stop] = []

    def start(
        count: int = 1, quota_clock: Clock | None = None, release: bool = False, **overrides: Any
    ) -> Workers:
        settings = make_settings(broker_url=redis_url, **strava.urls, **overrides)
        broker = build_broker(redis_url)
        quota = build_scheduler(settings, clock=quota_clock) if quota_clock else None
        ctx = build_context(settings, engine=engine, quota=quota)
        setup_workers(
            broker,
            ctx,
            Backoff(base=timedelta(milliseconds=100), max_attempts=2, spread=timedelta(0)),
        )
        running = [
            dramatiq.Worker(broker, worker_threads=2, worker_timeout=50) for _ in range(count)
        ]
        for worker in running:
            worker.start()

        def stop_workers() -> None:
            for worker in running:
                worker.stop()
            broker.close()
            ctx.strava.close()

        stops.append(stop_workers)
        dispatcher = Dispatcher(broker)
        if release:
            stops.append(start_release(settings, ctx, dispatcher))
        athlete_id = strava.emulator.athlete_ids[0]
        token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
        connect_athlete(engine, ctx.cipher, token, "read,activity:read_all", utcnow())
        return Workers(ctx, dispatcher, athlete_id)

    yield start
    for stop in reversed(stops):
        stop()
