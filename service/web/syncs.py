"""The product API's sync routes: start, cancel and read an athlete's sync, and watch it live.

- `POST /athletes/{id}/sync` (read key) starts an incremental or full sync: 202 with the
  state; 409 (`conflict`) with the active job when one runs.
- `POST /athletes/{id}/sync/cancel` (read key): 202 while a worker finishes its page, 200
  once cancelled; 404 when nothing is active.
- `GET /athletes/{id}/sync` (read key): the state (service/ingest/sync_status.py).
- `GET /athletes/{id}/sync/events` (read key): Server-Sent Events, the same state on every
  change, each with its id; `Last-Event-ID` resumes after it; heartbeat comments while
  quiet; the stream ends after the state whose phase is `done`.
- `GET /sync/events` (admin key): every athlete's changes, never ending by itself.

The streams read only what this process's listener fans out (service/web/progress_fanout.py),
plus one read when a stream starts; they never call Strava.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.ingest.progress import EVENT_ID, ProgressEvent, id_key
from service.ingest.sync_control import SyncRequest, UnknownAthlete, cancel_sync, start_sync
from service.ingest.sync_status import SyncState, announce_sync_state, read_sync_state
from service.models import Athlete, SyncJob, SyncStatus, utcnow
from service.web.api_spec import Access, ApiError, ApiRoute, Operation, json_response, parse_body
from service.web.errors import Conflict, InvalidRequest, NotFound, unknown_athlete
from service.web.progress_fanout import Subscriber
from service.web.state import WebState, web_state

TAGS = ("syncs",)
EVENT_STREAM = "text/event-stream"
# The SSE event name of a state.
EVENT_NAME = "sync"


class SyncBody(BaseModel):
    """What to sync."""

    model_config = ConfigDict(extra="forbid")

    kind: SyncRequest = Field(
        default=SyncRequest.INCREMENTAL,
        description="incremental: continue the backfill, or reconcile the recent weeks once "
        "the history is listed; full: list everything again and remove what Strava dropped.",
    )


def _athlete_id(request: Request) -> int:
    athlete_id: int = request.path_params["athlete_id"]
    return athlete_id


def publisher(web: WebState) -> Callable[[int], object]:
    """Publishes an athlete's sync state to the progress streams after a start or cancel."""

    def publish(athlete_id: int) -> None:
        progress = web.progress_fanout.progress_log
        announce_sync_state(web.engine, web.quota, progress, athlete_id, utcnow)

    return publish


async def start(request: Request) -> Response:
    """Start the athlete's sync; 409 with the active job when one runs already."""
    web = web_state(request)
    athlete_id = _athlete_id(request)
    body = await parse_body(request, SyncBody)

    def begin() -> tuple[bool, SyncState]:
        started = start_sync(
            web.engine,
            athlete_id,
            body.kind,
            utcnow(),
            overlap=timedelta(days=web.settings.reconcile_overlap_days),
            send=web.dispatcher.send_sync,
            publish=publisher(web),
        )
        return started.created, read_sync_state(web.engine, web.quota, athlete_id, utcnow())

    try:
        created, state = await run_in_threadpool(begin)
    except UnknownAthlete:
        raise unknown_athlete(athlete_id) from None
    if not created:
        job = state.job.model_dump(mode="json") if state.job is not None else None
        raise Conflict(f"athlete {athlete_id} has an active sync job", reason="conflict", job=job)
    return json_response(state, 202)


async def cancel(request: Request) -> Response:
    """Cancel the athlete's active sync; a running job stops at its next page boundary
    (202 until then, 200 once cancelled)."""
    web = web_state(request)
    athlete_id = _athlete_id(request)

    def stop() -> tuple[SyncJob | None, SyncState]:
        job = cancel_sync(
            web.engine, athlete_id, "cancelled through the API", utcnow(), publish=publisher(web)
        )
        return job, read_sync_state(web.engine, web.quota, athlete_id, utcnow())

    try:
        job, state = await run_in_threadpool(stop)
    except UnknownAthlete:
        raise unknown_athlete(athlete_id) from None
    if job is None:
        raise NotFound(f"athlete {athlete_id} has no active sync job", reason="no_active_job")
    return json_response(state, 200 if job.status == SyncStatus.CANCELLED else 202)


