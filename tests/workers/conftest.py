"""Real dramatiq workers in the test process, consuming a real Redis broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from support import FakeStrava, Workers

from service.config import Settings
from service.ingest.athletes import connect_athlete
from service.ingest.context import build_context
from service.ingest.retry import Backoff
from service.messaging import Dispatcher, build_broker
from service.models import utcnow
from service.strava.quota import Clock, build_scheduler
from service.strava.schemas import TokenResponse
from workers.actors import setup_workers


@pytest.fixture
def start_workers(
    engine: Engine,
    redis_url: str,
    strava: FakeStrava,
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., Workers]]:
    """Starts `count` workers with the given settings overrides, fast backoff, and the
    emulator's athlete connected; stops them after the test. A `quota_clock` drives the
    quota scheduler's windows instead of the wall clock."""
    started: list[tuple[list[dramatiq.Worker], dramatiq.Broker, Any]] = []

    def start(count: int = 1, quota_clock: Clock | None = None, **overrides: Any) -> Workers:
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
        started.append((running, broker, ctx))
        athlete_id = strava.emulator.athlete_ids[0]
        token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
        connect_athlete(engine, ctx.cipher, token, "read,activity:read_all", utcnow())
        return Workers(ctx, Dispatcher(broker), athlete_id)

    yield start
    for running, broker, ctx in started:
        for worker in running:
            worker.stop()
        broker.close()
        ctx.strava.close()
