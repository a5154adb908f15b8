"""The product API's activities (read key): an athlete's activities page by page
(`GET /athletes/{id}/activities`), their newest (`.../activities/latest`), one activity with
what hydration stored of it (`GET /activities/{id}`) and its streams
(`GET /activities/{id}/streams`).

Reading an activity that is not complete queues its hydration at the `on_demand` tier
(service/ingest/on_demand.py: one in flight per activity) and answers at once with what we
have and `hydration_status: pending`; `?wait=N` waits up to N seconds for it to settle.
The queries are service/ingest/activity_reads.py's.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NaiveDatetime,
    WithJsonSchema,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.ingest import on_demand
from service.ingest.activity_reads import (
    ActivityFilter,
    Page,
    Position,
    StoredActivity,
    athlete_exists,
    latest_activity_id,
    list_activities,
    stored_activity,
    stored_streams,
)
from service.models import HydrationStatus, utcnow
from service.web.api_spec import Access, ApiRoute, Operation, json_response, parse_query
from service.web.cursors import cursor_key, decode_cursor, encode_cursor
from service.web.errors import InvalidRequest, NotFound, unknown_activity, unknown_athlete
from service.web.state import WebState, web_state

TAGS = ("activities",)
MAX_PAGE_SIZE = 200
# A reader may wait this long at most for an on-demand hydration (`?wait=`).
MAX_WAIT_SECONDS = 10.0
# How often a waiting reader looks at the row again.
WAIT_POLL_SECONDS = 0.1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Strava ids are BIGINTs (service/models.py): a larger id names nothing we could hold.
MAX_STRAVA_ID = 2**63 - 1


def _instant(value: Any) -> Any:
    """Epoch seconds (digits, optionally with a fraction) or ISO 8601 with a zone."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return _EPOCH + timedelta(seconds=float(text))
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise ValueError("not ISO 8601 or epoch seconds") from None
    if parsed.tzinfo is None:
        raise ValueError("an ISO 8601 instant needs a zone (Z or +hh:mm)")
    return parsed


# Documented as the text it is read from: an ISO 8601 instant or epoch seconds.
Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "examples": ["2026-06-01T00:00:00Z", "1780272000"]}),
]


class ActivitiesQuery(BaseModel):
    """The query of `GET /athletes/{id}/activities`."""

    model_config = ConfigDict(extra="forbid")

    after: Instant | None = Field(
        None,
        description="Only activities that started strictly after this instant: epoch seconds "
        "(as Strava's own `after`) or ISO 8601 with a zone.",
    )
    before: Instant | None = Field(
        None,
        description="Only activities that started strictly before this instant: epoch "
        "seconds or ISO 8601 with a zone.",
    )
    sport_type: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        [], max_length=50, description="Only these sport types (repeatable), e.g. Run."
    )
    workout_type: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="Only this Strava workout type (1: a race, for runs).",
    )
    hydration_status: list[HydrationStatus] = Field(
        [], description="Only activities in these hydration statuses (repeatable)."
    )
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description="Activities per page, at most 200.")


class WaitQuery(BaseModel):
    """The query of the routes that read one activity."""

    model_config = ConfigDict(extra="forbid")

    wait: float | None = Field(
        None,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="Wait up to this many seconds (at most 10) for an incomplete activity's "
        "hydration, instead of answering at once.",
    )


class ActivitySummary(BaseModel):
    """An activity's summary columns, as the listing shows them."""

    id: int = Field(description="Strava's activity id.")
    athlete_id: int = Field(description="The owner's Strava athlete id.")
    name: str | None = Field(None, description="The title.")
    sport_type: str | None = Field(None, description="Strava's sport type, e.g. Run.")
    type: str | None = Field(None, description="Strava's older activity type.")
    start_date: datetime | None = Field(None, description="When it started (UTC).")
    start_date_local: NaiveDatetime | None = Field(
        None, description="When it started on the athlete's local clock (no zone)."
    )
    timezone: str | None = Field(None, description="Strava's time zone text.")
    utc_offset: float | None = Field(None, description="The local clock's offset, seconds.")
    distance: float | None = Field(None, description="Metres.")
    moving_time: int | None = Field(None, description="Seconds.")
    elapsed_time: int | None = Field(None, description="Seconds.")
    total_elevation_gain: float | None = Field(None, description="Metres.")
    average_speed: float | None = Field(None, description="Metres per second.")
    max_speed: float | None = Field(None, description="Metres per second.")
    average_heartrate: float | None = Field(None, description="Beats per minute.")
    max_heartrate: float | None = Field(None, description="Beats per minute.")
    workout_type: int | None = Field(None, description="Strava's workout type (1: a race).")
    visibility: str | None = Field(None, description="everyone, followers_only or only_me.")
    private: bool | None = Field(None, description="Whether Strava marks it private.")
    trainer: bool | None = Field(None, description="Recorded on a trainer.")
    commute: bool | None = Field(None, description="Marked as a commute.")
    manual: bool | None = Field(None, description="Entered by hand.")
    gear_id: str | None = Field(None, description="Strava's gear id.")
    summary_polyline: str | None = Field(None, description="The route, encoded polyline.")
    hydration_status: str = Field(
        description="none | pending | partial | complete | not_available | failed."
    )
    hydrated_at: datetime | None = Field(None, description="When hydration last stored.")
    updated_at: datetime | None = Field(None, description="When the row last changed.")


