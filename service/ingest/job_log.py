"""Sync job logs: what each job did, written as it goes, read by GET /athletes/{id}/sync/log
and `strava-ingest sync log`.

A job writes an entry when it starts (kind, cursor), for every page it stores (page number,
items, new, updated), when it waits for quota (`retry_after`), when a page fails (Strava's
status and fault), when it is cancelled, and when it ends (the totals). Hydrations run
elsewhere, one message per activity: `HydrationProgress` sums them up per athlete and writes
one entry per batch, not one per activity.

Bounded: a job writes at most `MAX_ENTRIES_PER_JOB` entries; past that only its final entry
(completed, cancelled, failed) is still written, after one warning that says entries were
dropped. Entries are kept SYNC_LOG_RETENTION_DAYS and pruned in batches by the scheduler.

Writing never fails the job: an entry that cannot be written is logged to the process log
and dropped. Each entry is its own short transaction that holds the job's row lock, so one
job's entries commit in id order and a reader that continues `after` the last id it saw
misses none, while the job runs.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.db import session_scope
from service.ingest.retry import GiveUp, RetryLater, Step, WaitForQuota
from service.models import (
    ACTIVE_SYNC_STATUSES,
    LOG_LEVELS,
    Activity,
    Athlete,
    HydrationStatus,
    LogLevel,
    SyncJob,
    SyncJobLogEntry,
)
from service.strava.errors import RateLimited, StravaError
from service.strava.quota import QuotaExceeded, Tier
from service.strava.quota.tiers import REALTIME_TIERS

log = logging.getLogger(__name__)

# A 100,000-activity backfill lists 500 pages of 200 and hydrates in batches of 100: about
# 1,500 entries at most, most jobs far fewer. Past this the log stops growing, so no job
# (however long it waits or fails) can fill the table.
MAX_ENTRIES_PER_JOB = 2000
# Entries per read, by default and at most.
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


# -- writing ---------------------------------------------------------------------------------


def write(
    engine: Engine,
    job_id: int,
    athlete_id: int,
    level: LogLevel,
    message: str,
    fields: Mapping[str, Any] | None = None,
    *,
    now: datetime,
    final: bool = False,
    once: bool = False,
) -> bool:
    """Append an entry to the job's log; True when it was written.

    `final` entries (the job's end) are written even past the bound; a `once` entry is
    skipped when the job already has one with the same message. Never raises: the log must
    not fail the job it describes."""
    try:
        return _write(engine, job_id, athlete_id, level, message, fields or {}, now, final, once)
    except Exception:
        log.exception("job log entry not written job_id=%s message=%r", job_id, message)
        return False


def _write(
    engine: Engine,
    job_id: int,
    athlete_id: int,
    level: LogLevel,
    message: str,
    fields: Mapping[str, Any],
    now: datetime,
    final: bool,
    once: bool,
) -> bool:
    with session_scope(engine) as session:
        # The job's row lock orders its entries (see the module's docstring); a job that is
        # gone (its athlete purged) has no log to write to.
        locked = session.execute(
            sa.select(col(SyncJob.id)).where(col(SyncJob.id) == job_id).with_for_update()
        ).first()
        if locked is None:
            return False
        of_job = col(SyncJobLogEntry.job_id) == job_id
        if once:
            same = sa.select(col(SyncJobLogEntry.id)).where(
                of_job, col(SyncJobLogEntry.message) == message
            )
            if session.execute(same.limit(1)).first() is not None:
                return False
        count = session.execute(
            sa.select(sa.func.count()).select_from(SyncJobLogEntry).where(of_job)
        ).scalar_one()
        if count >= MAX_ENTRIES_PER_JOB and not final:
            if count == MAX_ENTRIES_PER_JOB:
                session.add(
                    SyncJobLogEntry(
                        job_id=job_id,
                        athlete_id=athlete_id,
                        at=now,
                        level=LogLevel.WARNING.value,
                        message=f"log full: entries after the first {count} are dropped "
                        "until the job ends",
                        fields={"limit": MAX_ENTRIES_PER_JOB},
                    )
                )
            return False
        session.add(
            SyncJobLogEntry(
                job_id=job_id,
                athlete_id=athlete_id,
                at=now,
                level=level.value,
                message=message,
                fields=dict(fields),
            )
        )
    return True


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def error_fields(error: BaseException) -> dict[str, Any]:
    """What a log entry keeps of an error: its type and message (free of secrets, see
    service/strava/errors.py), and for Strava's own errors the status and Strava's fault
    (docs/strava.md §4.5), so the entry says whose fault it was."""
    fields: dict[str, Any] = {"type": type(error).__name__, "message": str(error)[:1000]}
    if isinstance(error, StravaError):
        strava: dict[str, Any] = {"status_code": error.status_code}
        if error.fault is not None:
            strava["message"] = error.fault.message
            strava["errors"] = [
                {"resource": item.resource, "field": item.field, "code": item.code}
                for item in error.fault.errors
            ]
        fields["strava"] = strava
    if isinstance(error, RateLimited):
        fields["window"] = error.window
    if isinstance(error, QuotaExceeded):
        fields |= {"tier": error.tier.value, "window": error.window}
    return fields


# -- the events of a job, one function each (called from service/ingest/sync.py) -------------

P = ParamSpec("P")


def _never_raises(event: Callable[P, None]) -> Callable[P, None]:
    """An event's reads (the job's totals, the hydration counts) may fail as its write may:
    logged, and the job goes on."""

    @functools.wraps(event)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            event(*args, **kwargs)
        except Exception:
            log.exception("job log event not written event=%s", event.__name__)

    return guarded


@_never_raises
def job_started(engine: Engine, job: SyncJob, now: datetime) -> None:
    assert job.id is not None
    write(
        engine,
        job.id,
        job.athlete_id,
        LogLevel.INFO,
        f"{job.kind} started",
        {"kind": job.kind, "cursor": job.cursor},
        now=now,
    )


@_never_raises
def page_stored(
    engine: Engine,
    job: SyncJob,
    *,
    items: int,
    new: int,
    updated: int,
    hydrations_queued: int,
    gone: int,
    now: datetime,
) -> None:
    """One listed page, committed. `job` is the row as it was before the page."""
    assert job.id is not None
    page = job.pages + 1
    write(
        engine,
        job.id,
        job.athlete_id,
        LogLevel.INFO,
        f"page {page}: {items} listed, {new} new, {updated} updated",
        {
            "page": page,
            "items": items,
            "new": new,
            "updated": updated,
            "hydrations_queued": hydrations_queued,
            "gone": gone,
        },
        now=now,
    )


@_never_raises
def cancel_requested(engine: Engine, job: SyncJob, reason: str, now: datetime) -> None:
    """A cancel for a job a worker holds: it stops at its next page boundary."""
    assert job.id is not None
    write(
        engine,
        job.id,
        job.athlete_id,
        LogLevel.INFO,
        "cancel requested; the job stops at its next page",
        {"reason": reason},
        now=now,
    )


@_never_raises
def cancelled(engine: Engine, job: SyncJob, now: datetime) -> None:
    assert job.id is not None
    write(
        engine,
        job.id,
        job.athlete_id,
        LogLevel.WARNING,
        "cancelled",
        {"reason": job.last_error, **_totals(job)},
        now=now,
        final=True,
    )


@_never_raises
def ended(engine: Engine, job_id: int, now: datetime) -> None:
    """The listing's end: completed with its totals, or failed by the safety abort."""
    with Session(engine) as session:
        job = session.get(SyncJob, job_id)
    if job is None:
        return
    totals = _totals(job)
    if job.last_error:
        message, level = f"failed: {job.last_error}", LogLevel.ERROR
    else:
        message = (
            f"completed: {job.pages} pages, {job.listed} listed, {job.new} new, "
            f"{job.updated} updated, {job.deleted} deleted"
        )
        level = LogLevel.INFO
    write(engine, job_id, job.athlete_id, level, message, totals, now=now, final=True)
    # Its hydrations may all be done already (or there were none).
    _hydration_finished(engine, job_id, job.athlete_id, now)


