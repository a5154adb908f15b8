"""The operator page's login session and the CSRF token bound to it.

Logging in with one of ADMIN_API_KEYS sets a cookie that holds a random session id and its
expiry, signed (HMAC-SHA256) with a key derived from STRAVA_CLIENT_SECRET and ADMIN_API_KEYS.
Every web process derives the same key from the same settings, so any of them accepts the
cookie, and none stores anything. The cookie never holds the admin key itself; changing
ADMIN_API_KEYS (dropping a leaked key) ends every session. It is HttpOnly (no script reads
it), SameSite=Strict (no other site's page makes the browser send it), limited to /admin,
and Secure when the page was asked for over https.

Logging out deletes the cookie; a copy of it taken before stays valid until it expires
(`SESSION_SECONDS`), which is what keeping no state costs.

Every form the page POSTs carries a CSRF token: the HMAC of the session id under another
derived key, so a token is worth nothing in another session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from service.config import Settings

COOKIE = "strava_ingest_admin"
# The cookie is sent for the page, its actions and its event stream, nowhere else.
COOKIE_PATH = "/admin"
# A working day: long enough not to log an operator out mid-incident.
SESSION_SECONDS = 12 * 3600

# A session id (24 url-safe characters), its expiry (epoch seconds) and the signature.
_SHAPE = re.compile(r"([A-Za-z0-9_-]{24})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})", re.ASCII)


@dataclass(frozen=True)
class AdminSession:
    """A logged-in operator's session: its id and when it ends (epoch seconds)."""

    id: str
    expires: int


class SessionKeys:
    """Issues and checks session cookies and CSRF tokens for the settings' keys.

    Parameters:
      settings: STRAVA_CLIENT_SECRET and ADMIN_API_KEYS, the secrets the keys derive from.
    """

    def __init__(self, settings: Settings) -> None:
        secret = "\0".join(
            [settings.strava_client_secret.get_secret_value(), *sorted(settings.admin_keys)]
        ).encode()
        self._signing = _derive(secret, b"strava-ingest admin session v1")
        self._csrf = _derive(secret, b"strava-ingest admin csrf v1")

    def issue(self, now: float) -> tuple[AdminSession, str]:
        """A new session and its cookie value."""
        session = AdminSession(secrets.token_urlsafe(18), int(now) + SESSION_SECONDS)
        payload = f"{session.id}.{session.expires}"
        return session, f"{payload}.{_mac(self._signing, payload)}"

    def read(self, cookie: str | None, now: float) -> AdminSession | None:
        """The session a cookie value holds; None when it is missing, malformed, not signed
        by these keys, or expired."""
        if cookie is None:
            return None
        match = _SHAPE.fullmatch(cookie)
        if match is None:
            return None
        session_id, expires, signature = match.groups()
        if not hmac.compare_digest(signature, _mac(self._signing, f"{session_id}.{expires}")):
            return None
        if int(expires) <= now:
            return None
        return AdminSession(session_id, int(expires))

    def csrf_token(self, session: AdminSession) -> str:
        return _mac(self._csrf, session.id)

    def csrf_matches(self, session: AdminSession, token: str | None) -> bool:
        if token is None or not token.isascii():
            return False
        return hmac.compare_digest(token, self.csrf_token(session))


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
