"""An athlete's sync state, as `GET /athletes/{id}/sync` answers it and every progress event
carries it, and its publication when it changes.

The state is the athlete's latest sync job with its phase:
- `listing` while the job is active (queued, running or waiting for quota);
- `hydrating` once the listing completed while activities of the athlete still wait for
  their hydration (which the job queued; the hydration workers do it later, at their tier);
- `done` when nothing waits any more, or the job was cancelled or failed.

Counters come from the job row (listed, new, ...) and from the athlete's activities
(hydrated, waiting and failed since the job began). `rate_limited` says whether the work is
waiting for Strava's quota, until `retry_after`; the estimate of when it finishes is
service/strava/quota/eta.py's, for the tier the hydrations run at.

Publishing computes the state and appends it to the progress log under a lock (an advisory
lock on PostgreSQL, the log's own in one process), so states are appended in the order
they were computed and counters never go backwards in the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.db import session_scope
from service.ingest.activities import STREAMS
from service.ingest.job_view import SyncJobView, job_view
from service.ingest.progress import ProgressLog
from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    HydrationStatus,
    SyncJob,
    SyncKind,
    SyncStatus,
)
from service.strava.quota import QuotaScheduler, Tier
from service.strava.quota.eta import finish_estimate

log = logging.getLogger(__name__)

Phase = Literal["listing", "hydrating", "done"]
Clock = Callable[[], datetime]
# Hydration statuses that end an activity's hydration without its detail.
_GAVE_UP = (HydrationStatus.FAILED.value, HydrationStatus.NOT_AVAILABLE.value)


class SyncCounters(BaseModel):
    """What the job has done so far."""

    pages: int = Field(description="List calls made.")
    listed: int = Field(description="Summaries Strava listed.")
    new: int = Field(description="Activities stored for the first time.")
    updated: int = Field(description="Stored activities whose summary changed.")
    deleted: int = Field(description="Stored activities Strava no longer lists, removed.")
    hydrations_queued: int = Field(description="Hydrations the listing queued.")
    hydrated: int = Field(description="Activities of the athlete hydrated since the job began.")
    waiting: int = Field(description="Activities of the athlete waiting for their hydration.")
    failed: int = Field(
        description="Hydrations given up since the job began (failed or not available), "
        "plus the job's own failed attempts."
    )


class SyncEstimate(BaseModel):
    """When the waiting hydrations should be done, at the budget their tier gets now."""

    tier: str = Field(description="The quota tier the estimate is for.")
    waiting: int = Field(description="Hydrations still to do.")
    done: int = Field(description="Hydrations done.")
    rate_per_hour: float = Field(description="Requests per hour the tier may spend.")
    finishes_at: datetime | None = Field(
        description="When the last one should be done (UTC); null when the tier gets no budget."
    )
    sentence: str = Field(description="The estimate in words.")


class SyncState(BaseModel):
    """An athlete's sync: the latest job, its phase, counters, the rate-limit state and the
    estimate. The progress stream sends this object on every change."""

    athlete_id: int = Field(description="The athlete.")
    job: SyncJobView | None = Field(description="The latest job; null when there has been none.")
    phase: Phase = Field(description="listing, hydrating or done.")
    counters: SyncCounters = Field(description="What the job has done so far.")
    rate_limited: bool = Field(description="Waiting for Strava's rate limit.")
    retry_after: datetime | None = Field(description="When work resumes, while rate limited (UTC).")
    message: str = Field(description="The state in words.")
    estimate: SyncEstimate | None = Field(
        description="When the waiting hydrations should be done; null when the phase is done."
    )
    at: datetime = Field(description="When this state was read (UTC).")


def sync_state(
    session: Session, quota: QuotaScheduler, athlete_id: int, now: datetime
) -> SyncState:
    """The athlete's sync state now, read in `session`."""
    job = session.exec(
        select(SyncJob)
        .where(SyncJob.athlete_id == athlete_id)
        .order_by(col(SyncJob.id).desc())
        .limit(1)
    ).first()
    since = job.created_at if job is not None else now
    waiting, waiting_due, soonest, hydrated, gave_up = _hydrations(session, athlete_id, since, now)
    counters = SyncCounters(
        pages=job.pages if job else 0,
        listed=job.listed if job else 0,
        new=job.new if job else 0,
        updated=job.updated if job else 0,
        deleted=job.deleted if job else 0,
        hydrations_queued=job.hydrations_queued if job else 0,
        hydrated=hydrated,
        waiting=waiting,
        failed=gave_up + (job.failed if job else 0),
    )
    phase = _phase(job, waiting)
    rate_limited, retry_after = False, None
    if job is not None and phase == "listing" and job.status == SyncStatus.RATE_LIMITED:
        rate_limited, retry_after = True, job.retry_after
    elif phase == "hydrating" and waiting_due == 0 and soonest is not None and soonest > now:
        # Every waiting hydration was refused quota or backs off: nothing runs before then.
        rate_limited, retry_after = True, soonest
    estimate = None
    if phase != "done":
        tier = Tier.RECENT if job is not None and job.kind == SyncKind.RECONCILE else Tier.BACKFILL
        found = finish_estimate(quota, tier, waiting, hydrated, now)
        estimate = SyncEstimate(
            tier=tier.value,
            waiting=found.waiting,
            done=found.done,
            rate_per_hour=found.rate_per_hour,
            finishes_at=found.finishes_at,
            sentence=found.sentence,
        )
    return SyncState(
        athlete_id=athlete_id,
        job=job_view(job) if job is not None else None,
        phase=phase,
        counters=counters,
        rate_limited=rate_limited,
        retry_after=retry_after,
        message=_message(job, phase, counters, retry_after if rate_limited else None),
        estimate=estimate,
        at=now,
    )