@_never_raises
def deferred(engine: Engine, job: SyncJob, error: BaseException, step: Step, now: datetime) -> None:
    """A page that failed: the job waits for quota, retries later, or fails for good."""
    assert job.id is not None
    fields: dict[str, Any] = {"error": error_fields(error), "attempts": job.failed + 1}
    final = False
    match step:
        case WaitForQuota(at):
            level = LogLevel.WARNING
            if isinstance(error, RateLimited):
                why = f"Strava answered 429 (its {error.window} rate limit)"
            elif isinstance(error, QuotaExceeded):
                why = f"the {error.tier.value} share of Strava's {error.window} quota is spent"
            else:
                why = "out of Strava quota"
            message = f"waiting for Strava's rate limit until {at:%H:%M:%S} UTC: {why}"
            fields = {"retry_after": _iso(at), "error": error_fields(error)}
        case RetryLater(at):
            level = LogLevel.WARNING
            message = f"page failed, retrying at {at:%H:%M:%S} UTC: {error}"[:2000]
            fields["retry_after"] = _iso(at)
        case GiveUp(reason):
            level, final = LogLevel.ERROR, True
            message = f"failed: {reason}"[:2000]
            fields |= _totals(job)
    write(engine, job.id, job.athlete_id, level, message, fields, now=now, final=final)


