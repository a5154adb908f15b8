"""Shared by the sync tests: run a job to its end in this thread, read rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.ingest.context import IngestContext
from service.ingest.sync import Continue, Outcome, SyncOptions, run_job
from service.models import Activity, SyncJob


@dataclass
class Sent:
    """Collects hydrations a job queues, instead of a broker."""

    hydrations: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, activity_id: int, tier: str) -> None:
        self.hydrations.append((activity_id, tier))


def run_to_end(
    ctx: IngestContext,
    job_id: int,
    options: SyncOptions,
    sent: Sent | None = None,
    owner: str = "test-worker",
    limit: int = 100,
) -> Outcome:
    """Run the job message after message, as the actor would, until it stops asking to
    continue (finished, waiting for quota, or not ours)."""
    outcome: Outcome = Continue()
    for _ in range(limit):
        outcome = run_job(ctx, job_id, owner=owner, options=options, send_hydration=sent or Sent())
        if not isinstance(outcome, Continue):
            return outcome
    raise AssertionError(f"job {job_id} still running after {limit} slices")


def job(engine: Engine, job_id: int) -> SyncJob:
    with Session(engine) as session:
        return session.get_one(SyncJob, job_id)


def activities(engine: Engine, athlete_id: int) -> dict[int, Activity]:
    with Session(engine) as session:
        rows = session.exec(select(Activity).where(Activity.athlete_id == athlete_id)).all()
    return {row.id: row for row in rows}


def summaries_by_id(listing: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {item["id"]: item for item in listing}


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