class ActivitiesPage(BaseModel):
    """One page of an athlete's activities, newest first."""

    activities: list[ActivitySummary] = Field(description="The activities of this page.")
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


class ActivityView(ActivitySummary):
    """One activity: its summary columns, Strava's raw JSON and what hydration stored."""

    missing: list[str] = Field(
        description="What hydration has not stored yet: `detail`, `streams`."
    )
    hydration_queued: bool = Field(
        description="Whether this request queued the on-demand hydration."
    )
    hydration_error: str | None = Field(None, description="The last hydration error.")
    raw_summary: dict[str, Any] | None = Field(
        None, description="Strava's summary JSON as it listed the activity."
    )
    detail: dict[str, Any] | None = Field(
        None, description="Strava's detailed JSON, once hydrated."
    )
    laps: list[dict[str, Any]] | None = Field(None, description="The detail's laps.")
    stream_types: list[str] = Field(description="The types of the stored streams.")


class StreamView(BaseModel):
    """One stored stream, as Strava sent it."""

    type: str = Field(description="The stream type, e.g. heartrate.")
    data: list[Any] = Field(description="The samples.")
    series_type: str | None = Field(None, description="distance or time.")
    original_size: int | None = Field(None, description="Samples before any resampling.")
    resolution: str | None = Field(None, description="low, medium or high.")


class ActivityStreams(BaseModel):
    """An activity's stored streams."""

    activity_id: int = Field(description="Strava's activity id.")
    hydration_status: str = Field(description="As in `GET /activities/{id}`.")
    missing: list[str] = Field(description="What hydration has not stored yet.")
    hydration_queued: bool = Field(
        description="Whether this request queued the on-demand hydration."
    )
    streams: list[StreamView] = Field(description="The stored streams, by type.")


def _listing(athlete_id: int) -> str:
    return f"athletes/{athlete_id}/activities"


def activities_cursor(key: bytes, athlete_id: int, position: Position) -> str:
    """The cursor of the athlete's listing that continues after `position`."""
    micros = None
    if position.start_date is not None:
        micros = (position.start_date - _EPOCH) // timedelta(microseconds=1)
    return encode_cursor(key, _listing(athlete_id), {"d": micros, "i": position.activity_id})


def _position(data: dict[str, Any]) -> Position:
    micros, activity_id = data.get("d"), data.get("i")
    if type(activity_id) is not int or not (micros is None or type(micros) is int):
        raise InvalidRequest(
            "the cursor is malformed",
            reason="cursor",
            fields=[{"name": "cursor", "problem": "the cursor is malformed"}],
        )
    start = None if micros is None else _EPOCH + timedelta(microseconds=micros)
    return Position(start, activity_id)


async def athlete_activities(request: Request) -> Response:
    """An athlete's activities, newest first (start date, then id), a page at a time: pass
    `next_cursor` back as `cursor`. Pages neither repeat nor skip an activity that exists
    throughout, whatever is inserted or deleted between them."""
    query = parse_query(request, ActivitiesQuery)
    web = web_state(request)
    athlete_id: int = request.path_params["athlete_id"]
    if athlete_id > MAX_STRAVA_ID:
        raise unknown_athlete(athlete_id)
    key = cursor_key(web.settings)
    position = None
    if query.cursor is not None:
        position = _position(decode_cursor(key, _listing(athlete_id), query.cursor))
    filters = ActivityFilter(
        after=query.after,
        before=query.before,
        sport_types=query.sport_type,
        workout_type=query.workout_type,
        hydration_statuses=[status.value for status in query.hydration_status],
    )
    page = await run_in_threadpool(_page, web, athlete_id, filters, query.limit, position)
    next_cursor = None
    if page.next_position is not None:
        next_cursor = activities_cursor(key, athlete_id, page.next_position)
    # The rows are our own columns, in ActivitySummary's shape (SUMMARY_COLUMNS): validating
    # them again would cost twice what serialising them does.
    page_json: dict[str, Any] = {"activities": page.rows, "next_cursor": next_cursor}
    return json_response(page_json)


