"""The product API's athletes: the operator's list (`GET /athletes`, admin key), one athlete's
state (`GET /athletes/{id}`) and the product's "disconnect Strava" button
(`POST /athletes/{id}/disconnect`), both for a read key.

The state comes from service/ingest/athlete_status.py, which `strava-ingest athletes` prints
too; disconnecting is service/ingest/disconnect.py, which revokes at Strava before it purges.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.ingest.athlete_status import (
    MAX_PAGE_SIZE,
    AthleteState,
    UnknownAthlete,
    athlete_page,
    athlete_state,
)
from service.ingest.disconnect import disconnect_athlete
from service.models import AthleteStatus
from service.strava.errors import RateLimited, StravaError
from service.strava.quota import QuotaExceeded
from service.web.api_spec import Access, ApiRoute, Operation, json_response, parse_query
from service.web.cursors import cursor_key, decode_cursor, encode_cursor
from service.web.errors import InvalidRequest, Unavailable, UpstreamFailed, unknown_athlete
from service.web.state import web_state

log = logging.getLogger(__name__)

TAGS = ("athletes",)
_LISTING = "athletes"
# Strava ids are stored as BIGINT (service/models.py).
MAX_STRAVA_ID = 2**63 - 1


class AthletesQuery(BaseModel):
    """The query of `GET /athletes`."""

    model_config = ConfigDict(extra="forbid")

    status: list[AthleteStatus] | None = Field(
        None, description="Only athletes in these statuses (repeatable)."
    )
    cursor: Annotated[str | None, Field(description="`next_cursor` of the previous page.")] = None
    limit: Annotated[
        int, Field(ge=1, le=MAX_PAGE_SIZE, description="Athletes per page, at most 200.")
    ] = 50


class AthletesPage(BaseModel):
    """One page of athletes in id order."""

    athletes: list[AthleteState] = Field(description="The athletes of this page.")
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


async def list_athletes(request: Request) -> Response:
    """Every athlete who ever connected, in id order, a page at a time: status (and why a
    reconnect is needed), scopes, activity counts by hydration status, the active or last
    sync job. Athletes connecting meanwhile never shift a page."""
    query = parse_query(request, AthletesQuery)
    web = web_state(request)
    key = cursor_key(web.settings)
    after_id: int | None = None
    if query.cursor is not None:
        after_id = decode_cursor(key, _LISTING, query.cursor).get("after")
        if not isinstance(after_id, int):
            raise InvalidRequest("the cursor is malformed", reason="cursor")
    page = await run_in_threadpool(
        lambda: athlete_page(
            web.engine, after_id=after_id, limit=query.limit, statuses=query.status or ()
        )
    )
    next_cursor = None
    if page.after_id is not None:
        next_cursor = encode_cursor(key, _LISTING, {"after": page.after_id})
    return json_response(AthletesPage(athletes=page.athletes, next_cursor=next_cursor))


async def get_athlete(request: Request) -> Response:
    """One athlete's state; 404 for an athlete who never connected."""
    athlete_id = _athlete_id(request)
    engine = web_state(request).engine
    try:
        state = await run_in_threadpool(athlete_state, engine, athlete_id)
    except UnknownAthlete:
        raise unknown_athlete(athlete_id) from None
    return json_response(state)


async def disconnect(request: Request) -> Response:
    """The product's "disconnect Strava": revoke the athlete's grant at Strava, then delete
    their data as a deauthorization does (the athlete stays, `deauthorized`). Nothing is
    deleted unless Strava confirms the grant is gone; when Strava fails, 502 and nothing
    changed. Disconnecting a deauthorized athlete again answers their state."""
    athlete_id = _athlete_id(request)
    ctx = web_state(request).ingest
    try:
        state = await run_in_threadpool(disconnect_athlete, ctx, athlete_id)
    except UnknownAthlete:
        raise unknown_athlete(athlete_id) from None
    except QuotaExceeded as error:
        raise _busy(error.retry_at) from None
    except RateLimited:
        raise _busy(None) from None
    except StravaError as error:
        log.warning(
            "disconnect not confirmed by Strava athlete_id=%s error=%s status=%s",
            athlete_id,
            type(error).__name__,
            error.status_code,
        )
        raise UpstreamFailed(
            "Strava did not confirm the revocation; nothing was deleted, try again later",
            reason="strava_failed",
        ) from None
    return json_response(state)


def _athlete_id(request: Request) -> int:
    # The path convertor takes any digits; past BIGINT no athlete can exist, and the
    # database must not be the one to say so.
    athlete_id: int = request.path_params["athlete_id"]
    if athlete_id > MAX_STRAVA_ID:
        raise unknown_athlete(athlete_id)
    return athlete_id


def _busy(retry_at: datetime | None) -> Unavailable:
    error = Unavailable(
        "Strava's rate limit is reached; nothing was deleted, try again later",
        reason="rate_limited",
    )
    if retry_at is not None:
        seconds = max(1, int((retry_at - datetime.now(UTC)).total_seconds()) + 1)
        error.headers = {"Retry-After": str(seconds)}
    return error


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/athletes",
            list_athletes,
            method="GET",
            operation=Operation(
                summary="List athletes",
                access=Access.ADMIN,
                query=AthletesQuery,
                responses={200: AthletesPage},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}",
            get_athlete,
            method="GET",
            operation=Operation(
                summary="An athlete's state",
                access=Access.READ,
                responses={200: AthleteState},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}/disconnect",
            disconnect,
            method="POST",
            operation=Operation(
                summary="Disconnect an athlete from Strava",
                access=Access.READ,
                responses={200: AthleteState},
                tags=TAGS,
            ),
        ),
    ]
