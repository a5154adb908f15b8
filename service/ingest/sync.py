"""Sync jobs: one listing pass over an athlete's activities, resumable, leased, cancellable.

A job is a row in `sync_jobs` (kind backfill | reconcile | full_refresh). A partial unique
index lets an athlete have one active job (queued, running or rate_limited) at most, so
concurrent triggers collapse onto one job. A worker *claims* a job by taking its lease and
renews the lease with every page it commits; a job whose worker died keeps an expired lease
that the next sweep hands to another worker, so no "reset stuck syncs" step is ever needed.
Cancelling sets a flag the runner reads before each page, so a job stops at a page boundary.

Each page's summaries, the counters and the cursor are committed in one transaction
(service/ingest/backfill.py), guarded by the lease: a crash, a cancel or a rate limit resumes
exactly where it stopped. A job denied quota is `rate_limited` with `retry_after`; the actor
sends itself again for then (no sleeps, no dramatiq retries).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.config import Settings, default
from service.db import session_scope
from service.ingest import job_log
from service.ingest.activities import remove_activities
from service.ingest.backfill import Cursor, advance, listed, missing_in, upsert_summaries
from service.ingest.context import IngestContext
from service.ingest.policy import HydrationPolicy
from service.ingest.retention import RetentionPolicy, within_retention
from service.ingest.retry import Backoff, GiveUp, RetryLater, WaitForQuota, next_step
from service.ingest.sync_status import publish_job_state
from service.ingest.tokens import (
    AthleteNotConnected,
    access_token_for,
    mark_if_activity_read_missing,
)
from service.log_ids import add_log_ids, log_ids
from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    OAuthState,
    SyncJob,
    SyncKind,
    SyncStatus,
)
from service.strava.errors import StravaError
from service.strava.quota import Tier, using_tier

log = logging.getLogger(__name__)

ACTIVE = tuple(status.value for status in ACTIVE_SYNC_STATUSES)
# The quota tier of a job's list calls. A backfill's list calls run one tier above its own
# hydrations: otherwise hundreds of older activities waiting at backfill priority fill the
# tier's share of every window and the listing crawls (a benchmark saw 1,000 activities take
# 2-12 windows to list). Listing is cheap and bounded, ceil(N/200)+1 calls (docs/strava.md
# §4.1), and every call of it brings 200 summaries, recent ones included, into view.
# Reconciliation keeps its own tier: its daily budget is that tier's share.
LIST_TIERS = {
    SyncKind.BACKFILL: Tier.RECENT,
    SyncKind.FULL_REFRESH: Tier.RECENT,
    SyncKind.RECONCILE: Tier.RECONCILE,
}

SendHydration = Callable[[int, str], object]
# A page's hydrations at once (activity id, tier), so they are admitted together.
SendHydrations = Callable[[list[tuple[int, str]]], object]


class LeaseLost(Exception):
    """Another worker took the job over, or it was cancelled under us: stop, commit nothing."""


@dataclass(frozen=True)
class SyncOptions:
    """How jobs run.

    Parameters:
      per_page: summaries per list call (Strava's maximum is 200, docs/strava.md §4.1).
      lease: how long a claim lasts without renewal; every committed page renews it.
      policy: which new rows are hydrated, at which tier.
      reconcile_overlap: a reconciliation lists after (newest known start - this).
      time_slice: one message works at most this long, then sends the job on again, so a
        long import never holds a worker past dramatiq's time limit.
      backoff: for transient failures of the job's list calls.
      keep_activities: activity retention (ACTIVITY_RETENTION_DAYS): no listing goes below
        `now - this`, so what retention removes is never listed back (retention.py).
    """

    per_page: int = default("sync_page_size")
    lease: timedelta = timedelta(seconds=default("sync_lease_seconds"))
    policy: HydrationPolicy = field(default_factory=HydrationPolicy)
    reconcile_overlap: timedelta = timedelta(days=default("reconcile_overlap_days"))
    time_slice: timedelta = timedelta(seconds=60)
    backoff: Backoff = field(default_factory=Backoff)
    keep_activities: timedelta | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncOptions:
        return cls(
            per_page=settings.sync_page_size,
            lease=timedelta(seconds=settings.sync_lease_seconds),
            policy=HydrationPolicy.from_settings(settings),
            reconcile_overlap=timedelta(days=settings.reconcile_overlap_days),
            keep_activities=RetentionPolicy.from_settings(settings).activities,
        )


# -- creating, reading, cancelling ------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The athlete's active job, and whether this call created it (False: one was active)."""

    job: SyncJob
    created: bool


def start_job(
    engine: Engine,
    athlete_id: int,
    kind: SyncKind,
    now: datetime,
    *,
    cursor: Cursor | None = None,
) -> Started:
    """Create a queued job, or return the athlete's active one. A backfill or full refresh
    that was cancelled or failed midway is continued from its cursor, not from zero."""
    if cursor is None:
        cursor = _unfinished_cursor(engine, athlete_id, kind) or Cursor()
    job = SyncJob(
        athlete_id=athlete_id,
        kind=kind.value,
        cursor=cursor.to_json(),
        created_at=now,
        updated_at=now,
    )
    try:
        with session_scope(engine) as session:
            session.add(job)
    except IntegrityError:
        # The partial unique index: another trigger won the race (or a job is running).
        active = active_job(engine, athlete_id)
        if active is None:  # it finished in between; a retry will create ours
            return start_job(engine, athlete_id, kind, now, cursor=cursor)
        return Started(active, created=False)
    log.info("sync job created job_id=%s athlete_id=%s kind=%s", job.id, athlete_id, kind.value)
    job_log.job_started(engine, job, now)
    return Started(job, created=True)


def _unfinished_cursor(engine: Engine, athlete_id: int, kind: SyncKind) -> Cursor | None:
    if kind is SyncKind.RECONCILE:
        return None
    with Session(engine) as session:
        last = session.exec(
            select(SyncJob)
            .where(SyncJob.athlete_id == athlete_id, SyncJob.kind == kind.value)
            .order_by(col(SyncJob.id).desc())
            .limit(1)
        ).first()
    if last is None or last.status not in (SyncStatus.CANCELLED, SyncStatus.FAILED):
        return None
    cursor = Cursor.from_json(last.cursor)
    return None if cursor.done else cursor


def active_job(engine: Engine, athlete_id: int) -> SyncJob | None:
    with Session(engine) as session:
        return session.exec(
            select(SyncJob).where(SyncJob.athlete_id == athlete_id, col(SyncJob.status).in_(ACTIVE))
        ).first()


def latest_job(engine: Engine, athlete_id: int) -> SyncJob | None:
    with Session(engine) as session:
        return session.exec(
            select(SyncJob)
            .where(SyncJob.athlete_id == athlete_id)
            .order_by(col(SyncJob.id).desc())
            .limit(1)
        ).first()


def get_job(engine: Engine, job_id: int) -> SyncJob | None:
    with Session(engine) as session:
        return session.get(SyncJob, job_id)


def cancel_job(engine: Engine, athlete_id: int, reason: str, now: datetime) -> SyncJob | None:
    """Cancel the athlete's active job. A job a worker holds stops at its next page
    boundary (the worker sees the flag); one nobody holds is cancelled at once."""
    with session_scope(engine) as session:
        job = session.exec(
            select(SyncJob)
            .where(SyncJob.athlete_id == athlete_id, col(SyncJob.status).in_(ACTIVE))
            .with_for_update()
        ).first()
        if job is None:
            return None
        held = job.lease_owner is not None and (job.lease_expires_at or now) > now
        values: dict[str, Any] = {"cancel_requested": True, "last_error": reason, "updated_at": now}
        if not held:
            values = _released(SyncStatus.CANCELLED, now, **values)
        for name, value in values.items():
            setattr(job, name, value)
        session.add(job)
    log.info("sync job cancel job_id=%s athlete_id=%s held=%s", job.id, athlete_id, held)
    if held:
        job_log.cancel_requested(engine, job, reason, now)
    else:
        job_log.cancelled(engine, job, now)
    return job


def cancel_active_jobs(
    session_or_engine: Session | Engine, athlete_id: int, reason: str, now: datetime | None = None
) -> int:
    """Cancel every active job of the athlete at once, e.g. at deauthorization, when there
    is nothing left to sync with. A worker still holding one loses it at its next page
    commit (the lease guard sees the status) and commits nothing more. Returns the count."""
    now = now or datetime.now(UTC)
    statement = (
        sa.update(SyncJob)
        .where(col(SyncJob.athlete_id) == athlete_id, col(SyncJob.status).in_(ACTIVE))
        .values(_released(SyncStatus.CANCELLED, now, cancel_requested=True, last_error=reason))
    )
    if isinstance(session_or_engine, Session):
        result = session_or_engine.execute(statement)
    else:
        with session_scope(session_or_engine) as session:
            result = session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


def _released(status: SyncStatus, now: datetime, **columns: Any) -> dict[str, Any]:
    """The column values of a job that its holder lets go of, to wait or to end: the lease
    released, no retry time unless `columns` give one, and the finish time once the status
    is final. Every path that pauses, cancels, completes or fails a job writes these."""
    values: dict[str, Any] = {
        "status": status.value,
        "lease_owner": None,
        "lease_expires_at": None,
        "retry_after": None,
        "updated_at": now,
    }
    if status not in ACTIVE_SYNC_STATUSES:
        values["finished_at"] = now
    return values | columns


def _release(
    session: Session, job_id: int, owner: str, status: SyncStatus, now: datetime, **columns: Any
) -> None:
    """Let go of a job this worker holds; LeaseLost (rolling back the transaction) when it
    no longer does."""
    updated = session.execute(_guarded(job_id, owner).values(_released(status, now, **columns)))
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(job_id)


# -- leases ------------------------------------------------------------------------------------


def claim(engine: Engine, job_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the job's lease if nobody holds a live one. Atomic: of two workers handed the
    same job, one wins."""
    with session_scope(engine) as session:
        result = session.execute(
            sa.update(SyncJob)
            .where(col(SyncJob.id) == job_id, col(SyncJob.status).in_(ACTIVE))
            .where(
                sa.or_(
                    col(SyncJob.lease_owner).is_(None),
                    col(SyncJob.lease_expires_at) < now,
                    col(SyncJob.lease_owner) == owner,
                )
            )
            .values(
                status=SyncStatus.RUNNING.value,
                lease_owner=owner,
                lease_expires_at=now + lease,
                started_at=sa.func.coalesce(col(SyncJob.started_at), now),
                retry_after=None,
                updated_at=now,
            )
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def sweep(engine: Engine, now: datetime, send: Callable[[int], object]) -> int:
    """Hand jobs that nobody works on to a worker again: running ones whose lease expired
    (their worker died), and waiting ones whose message may be lost (due for a lease
    period). A duplicate message is harmless: only one claim wins. Also drops spent OAuth
    states past their expiry. Returns how many jobs were sent."""
    grace = timedelta(seconds=60)
    with Session(engine) as session:
        expired = session.exec(
            select(SyncJob.id).where(
                SyncJob.status == SyncStatus.RUNNING.value,
                col(SyncJob.lease_expires_at) < now,
            )
        ).all()
        waiting = session.exec(
            select(SyncJob.id).where(
                col(SyncJob.status).in_((SyncStatus.QUEUED.value, SyncStatus.RATE_LIMITED.value)),
                col(SyncJob.updated_at) < now - grace,
                sa.or_(col(SyncJob.retry_after).is_(None), col(SyncJob.retry_after) < now - grace),
            )
        ).all()
    for job_id in [*expired, *waiting]:
        if job_id is not None:
            send(job_id)
    with session_scope(engine) as session:
        session.execute(sa.delete(OAuthState).where(col(OAuthState.expires_at) < now))
    if expired:
        log.warning("sync jobs with expired leases taken over job_ids=%s", list(expired))
    return len(expired) + len(waiting)


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    status: SyncStatus


@dataclass(frozen=True)
class Wait:
    """Send the job again at `at` (quota, or a backoff after a transient failure)."""

    at: datetime


@dataclass(frozen=True)
class Continue:
    """The time slice ended with work left: send the job again now."""


@dataclass(frozen=True)
class NotClaimed:
    """Someone else holds the job, or it is no longer active: drop the message."""


Outcome = Finished | Wait | Continue | NotClaimed


def run_job(
    ctx: IngestContext,
    job_id: int,
    *,
    owner: str,
    options: SyncOptions,
    send_hydration: SendHydration,
    rng: random.Random | None = None,
    send_hydrations: SendHydrations | None = None,
) -> Outcome:
    """Work on the job for up to a time slice: claim it, then list and store page after
    page until it ends, waits for quota, is cancelled, or the slice is over. Its progress
    is published when it is claimed, after every page and when it lets go.

    With `send_hydrations`, a page's hydrations are handed over in one call instead of one
    `send_hydration` each."""
    with log_ids(job_id=job_id):
        now = ctx.clock()
        if not claim(ctx.engine, job_id, owner, now, options.lease):
            return NotClaimed()
        _publish(ctx, job_id)
        try:
            hand_over = _HandOver(send_hydration, send_hydrations)
            return _work(ctx, job_id, now, owner, options, hand_over, rng)
        finally:
            _publish(ctx, job_id)


@dataclass(frozen=True)
class _HandOver:
    """How a job hands its work on: hydrations one by one or a page at once."""

    send_hydration: SendHydration
    send_hydrations: SendHydrations | None


def _publish(ctx: IngestContext, job_id: int) -> None:
    publish_job_state(ctx.engine, ctx.quota, ctx.progress, job_id, ctx.clock)


def _work(
    ctx: IngestContext,
    job_id: int,
    now: datetime,
    owner: str,
    options: SyncOptions,
    hand_over: _HandOver,
    rng: random.Random | None,
) -> Outcome:
    slice_end = now + options.time_slice
    try:
        while True:
            job = _held(ctx.engine, job_id, owner)
            if job.cancel_requested:
                with session_scope(ctx.engine) as session:
                    _release(session, job_id, owner, SyncStatus.CANCELLED, ctx.clock())
                log.info("sync job cancelled job_id=%s", job_id)
                job_log.cancelled(ctx.engine, job, ctx.clock())
                return Finished(SyncStatus.CANCELLED)
            cursor = Cursor.from_json(job.cursor)
            if cursor.done:
                return _complete(ctx, job, owner)
            cursor = within_retention(cursor, options.keep_activities, ctx.clock())
            _list_and_store(
                ctx,
                job,
                cursor,
                owner,
                options,
                hand_over.send_hydration,
                hand_over.send_hydrations,
            )
            _publish(ctx, job_id)
            if ctx.clock() >= slice_end:  # at least one page per message
                with session_scope(ctx.engine) as session:
                    _release(session, job_id, owner, SyncStatus.QUEUED, ctx.clock())
                return Continue()
    except LeaseLost:
        log.info("sync job lost its lease job_id=%s owner=%s", job_id, owner)
        return NotClaimed()
    except Exception as error:
        return _defer(ctx, job_id, owner, error, options, rng or random.Random())


def _held(engine: Engine, job_id: int, owner: str) -> SyncJob:
    job = get_job(engine, job_id)
    if job is None or job.status != SyncStatus.RUNNING or job.lease_owner != owner:
        raise LeaseLost(job_id)
    add_log_ids(athlete_id=job.athlete_id)
    return job


def _list_and_store(
    ctx: IngestContext,
    job: SyncJob,
    cursor: Cursor,
    owner: str,
    options: SyncOptions,
    send_hydration: SendHydration,
    send_hydrations: SendHydrations | None = None,
) -> None:
    assert job.id is not None
    kind = SyncKind(job.kind)
    token = access_token_for(ctx, job.athlete_id)
    with using_tier(LIST_TIERS[kind]):
        result = ctx.strava.list_activities(
            token,
            before=cursor.before,
            after=cursor.after,
            page=cursor.page,
            per_page=options.per_page,
        )
    summaries = result.data
    step = advance(cursor, listed(summaries))
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        raws = result.raw or []
        page = upsert_summaries(
            session, summaries, raws, options.policy, now, raw_text=result.text or None
        )
        gone = cursor.gone
        if kind is not SyncKind.BACKFILL and step.covered is not None:
            missing = missing_in(session, job.athlete_id, step.covered, job.created_at)
            gone = tuple(dict.fromkeys([*gone, *missing]))
        updated = session.execute(
            _guarded(job.id, owner).values(
                cursor=replace(step.cursor, gone=gone).to_json(),
                pages=col(SyncJob.pages) + 1,
                listed=col(SyncJob.listed) + len(summaries),
                new=col(SyncJob.new) + len(page.new),
                updated=col(SyncJob.updated) + len(page.updated),
                hydrations_queued=col(SyncJob.hydrations_queued) + len(page.to_hydrate),
                lease_expires_at=now + options.lease,
                last_error=None,
                updated_at=now,
            )
        )
        if updated.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(job.id)  # rolls the page back with it
    # After the commit: a hydration must never run for a row that is not stored yet.
    if send_hydrations is not None:
        send_hydrations([(activity_id, tier.value) for activity_id, tier in page.to_hydrate])
    else:
        for activity_id, tier in page.to_hydrate:
            send_hydration(activity_id, tier.value)
    job_log.page_stored(
        ctx.engine,
        job,
        items=len(summaries),
        new=len(page.new),
        updated=len(page.updated),
        hydrations_queued=len(page.to_hydrate),
        gone=len(gone) - len(cursor.gone),
        now=now,
    )
    log.info(
        "sync page stored job_id=%s athlete_id=%s listed=%s new=%s updated=%s",
        job.id,
        job.athlete_id,
        len(summaries),
        len(page.new),
        len(page.updated),
    )


def _guarded(job_id: int, owner: str) -> Any:
    return sa.update(SyncJob).where(
        col(SyncJob.id) == job_id,
        col(SyncJob.lease_owner) == owner,
        col(SyncJob.status) == SyncStatus.RUNNING.value,
    )


def _complete(ctx: IngestContext, job: SyncJob, owner: str) -> Outcome:
    """End of the listing: remove what Strava no longer lists, unless that is everything
    stored in the covered window (a safety abort: an empty listing is far likelier to be a
    fault, e.g. a scope lost, than an athlete who deleted every activity)."""
    assert job.id is not None
    cursor = Cursor.from_json(job.cursor)
    now = ctx.clock()
    status, error, deleted = SyncStatus.COMPLETED, None, 0
    with session_scope(ctx.engine) as session:
        if cursor.gone:
            stored = _stored_in_window(session, job, cursor)
            if len(cursor.gone) >= stored:
                status = SyncStatus.FAILED
                error = (
                    f"safety abort: the listing would remove all {stored} stored activities "
                    "in its window; nothing was removed"
                )
            else:
                # No tombstone: a listing has no event time to order later events against.
                deleted = remove_activities(session, job.athlete_id, cursor.gone, now)
        deleted_total = col(SyncJob.deleted) + deleted
        _release(session, job.id, owner, status, now, deleted=deleted_total, last_error=error)
    job_log.ended(ctx.engine, job.id, now)
    if error:
        log.error("sync job aborted job_id=%s athlete_id=%s %s", job.id, job.athlete_id, error)
    else:
        log.info(
            "sync job completed job_id=%s athlete_id=%s deleted=%s", job.id, job.athlete_id, deleted
        )
    return Finished(status)


def _stored_in_window(session: Session, job: SyncJob, cursor: Cursor) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(Activity)
        .where(col(Activity.athlete_id) == job.athlete_id)
        .where(col(Activity.created_at) < job.created_at)
    )
    if cursor.after is not None:
        after = datetime.fromtimestamp(cursor.after + 1, UTC)
        query = query.where(col(Activity.start_date) >= after)
    return int(session.execute(query).scalar_one())


def _defer(
    ctx: IngestContext,
    job_id: int,
    owner: str,
    error: Exception,
    options: SyncOptions,
    rng: random.Random,
) -> Outcome:
    """After a failed page: wait for quota, back off, or fail for good; the page's
    transaction was rolled back, so the cursor still points at it."""
    now = ctx.clock()
    job = get_job(ctx.engine, job_id)
    if job is None:
        return NotClaimed()
    message = f"{type(error).__name__}: {error}"[:2000]
    if isinstance(error, StravaError):
        # A listing refused for lack of activity:read: the athlete must reconnect.
        mark_if_activity_read_missing(ctx, job.athlete_id, error)
    if isinstance(error, AthleteNotConnected):
        step: WaitForQuota | RetryLater | GiveUp = GiveUp(message)
    else:
        step = next_step(
            error,
            attempts=job.failed + 1,
            now=now,
            window_reset=ctx.quota.retry_at,
            backoff=options.backoff,
            rng=rng,
        )
    failed = col(SyncJob.failed) + 1
    match step:
        case WaitForQuota(at):
            values = _released(SyncStatus.RATE_LIMITED, now, retry_after=at)
            outcome: Outcome = Wait(at)
        case RetryLater(at):
            values = _released(
                SyncStatus.QUEUED, now, retry_after=at, last_error=message, failed=failed
            )
            outcome = Wait(at)
        case GiveUp(reason):
            values = _released(SyncStatus.FAILED, now, last_error=reason, failed=failed)
            outcome = Finished(SyncStatus.FAILED)
    with session_scope(ctx.engine) as session:
        # A lease already lost (the job was cancelled meanwhile) leaves the row as it is.
        released = session.execute(_guarded(job_id, owner).values(values))
    if released.rowcount == 1:  # type: ignore[attr-defined]
        job_log.deferred(ctx.engine, job, error, step, now)
    log.info("sync job deferred job_id=%s step=%s error=%s", job_id, type(step).__name__, message)
    return outcome