def _totals(job: SyncJob) -> dict[str, Any]:
    return {
        "pages": job.pages,
        "listed": job.listed,
        "new": job.new,
        "updated": job.updated,
        "deleted": job.deleted,
        "hydrations_queued": job.hydrations_queued,
        "failed_attempts": job.failed,
        "started_at": _iso(job.started_at),
    }


# -- hydration progress ----------------------------------------------------------------------

_DONE = {
    HydrationStatus.COMPLETE.value: "hydrated",
    HydrationStatus.NOT_AVAILABLE.value: "hydrated",
    HydrationStatus.FAILED.value: "failed",
}
_HYDRATING = (HydrationStatus.PENDING.value, HydrationStatus.PARTIAL.value)


@dataclass
class _Tally:
    since: datetime
    hydrated: int = 0
    failed: int = 0


class HydrationProgress:
    """Sums up one worker process's hydrations per athlete and writes them to the athlete's
    latest job's log in batches: after `batch` activities, or once `every` has passed since
    the last entry, and when none of the athlete's activities is left to hydrate; then,
    once the job's listing is over too, "hydration finished" with the counts by status.

    Why batches: a 10,000-activity backfill would otherwise write 10,000 rows that say
    nothing one by one; with 100 per entry it writes 100. Why also by time: at backfill
    priority quota lets only a few hydrations through per window, so a count alone could
    leave a reader without news for an hour; five minutes keeps a day-long trickle under
    300 entries. Each process keeps its own tally (workers share nothing in memory), so
    several entries may cover one batch between them; the remaining count in each comes
    from the rows, as does the final entry's totals, so they agree whatever the split.
    """

    def __init__(self, batch: int = 100, every: timedelta = timedelta(minutes=5)) -> None:
        self.batch = batch
        self.every = every
        self._lock = threading.Lock()
        self._tallies: dict[int, _Tally] = {}

    def record(self, engine: Engine, activity_id: int, tier: Tier, now: datetime) -> None:
        """After a hydration attempt of `activity_id` at `tier`; never raises. Hydrations
        someone waits on now (a webhook, a reader) belong to no sync job and are left out."""
        if tier in REALTIME_TIERS:
            return
        try:
            self._record(engine, activity_id, now)
        except Exception:
            log.exception("hydration progress not logged activity_id=%s", activity_id)

    def _record(self, engine: Engine, activity_id: int, now: datetime) -> None:
        with Session(engine) as session:
            row = session.execute(
                sa.select(col(Activity.athlete_id), col(Activity.hydration_status)).where(
                    col(Activity.id) == activity_id
                )
            ).first()
            if row is None:
                return
            athlete_id, status = row
            outcome = _DONE.get(status)
            if outcome is None:  # waiting for quota or a retry: nothing finished yet
                return
            remaining = _remaining(session, athlete_id)
        with self._lock:
            tally = self._tallies.setdefault(athlete_id, _Tally(since=now))
            setattr(tally, outcome, getattr(tally, outcome) + 1)
            due = (
                remaining == 0
                or tally.hydrated + tally.failed >= self.batch
                or now - tally.since >= self.every
            )
            if not due:
                return
            del self._tallies[athlete_id]
        job_id = _latest_job_id(engine, athlete_id)
        if job_id is None:
            return
        write(
            engine,
            job_id,
            athlete_id,
            LogLevel.INFO,
            f"hydrated {tally.hydrated} more, {tally.failed} failed; {remaining} left",
            {"hydrated": tally.hydrated, "failed": tally.failed, "remaining": remaining},
            now=now,
        )
        if remaining == 0:
            _hydration_finished(engine, job_id, athlete_id, now)