def read_sync_state(
    engine: Engine, quota: QuotaScheduler, athlete_id: int, now: datetime
) -> SyncState:
    with Session(engine) as session:
        return sync_state(session, quota, athlete_id, now)


def publish_sync_state(
    engine: Engine, quota: QuotaScheduler, progress: ProgressLog, athlete_id: int, clock: Clock
) -> str | None:
    """Compute the athlete's state and append it to the progress log; returns its event id
    (None: the state is the one this process appended last, and nothing is appended).
    Holding the lock while reading and appending keeps the stream's states in order, and
    their `at` too: a state read at `at` holds everything committed before it."""
    with progress.ordered(), session_scope(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"sync-progress:{athlete_id}"},
            )
        state = sync_state(session, quota, athlete_id, clock())
        # A hydration attempt that changed nothing (one refused quota again) is no change;
        # the time read and the estimate move on their own.
        if progress.repeats(athlete_id, state.model_dump_json(exclude={"at", "estimate"})):
            return None
        return progress.append(athlete_id, state.model_dump_json())


def announce_sync_state(
    engine: Engine, quota: QuotaScheduler, progress: ProgressLog, athlete_id: int, clock: Clock
) -> None:
    """`publish_sync_state` for those who changed the state on request (a start, a cancel):
    never raises, since the change itself is done and the watchers catch up at the next."""
    try:
        publish_sync_state(engine, quota, progress, athlete_id, clock)
    except Exception:
        log.exception("sync progress not published athlete_id=%s", athlete_id)


def publish_job_state(
    engine: Engine, quota: QuotaScheduler, progress: ProgressLog, job_id: int, clock: Clock
) -> None:
    """Publish the state of the athlete whose job this is. Never raises: progress is for
    watching, and a failure to publish must not fail the job."""
    try:
        with Session(engine) as session:
            job = session.get(SyncJob, job_id)
        if job is not None:
            publish_sync_state(engine, quota, progress, job.athlete_id, clock)
    except Exception:
        log.exception("sync progress not published job_id=%s", job_id)


