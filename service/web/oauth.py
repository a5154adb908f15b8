"""Connecting an athlete: send them to Strava's consent page, then take the code back.

`/auth/strava/connect` signs a `state` (HMAC-SHA256 with a key derived from
STRAVA_CLIENT_SECRET: a random nonce, the time, and an optional return URL from the
allow-list) and redirects to Strava, which echoes `state` back (docs/strava.md §3.1). The
callback runs in steps: read what the redirect says (a denial stops here), check the state
(format, signature, age), check the granted scopes (no permission to read activities stops
here, before the code is exchanged), spend the state's nonce (a replayed callback stops here),
exchange the code (§3.2), store the athlete, then start the athlete's backfill. Nothing is
stored for a callback that fails any step.

The state is bound to the browser that asked for it, so that a callback URL someone else
started (and authorized as their own athlete) cannot be completed in a victim's browser
(login CSRF): `/auth/strava/connect` sets a random secret in a cookie and signs the secret's
SHA-256 into the state; the callback refuses (400 `state_browser`, before the nonce is spent,
so the genuine browser can still finish) unless that cookie is present and hashes to the
signed value, and clears it once the nonce is spent. The cookie is HttpOnly, SameSite=Lax
(Strava's redirect back is a top-level GET, which Lax lets through and Strict would not),
Secure when the callback URL is https, limited to the callback's path, and lives as long as
the state. It is named after the state's nonce (`strava_connect_<nonce>`): one cookie per
connect in flight, so several tabs connecting at once each finish with their own. The
browser must open `/auth/strava/connect` on the host of PUBLIC_URL, which the callback is on.

The query parameters the callback appends to `return_to` (athlete_id, status) are not signed:
anyone can type them, so an app must not link its own signed-in user to an athlete on their
word alone (it can ask this service or Strava who the athlete is).

Every query parameter of both routes comes from the athlete's browser, so from whoever sent
them the link: each is bounded and checked for shape before use, and a bad one gets a 400
JSON body naming it (never a 5xx).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.config import Settings, oauth_base_url
from service.db import session_scope
from service.ingest.athletes import connect_athlete
from service.ingest.sync import start_job
from service.ingest.sync_status import announce_sync_state
from service.log_ids import add_log_ids
from service.models import OAuthState, SyncKind, utcnow
from service.strava.client import AsyncStravaClient
from service.strava.errors import BadRequest, StravaError, Transient, Unauthorized
from service.strava.schemas import TokenResponse
from service.web.errors import InvalidRequest, UpstreamFailed
from service.web.state import web_state

log = logging.getLogger(__name__)

CALLBACK_PATH = "/auth/strava/callback"
CONNECT_PATH = "/auth/strava/connect"

# Longer values are refused before any parsing. A state holds a return URL of at most
# MAX_RETURN_TO characters (JSON-quoted at most twice over, then base64) and a signature.
MAX_RETURN_TO = 1024
MAX_STATE = 4096
MAX_CODE = 256
MAX_SCOPE = 512
# How much of a denial's `error` text is logged and echoed.
MAX_ERROR = 64


# -- the signed state ---------------------------------------------------------------------------


class InvalidState(Exception):
    """The `state` is missing, malformed, forged, or too old."""


@dataclass(frozen=True)
class StateClaims:
    nonce: str
    issued_at: int
    return_to: str | None
    # SHA-256 (unpadded url-safe base64) of the secret in the browser's connect cookie.
    browser: str


def state_key(settings: Settings) -> bytes:
    """The key states are signed with: HKDF of STRAVA_CLIENT_SECRET, so that it stays the same
    when TOKEN_KEY rotates (a state issued just before a rotation still verifies after it),
    and is distinct from the secret itself."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"strava-ingest oauth state v1",
    ).derive(settings.strava_client_secret.get_secret_value().encode())


# Two runs of unpadded url-safe base64 (payload, HMAC-SHA256 signature), ASCII only.
_STATE_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", re.ASCII)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def sign_state(key: bytes, claims: StateClaims) -> str:
    payload = _b64(
        json.dumps(
            {"n": claims.nonce, "t": claims.issued_at, "r": claims.return_to, "b": claims.browser},
            separators=(",", ":"),
        ).encode()
    )
    return f"{payload}.{_signature(key, payload)}"


