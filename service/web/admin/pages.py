"""The operator page's routes, all under /admin, all behind an admin key's login session.

- `GET`/`POST /admin/login`: the login form; a key of ADMIN_API_KEYS sets the session cookie.
- `POST /admin/logout`: ends the session.
- `GET /admin`: the overview: athletes and their syncs (live), quota, subscription, inbox,
  failed and unconfirmed events.
- `GET /admin/athletes/{id}`: one athlete, their sync (live) and a job's log.
- `POST /admin/athletes/{id}/sync`, `.../sync/cancel`: start (incremental or full), cancel.
- `POST /admin/events/{id}/replay`: re-drive one event, as `strava-ingest events replay`.
- `GET /admin/events/{id}`: the event's status as JSON (the page follows a replayed event).
- `GET /admin/sync/events`: `GET /sync/events` for the session (EventSource sends no key).

Without ADMIN_API_KEYS every route answers 403, like the other admin routes. A page asked
for without a session redirects to the login form; a post or a JSON route without one is
403. Posts must carry the session's CSRF token and come from this service's own pages.
Refusals are counted and logged as rejections, like those of the API keys. Pages are
rendered from the templates under service/web/templates/admin/, with a Content-Security-
Policy that lets only the page's own nonce'd script and style run.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from service.config import Settings
from service.ingest import job_log
from service.ingest.athlete_status import UnknownAthlete as NoSuchAthlete
from service.ingest.lifecycle import NotReplayable, find_event, replay_event
from service.ingest.sync_control import SyncRequest, UnknownAthlete, cancel_sync, start_sync
from service.models import SyncStatus, utcnow
from service.web import syncs
from service.web.admin import views
from service.web.admin.forms import read_form, require_same_origin
from service.web.admin.session import COOKIE, AdminSession, SessionKeys, clear_cookie, set_cookie
from service.web.api_keys import key_matches
from service.web.errors import (
    CredentialRequired,
    Forbidden,
    InvalidRequest,
    NotFound,
    WebError,
    unknown_athlete,
)
from service.web.rejections import Endpoint, record_rejection
from service.web.state import WebState, web_state

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
HOME = "/admin"
LOGIN = "/admin/login"
WHAT = "operator page"

# What an action's redirect tells the page to say; the values are filled from the
# redirect's own integer parameters, never from text a request sent.
NOTICES = {
    "sync_started": "Athlete {athlete}: {kind} sync started.",
    "sync_active": "Athlete {athlete} has a sync under way already; nothing was started.",
    "cancelled": "The sync of athlete {athlete} was cancelled.",
    "cancelling": "The sync of athlete {athlete} stops at its next page.",
    "no_active_job": "Athlete {athlete} has no sync under way.",
    "replayed": "Event {event} was sent to the workers again.",
    "replay_relayed": "Event {event} was reset; the broker refused it, so the relay sends it.",
    "not_replayable": "Event {event} is not stored, or is still on its way (the relay's).",
}

Page = Callable[[Request, WebState, AdminSession], Awaitable[Response]]
Action = Callable[[Request, WebState, AdminSession, dict[str, str]], Awaitable[Response]]
Script = Callable[[Request, WebState], Awaitable[Response]]


class AdminPages:
    """The handlers, sharing the templates and the session keys of one app's settings."""

    def __init__(self, settings: Settings) -> None:
        self.keys = SessionKeys(settings)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = lambda moment: f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else ""
        env.filters["number"] = lambda value: f"{value:,}"
        self.templates = Jinja2Templates(env=env)

    # -- rendering -------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        session: AdminSession | None = None,
        status_code: int = 200,
    ) -> Response:
        """A page, with a fresh nonce for its script and style and the headers that keep
        anything else out."""
        nonce = secrets.token_urlsafe(16)
        context = {
            "nonce": nonce,
            "csrf": self.keys.csrf_token(session) if session is not None else None,
            **context,
        }
        response = self.templates.TemplateResponse(request, name, context, status_code)
        response.headers.update(
            {
                "Content-Security-Policy": (
                    f"default-src 'none'; script-src 'nonce-{nonce}'; "
                    f"style-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self'; "
                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                ),
                "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
            }
        )
        return response

    def error_page(
        self, request: Request, error: WebError, session: AdminSession | None = None
    ) -> Response:
        record_rejection(request, WHAT, error)
        return self.render(
            request,
            "admin/error.html",
            {"message": error.message, "reason": error.reason, "status": error.status_code},
            session=session,
            status_code=error.status_code,
        )

    # -- guards ----------------------------------------------------------------------------

    def session_of(self, request: Request) -> AdminSession | None:
        return self.keys.read(request.cookies.get(COOKIE), time.time())

    def page(self, handler: Page) -> Endpoint:
        """A GET page: the login form instead when there is no session."""

        async def endpoint(request: Request) -> Response:
            web = web_state(request)
            if not web.settings.admin_keys:
                return self.error_page(request, _closed())
            session = self.session_of(request)
            if session is None:
                return RedirectResponse(LOGIN, status_code=303)
            try:
                return await handler(request, web, session)
            except WebError as error:
                return self.error_page(request, error, session)

        return endpoint

    def action(self, handler: Action) -> Endpoint:
        """A POST: a session, a same-origin page and the session's CSRF token, or 403."""

        async def endpoint(request: Request) -> Response:
            web = web_state(request)
            session = None
            try:
                if not web.settings.admin_keys:
                    raise _closed()
                session = self.session_of(request)
                if session is None:
                    raise _no_session()
                require_same_origin(request, web.settings)
                form = await read_form(request)
                if not self.keys.csrf_matches(session, form.get("csrf")):
                    raise Forbidden(
                        "the form's CSRF token is missing or not this session's: reload the "
                        "page and try again",
                        reason="csrf",
                    )
                return await handler(request, web, session, form)
            except WebError as error:
                return self.error_page(request, error, session)

        return endpoint

    def json(self, handler: Script) -> Endpoint:
        """A route the page's script calls: 403 JSON without a session."""

        async def endpoint(request: Request) -> Response:
            web = web_state(request)
            try:
                if not web.settings.admin_keys:
                    raise _closed()
                if self.session_of(request) is None:
                    raise _no_session()
            except WebError as error:
                record_rejection(request, WHAT, error)
                raise
            return await handler(request, web)

        return endpoint

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        web = web_state(request)
        if not web.settings.admin_keys:
            return self.error_page(request, _closed())
        if self.session_of(request) is not None:
            return RedirectResponse(HOME, status_code=303)
        return self.render(request, "admin/login.html", {"message": None})

    async def login(self, request: Request) -> Response:
        web = web_state(request)
        try:
            if not web.settings.admin_keys:
                raise _closed()
            require_same_origin(request, web.settings)
            given = (await read_form(request)).get("key", "").strip()
        except WebError as error:
            return self.error_page(request, error)
        try:
            _check_key(given, web.settings.admin_keys)
        except WebError as error:
            record_rejection(request, WHAT, error)
            context = {"message": error.message}
            return self.render(request, "admin/login.html", context, status_code=error.status_code)
        _, value = self.keys.issue(time.time())
        response = RedirectResponse(HOME, status_code=303)
        set_cookie(response, request, value)
        log.info("operator logged in")
        return response

    async def logout(
        self, request: Request, web: WebState, session: AdminSession, form: dict[str, str]
    ) -> Response:
        response = RedirectResponse(LOGIN, status_code=303)
        clear_cookie(response, request)
        return response

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request, web: WebState, session: AdminSession) -> Response:
        after = _int_param(request, "after")
        replayed = _int_param(request, "replayed")
        # Before the reads: the page's stream resumes here (sync_events).
        stream_after = web.progress_fanout.last_id
        data = await run_in_threadpool(
            views.overview, web, after=after, replayed=replayed, now=utcnow()
        )
        context = {
            "view": data,
            "notice": _notice(request),
            "live_rows": after is None,
            "stream_after": stream_after,
        }
        return self.render(request, "admin/overview.html", context, session=session)

    async def athlete(self, request: Request, web: WebState, session: AdminSession) -> Response:
        athlete_id = _athlete_id(request)
        job_id, after = _int_param(request, "job"), _int_param(request, "after")
        stream_after = web.progress_fanout.last_id
        try:
            data = await run_in_threadpool(
                views.athlete_detail, web, athlete_id, job_id=job_id, after=after, now=utcnow()
            )
        except NoSuchAthlete:
            raise unknown_athlete(athlete_id) from None
        except job_log.UnknownJob:
            raise NotFound(
                f"athlete {athlete_id} has no job {job_id}", reason="not_found"
            ) from None
        context = {"view": data, "notice": _notice(request), "stream_after": stream_after}
        return self.render(request, "admin/athlete.html", context, session=session)

    # -- actions ---------------------------------------------------------------------------

    async def start(
        self, request: Request, web: WebState, session: AdminSession, form: dict[str, str]
    ) -> Response:
        athlete_id = _athlete_id(request)
        try:
            kind = SyncRequest(form.get("kind", SyncRequest.INCREMENTAL.value))
        except ValueError:
            raise InvalidRequest("kind must be incremental or full", reason="form") from None

        def begin() -> bool:
            started = start_sync(
                web.engine,
                athlete_id,
                kind,
                utcnow(),
                overlap=timedelta(days=web.settings.reconcile_overlap_days),
                send=web.dispatcher.send_sync,
                publish=syncs.publisher(web),
            )
            return started.created

        try:
            created = await run_in_threadpool(begin)
        except UnknownAthlete:
            raise unknown_athlete(athlete_id) from None
        notice = "sync_started" if created else "sync_active"
        if created:
            log.info("sync started from the operator page athlete_id=%s kind=%s", athlete_id, kind)
        return _back(form, athlete_id, notice=notice, athlete=athlete_id, kind=kind.value)

    async def cancel(
        self, request: Request, web: WebState, session: AdminSession, form: dict[str, str]
    ) -> Response:
        athlete_id = _athlete_id(request)

        def stop() -> str:
            job = cancel_sync(
                web.engine,
                athlete_id,
                "cancelled from the operator page",
                utcnow(),
                publish=syncs.publisher(web),
            )
            if job is None:
                return "no_active_job"
            return "cancelled" if job.status == SyncStatus.CANCELLED else "cancelling"

        try:
            notice = await run_in_threadpool(stop)
        except UnknownAthlete:
            raise unknown_athlete(athlete_id) from None
        return _back(form, athlete_id, notice=notice, athlete=athlete_id)

    async def replay(
        self, request: Request, web: WebState, session: AdminSession, form: dict[str, str]
    ) -> Response:
        event_id: int = request.path_params["event_id"]
        try:
            sent = await run_in_threadpool(
                replay_event, web.engine, event_id, web.dispatcher.send_event, now=utcnow()
            )
        except NotReplayable:
            return _redirect(HOME, "events", notice="not_replayable", event=event_id)
        log.info("event replayed from the operator page inbox_event_id=%s", event_id)
        notice = "replayed" if sent else "replay_relayed"
        return _redirect(HOME, "events", notice=notice, event=event_id, replayed=event_id)

    # -- what the page's script reads ------------------------------------------------------

    async def event_status(self, request: Request, web: WebState) -> Response:
        event_id: int = request.path_params["event_id"]
        row = await run_in_threadpool(find_event, web.engine, event_id)
        if row is None:
            raise NotFound(f"event {event_id} is not stored", reason="not_found")
        return JSONResponse(
            {
                "id": row.id,
                "status": row.status,
                "attempts": row.attempts,
                "reason": row.reason,
                "last_error": row.last_error,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def sync_events(self, request: Request, web: WebState) -> Response:
        """A reconnecting EventSource sends Last-Event-ID; a first connection gives `after`,
        where the stream stood when its page was drawn, so that nothing between the page's
        reading and the stream's start is missed."""
        resume = syncs.resume_id(request.headers.get("last-event-id"), "Last-Event-ID")
        if resume is None:
            resume = syncs.resume_id(request.query_params.get("after"), "after")
        return syncs.operator_stream(web, resume)


def routes(settings: Settings) -> list[BaseRoute]:
    pages = AdminPages(settings)
    return [
        Route(LOGIN, pages.login_form, methods=["GET"]),
        Route(LOGIN, pages.login, methods=["POST"]),
        Route("/admin/logout", pages.action(pages.logout), methods=["POST"]),
        Route(HOME, pages.page(pages.overview), methods=["GET"]),
        Route("/admin/athletes/{athlete_id:int}", pages.page(pages.athlete), methods=["GET"]),
        Route("/admin/athletes/{athlete_id:int}/sync", pages.action(pages.start), methods=["POST"]),
        Route(
            "/admin/athletes/{athlete_id:int}/sync/cancel",
            pages.action(pages.cancel),
            methods=["POST"],
        ),
        Route("/admin/events/{event_id:int}/replay", pages.action(pages.replay), methods=["POST"]),
        Route("/admin/events/{event_id:int}", pages.json(pages.event_status), methods=["GET"]),
        Route("/admin/sync/events", pages.json(pages.sync_events), methods=["GET"]),
    ]


def _check_key(given: str, keys: list[str]) -> None:
    if not given:
        raise CredentialRequired("enter an admin key", reason="api_key_missing")
    if not key_matches(given, keys):
        raise Forbidden("that key is not one of ADMIN_API_KEYS", reason="api_key_wrong")


def _closed() -> Forbidden:
    return Forbidden(
        "the operator page is closed: ADMIN_API_KEYS is not set", reason="api_keys_unset"
    )


def _no_session() -> Forbidden:
    return Forbidden(
        "not logged in, or the session has ended: log in again", reason="admin_session"
    )


def _athlete_id(request: Request) -> int:
    athlete_id: int = request.path_params["athlete_id"]
    return athlete_id


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise InvalidRequest(f"{name} must be a whole number", reason="query")
    return int(value)


def _notice(request: Request) -> str | None:
    template = NOTICES.get(request.query_params.get("notice", ""))
    if template is None:
        return None
    kind = request.query_params.get("kind", "")
    return template.format(
        athlete=_int_param(request, "athlete") or "?",
        event=_int_param(request, "event") or "?",
        kind=kind if kind in {choice.value for choice in SyncRequest} else "",
    )


def _back(form: dict[str, str], athlete_id: int, **params: str | int) -> Response:
    """Back to the page the form was on: the athlete's, or the overview."""
    if form.get("back") == "athlete":
        return _redirect(f"/admin/athletes/{athlete_id}", "", **params)
    return _redirect(HOME, "athletes", **params)


def _redirect(path: str, anchor: str, **params: str | int) -> Response:
    url = f"{path}?{urlencode(params)}" + (f"#{anchor}" if anchor else "")
    return RedirectResponse(url, status_code=303)
