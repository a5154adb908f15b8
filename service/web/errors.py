"""The one place where exceptions become HTTP error responses.

Every error body is JSON with at least an ``"error"`` key (a human-readable reason); a
rejected webhook request adds ``"reason"`` (a stable word, the key its rejection is counted
under); some add details such as the offending fields. Handlers raise; they never build error
responses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy.exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from service.ingest.athletes import TokenWithoutAthlete
from service.strava.errors import RateLimited, StravaError

log = logging.getLogger(__name__)


class WebError(Exception):
    """An error answered as JSON: ``{"error": message, **details}`` with ``status_code``.

    Parameters:
      message: the reason, safe to show to the caller (no secrets, no request bodies).
      reason: a stable machine-readable word for the problem (e.g. ``content_type``); sent as
        ``"reason"`` and used as the key rejections are counted under.
      details: extra JSON-serialisable keys for the body, e.g. ``fields`` or ``missing``.
    """

    status_code = 500
    # Whether the body names ``reason``; a 404 must look like any other unknown path.
    disclose_reason = True
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.details = details


class InvalidRequest(WebError):
    """The request is malformed or incomplete; sending it again will not help."""

    status_code = 400


class CredentialRequired(WebError):
    """The request shows no credential; a bearer key would be accepted (401). (Strava's
    refusal of our token is service/strava/errors.py `Unauthorized`.)"""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(WebError):
    """The caller proved no right to this resource (e.g. a wrong verify token)."""

    status_code = 403


class UnknownRoute(WebError):
    """Answered as a path that nothing is routed to, whatever is there (e.g. behind a wrong
    secret path segment): the body is Starlette's own 404, the reason is only logged and
    counted. (Strava's own 404 is service/strava/errors.py `NotFound`.)"""

    status_code = 404
    disclose_reason = False


class NotFound(WebError):
    """The route exists but the resource it names (an athlete, an activity) is unknown: the
    body says so (reason ``not_found``), unlike `UnknownRoute`."""

    status_code = 404


def unknown_athlete(athlete_id: int) -> NotFound:
    return NotFound(f"athlete {athlete_id} is unknown", reason="not_found")


def unknown_activity(activity_id: int) -> NotFound:
    return NotFound(f"activity {activity_id} is unknown", reason="not_found")


class Conflict(WebError):
    """The request conflicts with the resource's current state (e.g. a sync job is already
    active); the body names what it conflicts with (reason ``conflict``)."""

    status_code = 409


class ContentTooLarge(WebError):
    """The request body is larger than anything this endpoint accepts."""

    status_code = 413


class UnsupportedMediaType(WebError):
    """The request body is of a type this endpoint does not read."""

    status_code = 415


class UpstreamFailed(WebError):
    """Strava failed or answered something we cannot use; the caller may try again later."""

    status_code = 502


class Unavailable(WebError):
    """A dependency (the database) is down and nothing was committed; try again later."""

    status_code = 503


def error_response(
    status_code: int, message: str, headers: Mapping[str, str] | None = None, **details: Any
) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status_code, headers=headers)


async def _web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    if exc.reason is not None and exc.disclose_reason:
        return error_response(
            exc.status_code, exc.message, exc.headers, reason=exc.reason, **exc.details
        )
    return error_response(exc.status_code, exc.message, exc.headers, **exc.details)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own errors: unknown route (404), wrong method (405).
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def _database_error(request: Request, exc: Exception) -> Response:
    # Nothing was committed, so 503 is honest, and Strava retries the event (docs/strava.md §1.3).
    # str(exc) would include the statement's parameters (encrypted tokens, event fields):
    # log only the driver's own message.
    orig = getattr(exc, "orig", None)
    log.error(
        "database unavailable path=%r error=%s detail=%r",
        request.url.path,
        type(exc).__name__,
        " ".join(str(orig).split()) if orig is not None else "",
    )
    return error_response(503, "database unavailable")


async def _data_error(request: Request, exc: Exception) -> Response:
    # The database refused the data, which says nothing about its being down: answering 503
    # would make a client retry the same data forever, and hide an attack among outages.
    assert isinstance(exc, sqlalchemy.exc.DBAPIError)
    log.warning(
        "database refused the data path=%r error=%s",
        request.url.path,
        type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
    )
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return error_response(409, "the request conflicts with stored data", reason="conflict")
    return error_response(
        400, "the request holds a value the database cannot store", reason="unstorable_value"
    )


async def _strava_error(request: Request, exc: Exception) -> Response:
    # Callers translate the errors they expect; this is the fallback for the others.
    assert isinstance(exc, StravaError)
    log.warning(
        "strava call failed path=%r error=%s status=%s",
        request.url.path,
        type(exc).__name__,
        exc.status_code,
    )
    if isinstance(exc, RateLimited):
        return error_response(503, "Strava rate limit reached, try again later")
    return error_response(502, "Strava request failed")


async def _token_without_athlete(request: Request, exc: Exception) -> Response:
    log.warning("token exchange returned no athlete path=%r", request.url.path)
    return error_response(502, "Strava's token response named no athlete")


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback and re-raises after sending this response.
    return error_response(500, "internal server error")


def exception_handlers() -> dict[Any, ExceptionHandler]:
    """The handlers to give Starlette, which picks the nearest class in an exception's MRO."""
    return {
        WebError: _web_error,
        HTTPException: _http_exception,
        sqlalchemy.exc.DBAPIError: _database_error,
        sqlalchemy.exc.DataError: _data_error,
        sqlalchemy.exc.IntegrityError: _data_error,
        sqlalchemy.exc.TimeoutError: _database_error,
        StravaError: _strava_error,
        TokenWithoutAthlete: _token_without_athlete,
        Exception: _unexpected,
    }
