"""Connecting an athlete: send them to Strava's consent page, then take the code back.

`/auth/strava/connect` signs a `state` (HMAC-SHA256 with a key derived from TOKEN_KEY: a
random nonce, the time, and an optional return URL from the allow-list) and redirects to
Strava, which echoes `state` back (docs/strava.md §3.1). The callback runs in steps: read what
the redirect says (a denial stops here), check the state (signature, age) and spend its nonce
(a replayed callback stops here), exchange the code (§3.2), store the athlete with the scopes
the redirect reports, then start the athlete's backfill. Nothing is stored for a callback
that fails any step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.config import Settings
from service.db import session_scope
from service.ingest.athletes import connect_athlete
from service.ingest.crypto import TokenCipher
from service.ingest.sync import start_job
from service.messaging import Dispatcher
from service.models import OAuthState, SyncKind, utcnow
from service.strava.client import AsyncStravaClient
from service.strava.errors import BadRequest, StravaError, Transient, Unauthorized
from service.strava.schemas import TokenResponse
from service.web.errors import InvalidRequest, UpstreamFailed

log = logging.getLogger(__name__)

CALLBACK_ROUTE = "strava_oauth_callback"


# -- the signed state ---------------------------------------------------------------------------


class InvalidState(Exception):
    """The `state` is missing, forged, or too old."""


@dataclass(frozen=True)
class StateClaims:
    nonce: str
    issued_at: int
    return_to: str | None


def state_key(settings: Settings) -> bytes:
    """A key for signing states, derived from the first TOKEN_KEY so that no new secret is
    needed; the derivation keeps it distinct from the Fernet key itself."""
    token_key = settings.token_key.get_secret_value().split(",")[0].strip()
    return hashlib.sha256(b"strava-ingest oauth state\0" + token_key.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(key: bytes, claims: StateClaims) -> str:
    payload = _b64(
        json.dumps(
            {"n": claims.nonce, "t": claims.issued_at, "r": claims.return_to},
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def verify_state(key: bytes, state: str, now: datetime, max_age: timedelta) -> StateClaims:
    payload, _, signature = state.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not payload or not hmac.compare_digest(signature, expected):
        raise InvalidState("the state is not one this service signed")
    try:
        data = json.loads(_unb64(payload))
        claims = StateClaims(str(data["n"]), int(data["t"]), data.get("r"))
    except (ValueError, KeyError, TypeError):
        raise InvalidState("the state is malformed") from None
    age = now.timestamp() - claims.issued_at
    if age > max_age.total_seconds() or age < -60:
        raise InvalidState("the state has expired: start connecting again")
    return claims


def return_allowed(url: str, allowed: list[str]) -> bool:
    """Whether `url` starts with one of the allow-listed prefixes, on a whole scheme and
    host (no `https://app.example.com.evil.net` sneaking past `https://app.example.com`)."""
    target = urlsplit(url)
    if target.scheme not in ("http", "https") or not target.netloc:
        return False
    for prefix in allowed:
        base = urlsplit(prefix)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc) and target.path.startswith(
            base.path
        ):
            return True
    return False


def _allow_list(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.oauth_return_urls.split(",") if u.strip()]


# -- routes ------------------------------------------------------------------------------------


async def connect(request: Request) -> RedirectResponse:
    """Redirect the athlete to Strava's authorization page (docs/strava.md §3.1)."""
    settings: Settings = request.app.state.settings
    return_to = request.query_params.get("return_to") or None
    if return_to is not None and not return_allowed(return_to, _allow_list(settings)):
        log.warning("oauth connect rejected reason=return_to_not_allowed")
        raise InvalidRequest("return_to is not an allowed return URL", reason="return_to")
    claims = StateClaims(secrets.token_urlsafe(16), int(utcnow().timestamp()), return_to)
    query = urlencode(
        {
            "client_id": settings.strava_client_id,
            "redirect_uri": callback_url(request, settings),
            "response_type": "code",
            "approval_prompt": "auto",
            "scope": settings.oauth_scopes,
            "state": sign_state(state_key(settings), claims),
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
    """What Strava's redirect carried: a one-time code, the scopes the athlete accepted,
    and our state."""

    code: str
    scopes: str
    state: str


async def callback(request: Request) -> Response:
    """Check the redirect, exchange the code, store the athlete, start the backfill."""
    settings: Settings = request.app.state.settings
    authorization = read_redirect(request)
    now = utcnow()
    claims = check_state(settings, authorization.state, now)
    engine: Engine = request.app.state.engine
    await run_in_threadpool(spend_nonce, engine, claims, settings, now)
    token = await exchange(request.app.state.strava, authorization.code)
    cipher: TokenCipher = request.app.state.cipher
    athlete = await run_in_threadpool(
        connect_athlete, engine, cipher, token, authorization.scopes, now
    )
    started = await run_in_threadpool(start_job, engine, athlete.id, SyncKind.BACKFILL, now)
    if started.created and started.job.id is not None:
        dispatcher: Dispatcher = request.app.state.dispatcher
        await run_in_threadpool(dispatcher.send_sync, started.job.id)
    body = {
        "athlete_id": athlete.id,
        "scopes": [scope for scope in athlete.scopes.split(",") if scope],
        "status": athlete.status,
        "sync_job_id": started.job.id,
    }
    if claims.return_to is not None:
        separator = "&" if "?" in claims.return_to else "?"
        query = urlencode({"athlete_id": athlete.id, "status": athlete.status})
        return RedirectResponse(f"{claims.return_to}{separator}{query}", status_code=303)
    return JSONResponse(body)


def read_redirect(request: Request) -> Authorization:
    """The code, granted scopes and state, or InvalidRequest when the athlete declined."""
    params = request.query_params
    if "error" in params:
        # `error=access_denied` when the athlete declines (docs/strava.md §3.1).
        reason = params["error"][:64]
        log.info("oauth callback declined reason=%s", reason)
        raise InvalidRequest("authorization was not granted", reason=reason)
    code = params.get("code")
    if not code:
        log.warning("oauth callback rejected reason=missing_code")
        raise InvalidRequest("missing query parameter: code", missing=["code"])
    # The redirect's `scope` lists what the athlete accepted, which may be less than asked
    # for, and may include `read` unasked (§3.1).
    return Authorization(code=code, scopes=params.get("scope", ""), state=params.get("state", ""))


def check_state(settings: Settings, state: str, now: datetime) -> StateClaims:
    try:
        return verify_state(
            state_key(settings), state, now, timedelta(seconds=settings.oauth_state_seconds)
        )
    except InvalidState as error:
        log.warning("oauth callback rejected reason=state detail=%s", error)
        raise InvalidRequest(
            f"invalid authorization state ({error}); start again at /auth/strava/connect",
            reason="state",
        ) from None


def spend_nonce(engine: Engine, claims: StateClaims, settings: Settings, now: datetime) -> None:
    """Record the state as used; a second callback with it is a replay."""
    expires = datetime.fromtimestamp(claims.issued_at, now.tzinfo) + timedelta(
        seconds=settings.oauth_state_seconds
    )
    try:
        with session_scope(engine) as session:
            session.add(OAuthState(nonce=claims.nonce, expires_at=expires))
    except IntegrityError:
        log.warning("oauth callback rejected reason=replayed")
        raise InvalidRequest(
            "this authorization was already used; start again at /auth/strava/connect",
            reason="replayed",
        ) from None


async def exchange(strava: AsyncStravaClient, code: str) -> TokenResponse:
    """Trade the one-time code for tokens (docs/strava.md §3.2); errors say why, never the code."""
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