def _hydration_finished(engine: Engine, job_id: int, athlete_id: int, now: datetime) -> None:
    """ "hydration finished", once, when the job's listing is over and none of the athlete's
    activities is left to hydrate. Both the job's end and the last hydration call this,
    whichever comes last sees both conditions true; `once` keeps it to one entry."""
    with Session(engine) as session:
        job = session.get(SyncJob, job_id)
        if job is None or job.status in ACTIVE_SYNC_STATUSES:
            return  # the listing may queue more
        if _remaining(session, athlete_id):
            return
    counts = _hydration_counts(engine, athlete_id)
    write(
        engine,
        job_id,
        athlete_id,
        LogLevel.INFO,
        "hydration finished",
        {"hydration": counts},
        now=now,
        once=True,
    )


def _remaining(session: Session, athlete_id: int) -> int:
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(Activity)
            .where(
                col(Activity.athlete_id) == athlete_id,
                col(Activity.hydration_status).in_(_HYDRATING),
            )
        ).scalar_one()
    )


def _latest_job_id(engine: Engine, athlete_id: int) -> int | None:
    with Session(engine) as session:
        return session.exec(
            select(sa.func.max(SyncJob.id)).where(SyncJob.athlete_id == athlete_id)
        ).one()


def _hydration_counts(engine: Engine, athlete_id: int) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(
            sa.select(col(Activity.hydration_status), sa.func.count())
            .where(col(Activity.athlete_id) == athlete_id)
            .group_by(col(Activity.hydration_status))
        )
        return {str(status): int(count) for status, count in rows}


# -- reading ---------------------------------------------------------------------------------


class UnknownAthlete(LookupError):
    """No athlete by that id."""


class UnknownJob(LookupError):
    """No such job of this athlete (another athlete's job is unknown too), or none at all."""


@dataclass(frozen=True)
class LogPage:
    """Entries of one job, oldest first.

    Parameters:
      job: the job they belong to.
      entries: at most the limit asked for, ids above `after`.
      next_after: the id to read on from (the last entry's, else the `after` given): the
        next read, now or once the job has written more, starts there.
      more: whether entries past these were already written.
    """

    job: SyncJob
    entries: list[SyncJobLogEntry]
    next_after: int | None
    more: bool


def read_log(
    engine: Engine,
    athlete_id: int,
    *,
    job_id: int | None = None,
    level: LogLevel | None = None,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> LogPage:
    """The entries of the athlete's job `job_id` (default: their latest job) at `level` or
    above, after entry id `after`. UnknownAthlete, or UnknownJob for a job that is not
    this athlete's."""
    with Session(engine) as session:
        if session.get(Athlete, athlete_id) is None:
            raise UnknownAthlete(athlete_id)
        query = select(SyncJob).where(SyncJob.athlete_id == athlete_id)
        if job_id is not None:
            query = query.where(SyncJob.id == job_id)
        job = session.exec(query.order_by(col(SyncJob.id).desc()).limit(1)).first()
        if job is None:
            raise UnknownJob(job_id)
        entries = select(SyncJobLogEntry).where(SyncJobLogEntry.job_id == job.id)
        if level is not None:
            entries = entries.where(col(SyncJobLogEntry.level).in_(_at_least(level)))
        if after is not None:
            entries = entries.where(col(SyncJobLogEntry.id) > after)
        rows = list(session.exec(entries.order_by(col(SyncJobLogEntry.id)).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = rows[-1].id if rows else after
    return LogPage(job=job, entries=rows, next_after=next_after, more=more)


def _at_least(level: LogLevel) -> list[str]:
    return [item.value for item in LOG_LEVELS[LOG_LEVELS.index(level) :]]


# -- pruning ---------------------------------------------------------------------------------


def prune(
    engine: Engine,
    *,
    older_than: timedelta,
    now: datetime,
    batch: int = 5000,
    max_batches: int = 20,
) -> int:
    """Delete entries written before `now - older_than`, `batch` rows per transaction and
    at most `max_batches` transactions per call (the scheduler calls again later), so a
    large backlog never holds locks or one long transaction. Returns how many went."""
    cutoff = now - older_than
    deleted = 0
    for _ in range(max_batches):
        oldest = (
            sa.select(col(SyncJobLogEntry.id))
            .where(col(SyncJobLogEntry.at) < cutoff)
            .limit(batch)
            .scalar_subquery()
        )
        with session_scope(engine) as session:
            result = session.execute(
                sa.delete(SyncJobLogEntry).where(col(SyncJobLogEntry.id).in_(oldest))
            )
        count = int(result.rowcount)  # type: ignore[attr-defined]
        deleted += count
        if count < batch:
            break
    if deleted:
        log.info("sync job log pruned deleted=%s before=%s", deleted, cutoff.isoformat())
    return deleted