def verify_state(key: bytes, state: str, now: datetime, max_age: timedelta) -> StateClaims:
    # The shape is checked first: compare_digest refuses non-ASCII text, and nothing longer
    # than a state we could have signed deserves an HMAC.
    if not state:
        raise InvalidState("the state is missing")
    if len(state) > MAX_STATE or not _STATE_SHAPE.fullmatch(state):
        raise InvalidState("the state is malformed")
    payload, _, signature = state.partition(".")
    if not hmac.compare_digest(signature, _signature(key, payload)):
        raise InvalidState("the state is not one this service signed")
    try:
        data = json.loads(_unb64(payload))
        nonce, issued_at, return_to, browser = data["n"], data["t"], data["r"], data["b"]
    except (ValueError, KeyError, TypeError):
        raise InvalidState("the state is malformed") from None
    if not (
        isinstance(nonce, str)
        and _COOKIE_NAME_PART.fullmatch(nonce)
        and isinstance(issued_at, int)
        and (return_to is None or isinstance(return_to, str))
        and isinstance(browser, str)
        and _DIGEST_SHAPE.fullmatch(browser)
    ):
        raise InvalidState("the state is malformed")
    claims = StateClaims(nonce, issued_at, return_to, browser)
    age = now.timestamp() - claims.issued_at
    if age > max_age.total_seconds() or age < -60:
        raise InvalidState("the state has expired: start connecting again")
    return claims


# -- the browser's connect cookie ------------------------------------------------------------------

COOKIE_PREFIX = "strava_connect_"
# Longer cookie values are refused before hashing; ours are 43 characters.
MAX_COOKIE = 256
# A nonce goes into the cookie's name, so it must be a cookie-name token.
_COOKIE_NAME_PART = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_DIGEST_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)


class BrowserMismatch(Exception):
    """The callback came from a browser that did not start this connect."""


def browser_digest(secret: str) -> str:
    return _b64(hashlib.sha256(secret.encode()).digest())


def cookie_name(claims: StateClaims) -> str:
    return f"{COOKIE_PREFIX}{claims.nonce}"


def check_browser(claims: StateClaims, cookies: dict[str, str]) -> None:
    """Refuse unless the browser holds the cookie `/auth/strava/connect` set with this state."""
    secret = cookies.get(cookie_name(claims))
    if not secret:
        raise BrowserMismatch("this browser did not start this connect (no connect cookie)")
    if len(secret) > MAX_COOKIE or not hmac.compare_digest(browser_digest(secret), claims.browser):
        raise BrowserMismatch("this browser did not start this connect (the cookie does not match)")


def _cookie_options(settings: Settings) -> dict[str, Any]:
    callback = urlsplit(callback_url(settings))
    return {
        "path": callback.path,
        "secure": callback.scheme == "https",
        "httponly": True,
        "samesite": "lax",
    }


# -- return URLs -------------------------------------------------------------------------------


