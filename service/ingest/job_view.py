"""A sync job as the product API and the CLI show it: the same object wherever a job appears
(an athlete's state, the sync state and its stream, a job's log)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.models import SyncJob


class SyncJobView(BaseModel):
    """One sync job of an athlete."""

    id: int = Field(description="The job's id.")
    kind: str = Field(description="backfill, reconcile or full_refresh.")
    status: str = Field(
        description="queued, running, rate_limited (active); completed, failed or cancelled."
    )
    cancel_requested: bool = Field(description="A cancel was asked for; it stops at a page.")
    created_at: datetime = Field(description="When the job was created (UTC).")
    started_at: datetime | None = Field(description="When a worker first took it (UTC).")
    finished_at: datetime | None = Field(description="When it ended (UTC); null while active.")
    last_error: str | None = Field(description="Why it failed or was cancelled, if it did.")


def job_view(job: SyncJob) -> SyncJobView:
    """The stored job as the product sees it."""
    assert job.id is not None
    return SyncJobView(
        id=job.id,
        kind=job.kind,
        status=job.status,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_error=job.last_error,
    )
