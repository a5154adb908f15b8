"""What the operator page shows, read from the domain's own functions (the same ones the
CLI and the product API use): athletes and their syncs, the quota, the subscription's health
and the processes, the inbox, and an athlete's job log. Nothing here calls Strava.

Each function reads the database (and Redis) and must run in a worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from service.heartbeats import ROLES
from service.ingest import job_log
from service.ingest.athlete_status import AthleteState, athlete_page, athlete_state
from service.ingest.job_view import SyncJobView
from service.ingest.lifecycle import (
    counts_by_status,
    events_with_status,
    find_event,
    flagged_athletes,
)
from service.ingest.subscription_health import Finding, stored_findings
from service.ingest.sync_status import SyncState, read_sync_state
from service.liveness import role_states
from service.models import Athlete, InboxEvent, InboxStatus, SyncStatus
from service.strava.quota import TIERS_BY_PRIORITY, QuotaScheduler, Tier
from service.strava.quota.report import duration
from service.strava.quota.scheduler import BUCKETS, QuotaStatus
from service.web.admin.charts import UsageChart, usage_chart
from service.web.state import WebState

# Athletes per page of the overview, and events of each kind listed.
ATHLETES_PER_PAGE = 100
EVENTS_LISTED = 50
LOG_ENTRIES = 500


def percent(phase: str, job_status: str | None, hydrated: int, waiting: int) -> int:
    """A sync's progress for its bar: the share of the hydrations it queued that are done
    (hydrations are most of a backfill's calls), never 100 before the job completed with
    nothing left. The page's script repeats this for the live updates."""
    if job_status is None:
        return 0
    if phase == "done" and job_status == SyncStatus.COMPLETED:
        return 100
    share = 100 * hydrated // (hydrated + waiting) if hydrated + waiting else 0
    return share if phase == "done" else min(share, 99)


@dataclass(frozen=True)
class SyncProgress:
    """An athlete's latest sync job as its row shows it."""

    job: SyncJobView
    phase: str
    percent: int
    message: str


def progress_of(state: SyncState) -> SyncProgress | None:
    if state.job is None:
        return None
    counters = state.counters
    return SyncProgress(
        job=state.job,
        phase=state.phase,
        percent=percent(state.phase, state.job.status, counters.hydrated, counters.waiting),
        message=state.message,
    )


@dataclass(frozen=True)
class AthleteRow:
    athlete: AthleteState
    sync: SyncProgress | None


def athlete_rows(
    web: WebState, after: int | None, now: datetime
) -> tuple[list[AthleteRow], int | None]:
    """A page of athletes with their syncs, and the id the next page starts after."""
    page = athlete_page(web.engine, after_id=after, limit=ATHLETES_PER_PAGE)
    return [_row(web.engine, web.quota, athlete, now) for athlete in page.athletes], page.after_id


def _row(engine: Engine, quota: QuotaScheduler, athlete: AthleteState, now: datetime) -> AthleteRow:
    job = athlete.sync_job
    if job is None:
        return AthleteRow(athlete, None)
    waiting = athlete.activities.pending + athlete.activities.partial
    if job.status == SyncStatus.COMPLETED and not waiting:
        # Most athletes: done, and the state's per-activity counts are not worth reading.
        finished = f"{job.finished_at:%Y-%m-%d %H:%M} UTC" if job.finished_at else "?"
        return AthleteRow(athlete, SyncProgress(job, "done", 100, f"completed {finished}"))
    state = read_sync_state(engine, quota, athlete.id, now)
    return AthleteRow(athlete, progress_of(state))


@dataclass(frozen=True)
class TierGauge:
    tier: Tier
    used: int
    allowed: int


@dataclass(frozen=True)
class WindowGauge:
    """One of Strava's counters (a bucket in a window) now."""

    bucket: str
    window: str
    used: int
    limit: int
    resets_in: str
    resets_at: datetime
    held_for_realtime: int
    tiers: list[TierGauge]


@dataclass(frozen=True)
class QuotaView:
    status: QuotaStatus
    windows: list[WindowGauge]
    charts: list[UsageChart]


def quota_view(quota: QuotaScheduler) -> QuotaView:
    status = quota.status()
    history = quota.usage_history()
    windows = [
        WindowGauge(
            bucket=w.bucket,
            window=w.window,
            used=w.used,
            limit=w.limit,
            resets_in=duration(w.seconds_to_reset),
            resets_at=w.resets_at,
            held_for_realtime=w.held_for_realtime,
            tiers=[TierGauge(t, w.used_by_tier[t], w.allowed[t]) for t in TIERS_BY_PRIORITY],
        )
        for w in status.windows
    ]
    length = quota.config.window_seconds
    charts = [
        usage_chart(bucket, history, status.window(bucket, "short").limit, length)
        for bucket in BUCKETS
    ]
    return QuotaView(status, windows, charts)


@dataclass(frozen=True)
class ProcessRole:
    role: str
    processes: int
    last_beat_seconds_ago: float | None


def process_roles(web: WebState) -> list[ProcessRole]:
    """The web, worker and scheduler processes their heartbeats show alive."""
    now = time.time()
    states = role_states(web.heartbeats.alive(), ROLES)
    return [
        ProcessRole(
            role,
            len(state.beats),
            round(now - max(b.last_beat for b in state.beats), 1) if state.beats else None,
        )
        for role, state in states.items()
    ]


@dataclass(frozen=True)
class Overview:
    """Everything the operator page shows."""

    athletes: list[AthleteRow]
    next_after: int | None
    quota: QuotaView
    subscription: list[Finding]
    processes: list[ProcessRole]
    inbox: list[tuple[str, int]]
    flagged: list[Athlete]
    failed: list[InboxEvent]
    unconfirmed: list[InboxEvent]
    replayed: InboxEvent | None


def overview(web: WebState, *, after: int | None, replayed: int | None, now: datetime) -> Overview:
    athletes, next_after = athlete_rows(web, after, now)
    counts = counts_by_status(web.engine)
    return Overview(
        athletes=athletes,
        next_after=next_after,
        quota=quota_view(web.quota),
        subscription=stored_findings(web.settings, web.engine, now),
        processes=process_roles(web),
        inbox=[(status.value, counts.get(status.value, 0)) for status in InboxStatus],
        flagged=flagged_athletes(web.engine),
        failed=events_with_status(web.engine, InboxStatus.FAILED, limit=EVENTS_LISTED),
        unconfirmed=events_with_status(web.engine, InboxStatus.UNCONFIRMED, limit=EVENTS_LISTED),
        replayed=find_event(web.engine, replayed) if replayed is not None else None,
    )


@dataclass(frozen=True)
class AthletePage:
    """One athlete: their state, their sync, and a page of a job's log."""

    athlete: AthleteState
    sync: SyncState
    progress: SyncProgress | None
    log: job_log.LogPage | None


def athlete_detail(
    web: WebState, athlete_id: int, *, job_id: int | None, after: int | None, now: datetime
) -> AthletePage:
    """UnknownAthlete (service/ingest/athlete_status.py) for an athlete who never connected;
    job_log.UnknownJob for a job that is not theirs."""
    athlete = athlete_state(web.engine, athlete_id)
    state = read_sync_state(web.engine, web.quota, athlete_id, now)
    log = None
    if athlete.sync_job is not None:
        log = job_log.read_log(
            web.engine, athlete_id, job_id=job_id, after=after, limit=LOG_ENTRIES
        )
    elif job_id is not None:
        raise job_log.UnknownJob(job_id)
    return AthletePage(
        athlete=athlete,
        sync=state,
        progress=progress_of(state),
        log=log,
    )
