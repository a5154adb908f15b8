"""Starting and cancelling an athlete's sync on request: the one path shared by
`strava-ingest sync` and the product API's sync routes.

An incremental sync continues the athlete's backfill until their history has been listed to
its end, and reconciles after that (service/ingest/reconcile.py `start_incremental`); a full
sync lists everything again and removes what Strava no longer has. Either joins the
athlete's active job instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.ingest.reconcile import history_listed, start_incremental
from service.ingest.sync import Started, cancel_job, start_job
from service.models import Athlete, SyncJob, SyncKind


class SyncRequest(StrEnum):
    """What a caller asks for."""

    INCREMENTAL = "incremental"
    FULL = "full"


class UnknownAthlete(Exception):
    """No athlete with this id has connected."""


def start_sync(
    engine: Engine,
    athlete_id: int,
    request: SyncRequest,
    now: datetime,
    *,
    overlap: timedelta,
    send: Callable[[int], object] | None,
    publish: Callable[[int], object],
) -> Started:
    """Create the athlete's job and hand it to a worker with `send` (None: the caller runs
    it), or return the active job untouched (`created` False). `publish` is called with
    the athlete's id once a job was created, for the progress streams."""
    with Session(engine) as session:
        if session.get(Athlete, athlete_id) is None:
            raise UnknownAthlete(athlete_id)
    if request is SyncRequest.FULL:
        started = start_job(engine, athlete_id, SyncKind.FULL_REFRESH, now)
    else:
        listed = history_listed(engine, athlete_id)
        started = start_incremental(engine, athlete_id, overlap, now, listed=listed)
    if started.created:
        publish(athlete_id)
        if send is not None:
            assert started.job.id is not None
            send(started.job.id)
    return started


def cancel_sync(
    engine: Engine,
    athlete_id: int,
    reason: str,
    now: datetime,
    *,
    publish: Callable[[int], object],
) -> SyncJob | None:
    """Cancel the athlete's active job (a running one stops at its next page boundary, and
    its worker publishes the end); None when there is none. A later start continues from
    where it stopped. `publish` is called with the athlete's id after a cancel."""
    with Session(engine) as session:
        if session.get(Athlete, athlete_id) is None:
            raise UnknownAthlete(athlete_id)
    job = cancel_job(engine, athlete_id, reason, now)
    if job is not None:
        publish(athlete_id)
    return job
