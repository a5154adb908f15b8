"""Connecting an athlete: send them to Strava's consent page, then take the code back.

The callback runs in three steps: read what Strava's redirect says, exchange the code, store
the athlete. Checks on the redirect belong to the first step, work that follows a connection
belongs after the last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from service.config import Settings
from service.ingest.athletes import connect_athlete
from service.ingest.crypto import TokenCipher
from service.models import utcnow
from service.strava.client import AsyncStravaClient
from service.strava.errors import BadRequest, StravaError, Transient, Unauthorized
from service.strava.schemas import TokenResponse
from service.web.errors import InvalidRequest, UpstreamFailed

log = logging.getLogger(__name__)

CALLBACK_ROUTE = "strava_oauth_callback"


async def connect(request: Request) -> RedirectResponse:
    """Redirect the athlete to Strava's authorization page (strava-api.md §3.1)."""
    settings: Settings = request.app.state.settings
    query = urlencode(
        {
            "client_id": settings.strava_client_id,
            "redirect_uri": callback_url(request, settings),
            "response_type": "code",
            "approval_prompt": "auto",
            "scope": settings.oauth_scopes,
        }
    )
    return RedirectResponse(f"{settings.strava_oauth_url}/authorize?{query}", status_code=302)


def callback_url(request: Request, settings: Settings) -> str:
    # Behind a proxy the request's own URL is the internal one; PUBLIC_URL says what Strava
    # must send the athlete back to (and it must lie in the app's callback domain, §3.1).
    if settings.public_url is not None:
        return f"{settings.public_url}/auth/strava/callback"
    return str(request.url_for(CALLBACK_ROUTE))


@dataclass(frozen=True)
class Authorization:
    """What Strava's redirect carried: a one-time code and the scopes the athlete accepted."""

    code: str
    scopes: str


async def callback(request: Request) -> JSONResponse:
    """Exchange the code Strava's redirect carries and store the connected athlete."""
    authorization = read_redirect(request)
    token = await exchange(request.app.state.strava, authorization.code)
    engine: Engine = request.app.state.engine
    cipher: TokenCipher = request.app.state.cipher
    athlete = await run_in_threadpool(
        connect_athlete, engine, cipher, token, authorization.scopes, utcnow()
    )
    return JSONResponse(
        {
            "athlete_id": athlete.id,
            "scopes": [scope for scope in athlete.scopes.split(",") if scope],
            "status": athlete.status,
        }
    )


def read_redirect(request: Request) -> Authorization:
    """The code and granted scopes, or InvalidRequest when the athlete declined."""
    params = request.query_params
    if "error" in params:
        # `error=access_denied` when the athlete declines (strava-api.md §3.1).
        reason = params["error"][:64]
        log.info("oauth callback declined reason=%s", reason)
        raise InvalidRequest("authorization was not granted", reason=reason)
    code = params.get("code")
    if not code:
        log.warning("oauth callback rejected reason=missing_code")
        raise InvalidRequest("missing query parameter: code", missing=["code"])
    # The redirect's `scope` lists what the athlete accepted, which may be less than asked
    # for, and may include `read` unasked (§3.1).
    return Authorization(code=code, scopes=params.get("scope", ""))


async def exchange(strava: AsyncStravaClient, code: str) -> TokenResponse:
    """Trade the one-time code for tokens (strava-api.md §3.2); errors say why, never the code."""
    try:
        result = await strava.exchange_code(code)
    except (BadRequest, Unauthorized) as error:
        faults = _faults(error)
        log.warning("oauth code rejected status=%s faults=%s", error.status_code, faults)
        raise InvalidRequest("Strava rejected the authorization code", faults=faults) from None
    except Transient as error:
        log.warning("oauth exchange failed status=%s", error.status_code)
        raise UpstreamFailed("Strava is unavailable, try connecting again") from None
    return result.data


def _faults(error: StravaError) -> list[dict[str, Any]]:
    # e.g. [{"resource": "RequestToken", "field": "code", "code": "invalid"}] (§3.3).
    if error.fault is None:
        return []
    return [
        {"resource": item.resource, "field": item.field, "code": item.code}
        for item in error.fault.errors
    ]


def routes() -> list[Route]:
    return [
        Route("/auth/strava/connect", connect, methods=["GET"]),
        Route("/auth/strava/callback", callback, methods=["GET"], name=CALLBACK_ROUTE),
    ]
