"""What the domain functions need from the outside world, passed in rather than imported."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.engine import Engine

from service.clock import UtcClock
from service.config import Settings, default
from service.db import create_db_engine
from service.ingest.crypto import TokenCipher
from service.ingest.progress import MemoryProgressLog, ProgressLog, build_progress_log
from service.metrics.events import EventMetrics
from service.models import utcnow
from service.strava.client import StravaClient
from service.strava.metered import metered_client
from service.strava.quota import QuotaScheduler, build_scheduler


@dataclass
class IngestContext:
    """Dependencies of the ingest domain, shared by the workers and the CLI.

    Parameters:
      engine: the database.
      strava: the (synchronous) Strava client; its calls pass through `quota`.
      quota: the app-wide quota scheduler.
      cipher: encrypts and decrypts tokens at rest.
      refresh_margin: refresh an access token that expires sooner than this.
      clock: the current time; injected so tests can move it.
      refresh_locks: one lock per athlete, making token refresh single-flight here.
      coalesce_window: webhook events for one activity within this window share one fetch.
      retry_max_attempts: attempts in all before an event or a hydration is `failed`.
      webhook_fetches_per_window: per athlete and quota window, webhook-priority calls its
        events cause; the rest wait at the `recent` tier (budget.py).
      forged_creates_to_flag: creates Strava answers 404 for before the athlete is flagged.
      progress: where sync progress is published for the web processes to stream.
    """

    engine: Engine
    strava: StravaClient
    quota: QuotaScheduler
    cipher: TokenCipher
    refresh_margin: timedelta = timedelta(seconds=default("token_refresh_margin_seconds"))
    clock: UtcClock = field(default=utcnow)
    # Single-flight refresh within this process; the row lock covers other processes.
    refresh_locks: dict[int, threading.Lock] = field(default_factory=dict)
    coalesce_window: timedelta = timedelta(seconds=default("event_coalesce_seconds"))
    retry_max_attempts: int = default("retry_max_attempts")
    webhook_fetches_per_window: int = default("webhook_fetches_per_athlete_per_window")
    forged_creates_to_flag: int = default("forged_creates_to_flag")
    progress: ProgressLog = field(default_factory=MemoryProgressLog)

    def close(self) -> None:
        self.strava.close()
        self.quota.close()
        self.progress.close()
        self.engine.dispose()


def build_context(
    settings: Settings,
    engine: Engine | None = None,
    quota: QuotaScheduler | None = None,
    progress: ProgressLog | None = None,
    metrics: EventMetrics | None = None,
) -> IngestContext:
    """The context for these settings; with ``metrics``, Strava calls are timed into it."""
    quota = quota or build_scheduler(settings)
    return IngestContext(
        engine=engine or create_db_engine(settings.database_url),
        quota=quota,
        strava=metered_client(settings, quota, metrics),
        cipher=TokenCipher(settings.token_key.get_secret_value()),
        refresh_margin=timedelta(seconds=settings.token_refresh_margin_seconds),
        coalesce_window=timedelta(seconds=settings.event_coalesce_seconds),
        retry_max_attempts=settings.retry_max_attempts,
        webhook_fetches_per_window=settings.webhook_fetches_per_athlete_per_window,
        forged_creates_to_flag=settings.forged_creates_to_flag,
        progress=progress or build_progress_log(settings),
    )
