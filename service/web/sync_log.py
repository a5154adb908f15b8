"""GET /athletes/{id}/sync/log: a sync job's log, oldest entry first (a read key).

The entries come from service/ingest/job_log.py `read_log`, the same function
`strava-ingest sync log` prints. While the job runs, a reader continues with
`after=<next_after>` and gets only what was written since.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.ingest.job_log import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LogPage,
    UnknownAthlete,
    UnknownJob,
    read_log,
)
from service.ingest.job_view import SyncJobView, job_view
from service.models import LogLevel, SyncJobLogEntry
from service.web.api_spec import Access, ApiRoute, Operation, json_response, parse_query
from service.web.errors import NotFound, unknown_athlete
from service.web.state import web_state


class SyncLogQuery(BaseModel):
    """Which entries to read."""

    job: Annotated[
        int | None,
        Field(ge=1, description="The job's id; the athlete's latest job when left out."),
    ] = None
    level: Annotated[
        LogLevel | None,
        Field(description="Only entries at this level or above (debug < info < warning < error)."),
    ] = None
    after: Annotated[
        int | None,
        Field(ge=0, description="Only entries with an id above this: the `next_after` of a read."),
    ] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Entries per answer at most.")] = (
        DEFAULT_LIMIT
    )


class SyncLogEntry(BaseModel):
    """One thing a job did."""

    id: int = Field(description="The entry's id; ids grow in the order entries were written.")
    at: datetime = Field(description="When it was written (UTC).")
    level: LogLevel = Field(description="debug, info, warning or error.")
    message: str = Field(description="What happened, in one line.")
    fields: dict[str, Any] = Field(
        description="The figures: page, items, new, updated, retry_after, totals, and for a "
        "Strava error its status code and fault (`strava.errors[].resource/field/code`)."
    )


class SyncLog(BaseModel):
    """A page of a job's log, oldest entry first."""

    athlete_id: int = Field(description="The athlete whose job it is.")
    job: SyncJobView = Field(description="The job the entries belong to.")
    entries: list[SyncLogEntry] = Field(description="At most `limit` entries, oldest first.")
    next_after: int | None = Field(
        description="Pass as `after` to read on; null when the job has no entries yet."
    )
    more: bool = Field(description="Whether more entries were already written past these.")


async def sync_log(request: Request) -> Response:
    """The entries of an athlete's sync job (by default their latest), oldest first, readable
    while the job runs and after, for SYNC_LOG_RETENTION_DAYS. 404 for an unknown athlete,
    and for a job that is not this athlete's."""
    athlete_id: int = request.path_params["athlete_id"]
    query = parse_query(request, SyncLogQuery)
    try:
        page = await run_in_threadpool(
            read_log,
            web_state(request).engine,
            athlete_id,
            job_id=query.job,
            level=query.level,
            after=query.after,
            limit=query.limit,
        )
    except UnknownAthlete:
        raise unknown_athlete(athlete_id) from None
    except UnknownJob:
        named = f"job {query.job}" if query.job is not None else "sync job"
        raise NotFound(f"athlete {athlete_id} has no {named}", reason="not_found") from None
    return json_response(_answer(athlete_id, page))


def _answer(athlete_id: int, page: LogPage) -> SyncLog:
    return SyncLog(
        athlete_id=athlete_id,
        job=job_view(page.job),
        entries=[_entry(entry) for entry in page.entries],
        next_after=page.next_after,
        more=page.more,
    )


def _entry(entry: SyncJobLogEntry) -> SyncLogEntry:
    assert entry.id is not None
    return SyncLogEntry(
        id=entry.id,
        at=entry.at,
        level=LogLevel(entry.level),
        message=entry.message,
        fields=entry.fields,
    )


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/athletes/{athlete_id:int}/sync/log",
            sync_log,
            method="GET",
            operation=Operation(
                summary="Read a sync job's log",
                access=Access.READ,
                responses={200: SyncLog},
                query=SyncLogQuery,
                tags=("sync",),
            ),
        )
    ]