class ReturnUrlRefused(Exception):
    """A `return_to` that is malformed or outside the allow-list; the message says why."""


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash; "" for the whole origin

    def admits(self, other: _Origin) -> bool:
        # Whole path segments: `/ok` admits `/ok` and `/ok/x`, never `/okevil`.
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port) and (
            other.path == self.path or other.path.startswith(self.path + "/")
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> _Origin:
    """Scheme, host, port and path of an absolute http(s) URL, refusing anything a browser
    or a server could read differently from us: control characters, spaces and non-ASCII
    text, backslashes, user info, and dot segments (also percent-encoded)."""
    if len(url) > MAX_RETURN_TO:
        raise ReturnUrlRefused(f"longer than {MAX_RETURN_TO} characters")
    if not all("!" <= c <= "~" for c in url):
        raise ReturnUrlRefused("holds control characters, spaces or non-ASCII characters")
    if "\\" in url:
        raise ReturnUrlRefused("holds a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ReturnUrlRefused("is not a URL") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ReturnUrlRefused("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ReturnUrlRefused("must not hold user info")
    if not parts.hostname:
        raise ReturnUrlRefused("must name a host")
    if _dot_segments(parts.path):
        raise ReturnUrlRefused("must not hold dot segments or encoded backslashes")
    return _Origin(
        parts.scheme,
        parts.hostname,
        port if port is not None else _DEFAULT_PORTS[parts.scheme],
        parts.path.rstrip("/"),
    )


def _dot_segments(path: str) -> bool:
    """Whether some server on the way could read a `.` or `..` segment (or a backslash) in
    `path`: decoded as often as it decodes (`%252e` is `%2e` is `.`), and with the `;params`
    some servers cut from a segment (`..;x`)."""
    for _ in range(4):
        if "\\" in path or any(seg.split(";")[0] in (".", "..") for seg in path.split("/")):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # encoded four times over: no honest URL looks like that


def check_return_to(url: str, allowed: list[str]) -> None:
    """Refuse `url` unless it lies on an allow-listed URL's scheme, host and port, at or
    below its path; compared after parsing, never as text prefixes."""
    target = _origin(url)
    if not any(_origin(base).admits(target) for base in allowed):
        raise ReturnUrlRefused("is not an allowed return URL (OAUTH_RETURN_URLS)")


def _return_to(claims: StateClaims, query: dict[str, Any]) -> str:
    """The signed return URL with our query appended (its fragment, if any, kept last)."""
    assert claims.return_to is not None
    parts = urlsplit(claims.return_to)
    joined = f"{parts.query}&{urlencode(query)}" if parts.query else urlencode(query)
    return urlunsplit(parts._replace(query=joined))


def _refuse_return_to(url: str, settings: Settings) -> None:
    try:
        check_return_to(url, settings.return_urls)
    except ReturnUrlRefused as error:
        log.warning("oauth return_to refused reason=%s", error)
        raise InvalidRequest(f"return_to {error}", reason="return_to") from None


# -- granted scopes ------------------------------------------------------------------------------

# Either lets us list and read the athlete's activities (docs/strava.md §3.1).
READ_ACTIVITIES = frozenset({"activity:read", "activity:read_all"})
# Every scope Strava documents; anything else in a redirect is dropped, not stored.
KNOWN_SCOPES = (
    "read",
    "read_all",
    "profile:read_all",
    "profile:write",
    "activity:read",
    "activity:read_all",
    "activity:write",
)


def granted_scopes(scope: str) -> list[str]:
    """The documented scopes a redirect's `scope` parameter names, in KNOWN_SCOPES order."""
    named = {s.strip() for s in scope[:MAX_SCOPE].split(",")}
    return [s for s in KNOWN_SCOPES if s in named]


# -- routes ------------------------------------------------------------------------------------


async def connect(request: Request) -> RedirectResponse:
    """Redirect the athlete to Strava's authorization page (docs/strava.md §3.1), with a
    cookie binding the state to this browser."""
    settings = web_state(request).settings
    return_to = request.query_params.get("return_to") or None
    if return_to is not None:
        _refuse_return_to(return_to, settings)
    secret = secrets.token_urlsafe(32)
    claims = StateClaims(
        secrets.token_urlsafe(16), int(utcnow().timestamp()), return_to, browser_digest(secret)
    )
    query = urlencode(
        {
            "client_id": settings.strava_client_id,
            "redirect_uri": callback_url(settings),
            "response_type": "code",
            "approval_prompt": "auto",
            "scope": settings.oauth_scopes,
            "state": sign_state(state_key(settings), claims),
        }
    )
    response = RedirectResponse(f"{settings.strava_oauth_url}/authorize?{query}", status_code=302)
    response.set_cookie(
        cookie_name(claims),
        secret,
        max_age=settings.oauth_state_seconds,
        **_cookie_options(settings),
    )
    return response


def callback_url(settings: Settings) -> str:
    # Never from the request's Host header, which the caller chooses: a forged one would send
    # the athlete's code to another host (config.oauth_base_url says where it comes from).
    return f"{oauth_base_url(settings)}{CALLBACK_PATH}"


@dataclass(frozen=True)
class Authorization:
    """What Strava's redirect carried: a one-time code, the scopes the athlete accepted,
    and our state."""

    code: str
    scopes: list[str]
    state: str


async def callback(request: Request) -> Response:
    """Check the redirect, exchange the code, store the athlete, start the backfill."""
    web = web_state(request)
    settings = web.settings
    authorization = read_redirect(request)
    now = utcnow()
    claims = check_state(settings, authorization.state, now)
    require_same_browser(claims, request.cookies)
    require_activity_scope(authorization.scopes)
    if claims.return_to is not None:
        # Signed by us, but the allow-list may have shrunk since.
        _refuse_return_to(claims.return_to, settings)
    engine = web.engine
    await run_in_threadpool(spend_nonce, engine, claims, settings, now)
    token = await exchange(web.strava, authorization.code)
    athlete = await run_in_threadpool(
        connect_athlete, engine, web.cipher, token, ",".join(authorization.scopes), now
    )
    add_log_ids(athlete_id=athlete.id)
    started = await run_in_threadpool(start_job, engine, athlete.id, SyncKind.BACKFILL, now)
    add_log_ids(job_id=started.job.id)
    if started.created and started.job.id is not None:
        await run_in_threadpool(web.dispatcher.send_sync, started.job.id)
        # The queued job, for the progress streams of the page that called us back.
        progress = web.progress_fanout.progress_log
        await run_in_threadpool(
            announce_sync_state, engine, web.quota, progress, athlete.id, utcnow
        )
    body = {
        "athlete_id": athlete.id,
        "scopes": [scope for scope in athlete.scopes.split(",") if scope],
        "status": athlete.status,
        "sync_job_id": started.job.id,
    }
    response: Response
    if claims.return_to is not None:
        location = _return_to(claims, {"athlete_id": athlete.id, "status": athlete.status})
        response = RedirectResponse(location, status_code=303)
    else:
        response = JSONResponse(body)
    response.delete_cookie(cookie_name(claims), **_cookie_options(settings))
    return response


# A denial's `error` is echoed as the JSON `reason` only when it is one short word.
_ERROR_WORD = re.compile(r"[a-z_]{1,64}", re.ASCII)
# Strava's codes are hex; this only keeps junk from reaching the token endpoint.
_CODE_SHAPE = re.compile(rf"[!-~]{{1,{MAX_CODE}}}", re.ASCII)


def read_redirect(request: Request) -> Authorization:
    """The code, granted scopes and state, or InvalidRequest when the athlete declined."""
    params = request.query_params
    if "error" in params:
        # `error=access_denied` when the athlete declines (docs/strava.md §3.1).
        error = params["error"][:MAX_ERROR]
        log.info("oauth callback declined error=%s", error)
        reason = error if _ERROR_WORD.fullmatch(error) else "authorization_error"
        raise InvalidRequest("authorization was not granted", reason=reason)
    code = params.get("code")
    if not code:
        log.warning("oauth callback rejected reason=missing_code")
        raise InvalidRequest("missing query parameter: code", missing=["code"])
    if not _CODE_SHAPE.fullmatch(code):
        log.warning("oauth callback rejected reason=malformed_code")
        raise InvalidRequest("malformed query parameter: code", reason="code")
    # The redirect's `scope` lists what the athlete accepted, which may be less than asked
    # for, and may include `read` unasked (§3.1).
    return Authorization(
        code=code, scopes=granted_scopes(params.get("scope", "")), state=params.get("state", "")
    )


def require_activity_scope(scopes: list[str]) -> None:
    """Refuse a grant that cannot read activities, before its code is exchanged.

    The `scope` parameter comes through the athlete's browser, so it is only ever used to
    refuse: a grant it says lacks the permission gets no tokens and no backfill (nothing to
    revoke then, since the code is never exchanged). A `scope` that claims more than Strava
    granted buys nothing: Strava answers the first activity call with 401
    `activity:read_permission missing` (docs/strava.md §3.3), and the athlete then needs to
    reconnect.
    """
    if READ_ACTIVITIES.isdisjoint(scopes):
        log.warning("oauth callback rejected reason=scope scopes=%s", ",".join(scopes))
        raise InvalidRequest(
            "Strava did not grant permission to read activities (activity:read or "
            "activity:read_all), which this service needs: connect again at "
            f'{CONNECT_PATH} and leave "View data about your activities" ticked',
            reason="scope",
            missing=["activity:read"],
        )


def check_state(settings: Settings, state: str, now: datetime) -> StateClaims:
    try:
        return verify_state(
            state_key(settings), state, now, timedelta(seconds=settings.oauth_state_seconds)
        )
    except InvalidState as error:
        log.warning("oauth callback rejected reason=state detail=%s", error)
        raise InvalidRequest(
            f"invalid authorization state ({error}); start again at {CONNECT_PATH}",
            reason="state",
        ) from None


def require_same_browser(claims: StateClaims, cookies: dict[str, str]) -> None:
    try:
        check_browser(claims, cookies)
    except BrowserMismatch as error:
        log.warning("oauth callback rejected reason=state_browser detail=%s", error)
        raise InvalidRequest(
            f"{error}: open {CONNECT_PATH} in the browser that finishes connecting",
            reason="state_browser",
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
            f"this authorization was already used; start again at {CONNECT_PATH}",
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
    """The connect and callback routes (their redirect's base URL is checked at start-up:
    config.check_web_settings)."""
    return [
        Route(CONNECT_PATH, connect, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
    ]