def _page(
    web: WebState,
    athlete_id: int,
    filters: ActivityFilter,
    limit: int,
    position: Position | None,
) -> Page:
    page = list_activities(web.engine, athlete_id, filters, limit, position)
    # An empty page may mean an unknown athlete: only then is the extra look-up made.
    if not page.rows and not athlete_exists(web.engine, athlete_id):
        raise unknown_athlete(athlete_id)
    return page


async def latest_activity(request: Request) -> Response:
    """The athlete's newest activity, as `GET /activities/{id}` shows it (with the same
    on-demand hydration and `wait`)."""
    query = parse_query(request, WaitQuery)
    web = web_state(request)
    athlete_id: int = request.path_params["athlete_id"]
    activity_id = await run_in_threadpool(_latest_id, web, athlete_id)
    view = await _read(web, activity_id, query.wait)
    return json_response(view)


def _latest_id(web: WebState, athlete_id: int) -> int:
    if athlete_id > MAX_STRAVA_ID:
        raise unknown_athlete(athlete_id)
    activity_id = latest_activity_id(web.engine, athlete_id)
    if activity_id is None:
        if not athlete_exists(web.engine, athlete_id):
            raise unknown_athlete(athlete_id)
        raise NotFound("the athlete has no activities", reason="not_found")
    return activity_id


async def get_activity(request: Request) -> Response:
    """One activity: its summary columns, hydration status and missing parts, Strava's raw
    summary and detail, its laps and stream types. When it is not complete its hydration is
    queued at the highest priority (once, however many ask) and the answer is what we have,
    with `hydration_status: pending`; `wait` waits for the hydration instead."""
    query = parse_query(request, WaitQuery)
    view = await _read(web_state(request), request.path_params["activity_id"], query.wait)
    return json_response(view)


async def activity_streams(request: Request) -> Response:
    """An activity's stored streams, with the same on-demand hydration and `wait` as
    `GET /activities/{id}`."""
    query = parse_query(request, WaitQuery)
    web = web_state(request)
    activity_id: int = request.path_params["activity_id"]
    view = await _read(web, activity_id, query.wait)
    streams = await run_in_threadpool(stored_streams, web.engine, activity_id)
    return json_response(
        ActivityStreams(
            activity_id=activity_id,
            hydration_status=view.hydration_status,
            missing=view.missing,
            hydration_queued=view.hydration_queued,
            streams=[
                StreamView(
                    type=stream.type,
                    data=stream.data,
                    series_type=stream.series_type,
                    original_size=stream.original_size,
                    resolution=stream.resolution,
                )
                for stream in streams
            ],
        )
    )


async def _read(web: WebState, activity_id: int, wait: float | None) -> ActivityView:
    if activity_id > MAX_STRAVA_ID:
        raise unknown_activity(activity_id)
    reading = await run_in_threadpool(
        on_demand.read_activity, web.engine, web.dispatcher.send_hydration, activity_id, utcnow()
    )
    if reading is None:
        raise unknown_activity(activity_id)
    stored = reading.stored
    if wait is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not on_demand.settled(stored) and loop.time() < deadline:
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - loop.time())))
            found = await run_in_threadpool(stored_activity, web.engine, activity_id)
            if found is None:  # deleted meanwhile
                raise unknown_activity(activity_id)
            stored = found
    return _view(stored, reading.queued)


def _view(stored: StoredActivity, queued: bool) -> ActivityView:
    row = stored.row
    detail = row.raw_detail
    laps = detail.get("laps") if isinstance(detail, dict) else None
    columns = {name: getattr(row, name) for name in ActivitySummary.model_fields}
    columns["hydration_status"] = on_demand.reader_status(stored)
    return ActivityView(
        **columns,
        missing=on_demand.missing_parts(row),
        hydration_queued=queued,
        hydration_error=row.last_hydrate_error,
        raw_summary=row.raw_summary,
        detail=detail,
        laps=laps if isinstance(laps, list) else None,
        stream_types=stored.stream_types,
    )


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/athletes/{athlete_id:int}/activities",
            athlete_activities,
            method="GET",
            operation=Operation(
                summary="List an athlete's activities, newest first",
                access=Access.READ,
                query=ActivitiesQuery,
                responses={200: ActivitiesPage},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}/activities/latest",
            latest_activity,
            method="GET",
            operation=Operation(
                summary="An athlete's newest activity",
                access=Access.READ,
                query=WaitQuery,
                responses={200: ActivityView},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/activities/{activity_id:int}",
            get_activity,
            method="GET",
            operation=Operation(
                summary="One activity, hydrated on demand",
                access=Access.READ,
                query=WaitQuery,
                responses={200: ActivityView},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/activities/{activity_id:int}/streams",
            activity_streams,
            method="GET",
            operation=Operation(
                summary="An activity's stored streams, hydrated on demand",
                access=Access.READ,
                query=WaitQuery,
                responses={200: ActivityStreams},
                tags=TAGS,
            ),
        ),
    ]