async def show(request: Request) -> Response:
    """The athlete's sync: the latest job, its phase, counters, rate-limit state and
    estimate."""
    web = web_state(request)
    athlete_id = _athlete_id(request)
    state = await run_in_threadpool(_state_of_known, web, athlete_id)
    return json_response(state)


async def athlete_events(request: Request) -> Response:
    """Server-Sent Events: the athlete's sync state on every change (event `sync`, the same
    object as GET /athletes/{id}/sync), each with an id; send `Last-Event-ID` to resume
    after it. Heartbeat comments while quiet; the stream ends after the `done` state."""
    web = web_state(request)
    athlete_id = _athlete_id(request)
    resume = _last_event_id(request)
    fanout = web.progress_fanout
    # Subscribed before anything is read: what happens meanwhile waits in its queue.
    subscriber = fanout.subscribe(athlete_id)
    try:
        opening = await _opening(web, subscriber, athlete_id, resume)
    except BaseException:
        fanout.unsubscribe(subscriber)
        raise
    return _stream(web, _athlete_stream(web, subscriber, opening))


@dataclass(frozen=True)
class Opening:
    """How an athlete's stream begins: the events to send first, the id after which live
    events follow, and whether the first events already end it. `floor`: live events whose
    state was read at or before it are older than what was sent, and are skipped."""

    first: list[ServerSentEvent | bytes]
    after: str
    ended: bool
    floor: datetime | None = None


async def _opening(
    web: WebState, subscriber: Subscriber, athlete_id: int, resume: str | None
) -> Opening:
    """The events that start the stream, all read before the answer starts (so that a
    failure is an error answer, not a broken stream): what followed `resume`; else this
    process's latest event of the athlete while it is not the end; else the state read
    from the database now (which also answers 404 for an unknown athlete)."""
    fanout = web.progress_fanout
    start = fanout.last_id
    caught_up = await _catch_up(web, subscriber, resume, start)
    if caught_up:
        ends = next((i for i, e in enumerate(caught_up) if e.ends_sync), None)
        if ends is not None:
            caught_up = caught_up[: ends + 1]
        return Opening([_sse(e) for e in caught_up], start, ends is not None)
    cached = fanout.latest.get(athlete_id)
    if resume is None and cached is not None and not cached.ends_sync:
        return Opening([_sse(cached)], cached.id, ended=False)
    state = await run_in_threadpool(_state_of_known, web, athlete_id)
    sent = ServerSentEvent(data=state.model_dump_json(), id=start, event=EVENT_NAME)
    return Opening([sent], start, state.phase == "done", floor=state.at)


async def all_events(request: Request) -> Response:
    """Server-Sent Events for operators: every athlete's sync state on every change, each
    with an id; `Last-Event-ID` resumes. Starts with the states of the syncs under way."""
    return operator_stream(web_state(request), _last_event_id(request))


def operator_stream(web: WebState, resume: str | None) -> Response:
    """The operator's stream: what followed `resume`, else the syncs under way; then live."""
    return _stream(web, _operator_stream(web, resume))


