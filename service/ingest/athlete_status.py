"""What the product and the operator see of an athlete: connection status (and why it needs a
reconnect), scopes, activity counts by hydration status, and the active or last sync job.

One query path serves `GET /athletes`, `GET /athletes/{id}`, the disconnect answer and
`strava-ingest athletes`, so the API and the CLI never disagree. Pages are keyset-paginated by
athlete id: a page starts after the last id of the previous one, so athletes connecting or
leaving meanwhile never shift a page (no duplicates, no gaps).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.ingest.job_view import SyncJobView, job_view
from service.models import Activity, Athlete, AthleteStatus, HydrationStatus, SyncJob

MAX_PAGE_SIZE = 200


class UnknownAthlete(Exception):
    """No athlete with this id ever connected."""


class HydrationCounts(BaseModel):
    """How many of the athlete's stored activities are in each hydration status."""

    none: int = Field(0, description="Summary only; no detail fetch asked for yet.")
    pending: int = Field(0, description="A detail fetch is queued or waiting for quota.")
    partial: int = Field(0, description="Detail stored, some parts (laps, streams) missing.")
    complete: int = Field(0, description="Detail, laps and streams stored.")
    not_available: int = Field(0, description="Strava has no detail to give (e.g. hidden).")
    failed: int = Field(0, description="The fetch failed for good; see the activity's error.")
    total: int = Field(0, description="All stored activities of the athlete.")


class AthleteState(BaseModel):
    """One athlete as the product sees them."""

    id: int = Field(description="The Strava athlete id.")
    status: AthleteStatus = Field(
        description="connected; needs_reauth (Strava refuses our tokens or a scope, the "
        "athlete must connect again); deauthorized (the grant is gone and the data purged)."
    )
    status_reason: str | None = Field(
        None, description="Why the athlete needs to reconnect (needs_reauth only)."
    )
    scopes: list[str] = Field(description="The scopes the athlete accepted at connection.")
    connected_at: datetime = Field(description="When the athlete last connected (UTC).")
    deauthorized_at: datetime | None = Field(
        None, description="When the grant was found gone (deauthorized only, UTC)."
    )
    activities: HydrationCounts = Field(description="Stored activities by hydration status.")
    sync_job: SyncJobView | None = Field(
        None, description="The active sync job, else the last one; null if none ever ran."
    )


@dataclass(frozen=True)
class AthletePage:
    """One page of athletes in id order, and the id the next page starts after (None on the
    last page)."""

    athletes: list[AthleteState]
    after_id: int | None


def athlete_state(engine: Engine, athlete_id: int) -> AthleteState:
    """The athlete's state; UnknownAthlete when they never connected."""
    with Session(engine) as session:
        athlete = session.get(Athlete, athlete_id)
        if athlete is None:
            raise UnknownAthlete(f"athlete {athlete_id} is unknown")
        return _states(session, [athlete])[0]


def athlete_page(
    engine: Engine,
    *,
    after_id: int | None = None,
    limit: int = 50,
    statuses: Collection[AthleteStatus] = (),
) -> AthletePage:
    """Up to `limit` athletes with an id above `after_id`, in id order, only those in
    `statuses` when given."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    query = select(Athlete).order_by(col(Athlete.id)).limit(limit + 1)
    if after_id is not None:
        query = query.where(col(Athlete.id) > after_id)
    if statuses:
        query = query.where(col(Athlete.status).in_([s.value for s in statuses]))
    with Session(engine) as session:
        athletes = list(session.exec(query).all())
        more = len(athletes) > limit
        athletes = athletes[:limit]
        states = _states(session, athletes)
    return AthletePage(athletes=states, after_id=athletes[-1].id if more else None)


def _states(session: Session, athletes: Sequence[Athlete]) -> list[AthleteState]:
    ids = [athlete.id for athlete in athletes]
    counts = _hydration_counts(session, ids)
    jobs = _latest_jobs(session, ids)
    return [
        AthleteState(
            id=athlete.id,
            status=AthleteStatus(athlete.status),
            status_reason=(
                athlete.status_reason if athlete.status == AthleteStatus.NEEDS_REAUTH else None
            ),
            scopes=[scope for scope in athlete.scopes.split(",") if scope],
            connected_at=athlete.connected_at,
            deauthorized_at=(
                athlete.deauthorized_at if athlete.status == AthleteStatus.DEAUTHORIZED else None
            ),
            activities=counts.get(athlete.id, HydrationCounts()),
            sync_job=jobs.get(athlete.id),
        )
        for athlete in athletes
    ]


def _hydration_counts(session: Session, ids: list[int]) -> dict[int, HydrationCounts]:
    if not ids:
        return {}
    rows = session.execute(
        sa.select(col(Activity.athlete_id), col(Activity.hydration_status), sa.func.count())
        .where(col(Activity.athlete_id).in_(ids))
        .group_by(col(Activity.athlete_id), col(Activity.hydration_status))
    ).all()
    by_athlete: dict[int, dict[str, int]] = {}
    for athlete_id, status, n in rows:
        by_athlete.setdefault(int(athlete_id), {})[HydrationStatus(status).value] = int(n)
    return {
        athlete_id: HydrationCounts(**counts, total=sum(counts.values()))
        for athlete_id, counts in by_athlete.items()
    }


def _latest_jobs(session: Session, ids: list[int]) -> dict[int, SyncJobView]:
    # One job per athlete is active at most and none starts while it is, so the active job
    # is always the athlete's newest: the newest job is "the active one, else the last".
    if not ids:
        return {}
    newest = (
        sa.select(
            col(SyncJob.id),
            sa.func.row_number()
            .over(partition_by=col(SyncJob.athlete_id), order_by=col(SyncJob.id).desc())
            .label("rank"),
        )
        .where(col(SyncJob.athlete_id).in_(ids))
        .subquery()
    )
    jobs = session.exec(
        select(SyncJob).join(newest, col(SyncJob.id) == newest.c.id).where(newest.c.rank == 1)
    ).all()
    return {job.athlete_id: job_view(job) for job in jobs}