def publish_hydration_state(
    engine: Engine, quota: QuotaScheduler, progress: ProgressLog, activity_id: int, clock: Clock
) -> None:
    """After an attempt to hydrate the activity: publish its athlete's state when the
    athlete's latest job is active or completed (its hydrations are what the phase after
    the listing counts). Never raises."""
    try:
        with Session(engine) as session:
            athlete_id = session.exec(
                select(Activity.athlete_id).where(Activity.id == activity_id)
            ).first()
            if athlete_id is None:
                return
            status = session.exec(
                select(SyncJob.status)
                .where(SyncJob.athlete_id == athlete_id)
                .order_by(col(SyncJob.id).desc())
                .limit(1)
            ).first()
        if status is None:
            return
        if status not in ACTIVE_SYNC_STATUSES and status != SyncStatus.COMPLETED:
            return
        publish_sync_state(engine, quota, progress, athlete_id, clock)
    except Exception:
        log.exception("sync progress not published activity_id=%s", activity_id)


def _hydrations(
    session: Session, athlete_id: int, since: datetime, now: datetime
) -> tuple[int, int, datetime | None, int, int]:
    """Waiting hydrations (all; not held back by a retry time), the soonest retry time
    ahead, and hydrations done and given up since `since`."""
    # `partial` waits for its streams, unless Strava said it has none for us (kept partial
    # for good, service/ingest/activities.py `mark_streams_not_available`).
    streams_refused = sa.and_(
        sa.func.coalesce(col(Activity.last_hydrate_error), "").like(f"{STREAMS}: %"),
        col(Activity.retry_after).is_(None),
    )
    waiting = sa.or_(
        col(Activity.hydration_status) == HydrationStatus.PENDING.value,
        sa.and_(
            col(Activity.hydration_status) == HydrationStatus.PARTIAL.value,
            sa.not_(streams_refused),
        ),
    )
    done = sa.and_(
        col(Activity.hydration_status) == HydrationStatus.COMPLETE.value,
        col(Activity.hydrated_at) >= since,
    )
    gave_up = sa.and_(
        col(Activity.hydration_status).in_(_GAVE_UP), col(Activity.updated_at) >= since
    )
    blocked = sa.and_(waiting, col(Activity.retry_after) > now)
    row = session.execute(
        sa.select(
            sa.func.count().filter(waiting),
            sa.func.count().filter(sa.and_(waiting, sa.not_(blocked))),
            sa.func.min(col(Activity.retry_after)).filter(blocked),
            sa.func.count().filter(done),
            sa.func.count().filter(gave_up),
        ).where(col(Activity.athlete_id) == athlete_id)
    ).one()
    return int(row[0]), int(row[1]), row[2], int(row[3]), int(row[4])


def _phase(job: SyncJob | None, waiting: int) -> Phase:
    if job is None:
        return "done"
    if job.status in ACTIVE_SYNC_STATUSES:
        return "listing"
    if job.status == SyncStatus.COMPLETED and waiting > 0:
        return "hydrating"
    return "done"


def _message(
    job: SyncJob | None, phase: Phase, counters: SyncCounters, resumes_at: datetime | None
) -> str:
    if resumes_at is not None:
        return f"waiting for Strava's rate limit, resuming at {resumes_at:%H:%M} UTC"
    if job is None:
        return "no sync yet"
    if phase == "listing":
        if job.cancel_requested:
            return "cancelling at the next page"
        return f"listing: {counters.listed:,} activities listed, {counters.new:,} new"
    if phase == "hydrating":
        return f"hydrating: {counters.hydrated:,} hydrated, {counters.waiting:,} waiting"
    if job.status == SyncStatus.COMPLETED:
        return f"done: {counters.listed:,} listed, {counters.hydrated:,} hydrated"
    return f"{job.status}: {job.last_error or 'no reason given'}"