def _stream(web: WebState, events: AsyncIterator[ServerSentEvent | bytes]) -> Response:
    return EventSourceResponse(
        _counted(web, events),
        ping=web.settings.sync_events_heartbeat_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _counted(
    web: WebState, events: AsyncIterator[ServerSentEvent | bytes]
) -> AsyncIterator[ServerSentEvent | bytes]:
    # The open streams of this process, for strava_ingest_sse_subscribers.
    web.metrics.sse_subscribers_changed(+1)
    try:
        async for event in events:
            yield event
    finally:
        web.metrics.sse_subscribers_changed(-1)


async def _athlete_stream(
    web: WebState, subscriber: Subscriber, opening: Opening
) -> AsyncIterator[ServerSentEvent | bytes]:
    try:
        for event in opening.first:
            yield event
        if opening.ended:
            return
        floor = opening.floor
        async for batch in _live(subscriber, opening.after):
            if floor is not None:
                batch = [e for e in batch if datetime.fromisoformat(e.state["at"]) > floor]
            end = next((i for i, e in enumerate(batch) if e.ends_sync), None)
            if end is not None:
                batch = batch[: end + 1]
            if batch:
                yield _joined(batch)
            if end is not None:
                return
    finally:
        web.progress_fanout.unsubscribe(subscriber)


async def _operator_stream(
    web: WebState, resume: str | None
) -> AsyncIterator[ServerSentEvent | bytes]:
    fanout = web.progress_fanout
    subscriber = fanout.subscribe(None)
    try:
        start = fanout.last_id
        caught_up = await _catch_up(web, subscriber, resume, start)
        if caught_up is None:
            # The syncs under way, as this process last heard of them.
            caught_up = sorted(
                (e for e in fanout.latest.values() if not e.ends_sync), key=lambda e: id_key(e.id)
            )
        for event in caught_up:
            yield _sse(event)
        async for batch in _live(subscriber, start):
            yield _joined(batch)
    finally:
        fanout.unsubscribe(subscriber)


async def _catch_up(
    web: WebState, subscriber: Subscriber, resume: str | None, start: str
) -> list[ProgressEvent] | None:
    """The subscriber's events after `resume` up to `start` (where live delivery begins);
    None when there is no id to resume from, or the log no longer holds what followed it
    (then the stream starts from the current state, as a new one does)."""
    if resume is None or id_key(resume) >= id_key(start):
        return None if resume is None else []
    found, complete = await run_in_threadpool(web.progress_fanout.progress_log.after, resume, start)
    if not complete:
        return None
    return [event for event in found if subscriber.wants(event)]


async def _live(subscriber: Subscriber, after: str) -> AsyncIterator[list[ProgressEvent]]:
    """The subscriber's events after `after`, a batch at a time: what arrived together is
    sent together, one write for a burst rather than one per event."""
    floor = id_key(after)
    while not subscriber.closed:
        batch = [e for e in await subscriber.next_batch() if id_key(e.id) > floor]
        if batch:
            yield batch


def _joined(events: list[ProgressEvent]) -> bytes:
    return b"".join(_sse(event) for event in events)


def _sse(event: ProgressEvent) -> bytes:
    return _encoded(event.id, event.data)


@lru_cache(maxsize=1024)
def _encoded(event_id: str, data: str) -> bytes:
    # One event goes to every subscriber of the process: encoded once.
    return ServerSentEvent(data=data, id=event_id, event=EVENT_NAME).encode()


def _last_event_id(request: Request) -> str | None:
    return resume_id(request.headers.get("last-event-id"), "Last-Event-ID")


def resume_id(value: str | None, name: str) -> str | None:
    """An event id to resume a stream after (None when `value` is blank); InvalidRequest
    naming `name` for anything that is not an id of the stream."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not EVENT_ID.match(value):
        raise InvalidRequest(
            f"{name} must be an event id of this stream, such as 1733000000000-0",
            reason="last_event_id",
        )
    return value


def _state_of_known(web: WebState, athlete_id: int) -> SyncState:
    with Session(web.engine) as session:
        if session.get(Athlete, athlete_id) is None:
            raise unknown_athlete(athlete_id)
    return read_sync_state(web.engine, web.quota, athlete_id, utcnow())


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/athletes/{athlete_id:int}/sync",
            start,
            method="POST",
            operation=Operation(
                summary="Start the athlete's sync (incremental or full)",
                access=Access.READ,
                body=SyncBody,
                # 409: another job is active; the body names it (`job`).
                responses={202: SyncState, 409: ApiError},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}/sync/cancel",
            cancel,
            method="POST",
            operation=Operation(
                summary="Cancel the athlete's active sync",
                access=Access.READ,
                responses={200: SyncState, 202: SyncState},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}/sync",
            show,
            method="GET",
            operation=Operation(
                summary="The athlete's sync: job, phase, counters, rate limit, estimate",
                access=Access.READ,
                responses={200: SyncState},
                tags=TAGS,
            ),
        ),
        ApiRoute(
            "/athletes/{athlete_id:int}/sync/events",
            athlete_events,
            method="GET",
            operation=Operation(
                summary="The athlete's sync state on every change (Server-Sent Events)",
                access=Access.READ,
                responses={200: SyncState},
                tags=TAGS,
                media_type=EVENT_STREAM,
            ),
        ),
        ApiRoute(
            "/sync/events",
            all_events,
            method="GET",
            operation=Operation(
                summary="Every athlete's sync state on every change (Server-Sent Events)",
                access=Access.ADMIN,
                responses={200: SyncState},
                tags=TAGS,
                media_type=EVENT_STREAM,
            ),
        ),
    ]
