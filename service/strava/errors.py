"""What can go wrong when talking to Strava, as a small tree of exceptions.

::

    StravaError                 anything from this client; carries the status, fault and body
    ├── RateLimited             429: wait for the exhausted window to reset
    ├── Unauthorized            401 (or 403 with an authorization fault): bad token or scope
    ├── NotFound                404: deleted, or not visible to this token
    ├── BadRequest              any other 4xx: our request is wrong; retrying will not help
    ├── Transient               5xx, timeout, connection error: retrying may help
    └── UnexpectedResponse      a status or body this client cannot interpret

Messages never contain request URLs, headers or bodies: Strava takes the client secret in the
query of some calls (docs/strava.md §1.1) and tokens in headers, and exception messages end up in
logs. What Strava answered is on the exception (``fault``, ``body``) for callers that need it.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from service.strava.ratelimit import EMPTY_SNAPSHOT, RateLimitSnapshot, Window, exhausted_window
from service.strava.schemas import Fault


class StravaError(Exception):
    """Base of every error raised by the Strava client.

    Parameters:
        message: a human-readable summary, free of secrets.
        status_code: Strava's HTTP status; ``None`` when no response arrived.
        fault: Strava's error envelope, when the body was one (docs/strava.md §4.5).
        body: the response body as text, kept even when it is not a fault (or empty).
        rate_limit: the rate-limit headers of the failed response (empty when there were none).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        fault: Fault | None = None,
        body: str = "",
        rate_limit: RateLimitSnapshot = EMPTY_SNAPSHOT,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.fault = fault
        self.body = body
        self.rate_limit = rate_limit


class RateLimited(StravaError):
    """Strava refused the call because a quota window is exhausted (docs/strava.md §2.3).

    ``window`` says which one, from the response's own headers: ``"daily"`` waits until 00:00
    UTC, ``"short"`` until the next quarter hour. Strava sends no ``Retry-After``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        fault: Fault | None = None,
        body: str = "",
        rate_limit: RateLimitSnapshot = EMPTY_SNAPSHOT,
    ) -> None:
        super().__init__(
            message, status_code=status_code, fault=fault, body=body, rate_limit=rate_limit
        )
        self.window: Window = exhausted_window(rate_limit)


class Unauthorized(StravaError):
    """The token is invalid, expired or revoked, or lacks a scope (docs/strava.md §3.3)."""


class NotFound(StravaError):
    """The object does not exist or is not visible to this token; the body may be empty."""


class BadRequest(StravaError):
    """A 4xx other than 401/404/429: the request itself is wrong (see ``fault``)."""


class Transient(StravaError):
    """A 5xx, a timeout or a connection failure: the same request may succeed later."""


class UnexpectedResponse(StravaError):
    """Strava answered with a status or a body shape this client does not understand."""


def parse_fault(body: str) -> Fault | None:
    """Strava's fault envelope in ``body``, or ``None`` if the body is anything else."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or not ({"message", "errors"} & decoded.keys()):
        return None
    try:
        return Fault.model_validate(decoded)
    except ValidationError:
        return None


def error_for_response(
    status_code: int, body: str, rate_limit: RateLimitSnapshot, *, operation: str
) -> StravaError:
    """The exception for a non-2xx response: the one place statuses are mapped to errors."""
    fault = parse_fault(body)
    error_type = _error_type(status_code, fault)
    return error_type(
        _describe(status_code, fault, operation),
        status_code=status_code,
        fault=fault,
        body=body,
        rate_limit=rate_limit,
    )


def _error_type(status_code: int, fault: Fault | None) -> type[StravaError]:
    if status_code == 429:
        return RateLimited
    if status_code == 401:
        return Unauthorized
    if status_code == 403:
        # Before 2017 Strava answered an exhausted quota with 403 and the same fault as today's
        # 429 (docs/strava.md §2.3); an authorization fault on 403 means a token problem.
        if fault is not None and _is_rate_limit_fault(fault):
            return RateLimited
        if fault is not None and _is_authorization_fault(fault):
            return Unauthorized
        return BadRequest
    if status_code == 404:
        return NotFound
    if 400 <= status_code < 500:
        return BadRequest
    if 500 <= status_code < 600:
        return Transient
    return UnexpectedResponse


def _is_rate_limit_fault(fault: Fault) -> bool:
    return any(error.code == "exceeded" and error.field == "rate limit" for error in fault.errors)


def _is_authorization_fault(fault: Fault) -> bool:
    # "Authorization Error" is the message of every documented token/scope fault (§3.3).
    return fault.message == "Authorization Error" or any(
        error.field == "access_token" or error.resource == "AccessToken" for error in fault.errors
    )


def _describe(status_code: int, fault: Fault | None, operation: str) -> str:
    summary = f"Strava answered {status_code} to {operation}"
    if fault is None:
        return summary
    details = ", ".join(
        f"{error.resource or '?'}.{error.field or '?'} {error.code or '?'}"
        for error in fault.errors
    )
    message = fault.message or "fault"
    return f"{summary}: {message} ({details})" if details else f"{summary}: {message}"
