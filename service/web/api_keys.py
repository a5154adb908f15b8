"""Bearer API keys for routes that are neither Strava's nor the athlete's: `requires_key`
guards an endpoint with the keys of one setting (ADMIN_API_KEYS for the operator's routes).

A request must send ``Authorization: Bearer <key>``. No key, or another scheme: 401 with
``WWW-Authenticate: Bearer``. A key that is not one of the setting's: 403. When the setting is
unset the route is closed to everyone (401/403, the message says why): never open. Each given
key is compared with every configured key in constant time, so neither a key's bytes nor its
position in the list can be learnt from response times.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from service.config import Settings
from service.web.errors import CredentialRequired, Forbidden
from service.web.rejections import Endpoint, counted
from service.web.state import web_state


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    if authorization is None:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return key


def key_matches(given: str, keys: list[str]) -> bool:
    """Whether ``given`` is one of ``keys``, comparing with each of them every time."""
    # Digests have one length, so not even a key's length shows in the comparison time.
    digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(digest, hashlib.sha256(key.encode()).digest())
    return matched


def check_key(authorization: str | None, keys: list[str], setting: str) -> None:
    """Raise CredentialRequired (no bearer key) or Forbidden (not one of ``keys``)."""
    given = bearer_key(authorization)
    if not keys:
        message = f"this route is closed: {setting} is not set"
        if given is None:
            raise CredentialRequired(message, reason="api_keys_unset")
        raise Forbidden(message, reason="api_keys_unset")
    if given is None:
        raise CredentialRequired(
            "an API key is required: Authorization: Bearer <key>", reason="api_key_missing"
        )
    if not key_matches(given, keys):
        raise Forbidden("the API key is not valid for this route", reason="api_key_wrong")


def requires_key(
    setting: str, keys: Callable[[Settings], list[str]]
) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint with the keys ``keys`` reads from the app's settings (named
    ``setting`` in messages); rejections are counted and logged by reason."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            settings = web_state(request).settings
            check_key(request.headers.get("authorization"), keys(settings), setting)
            return await endpoint(request)

        return counted(f"{setting} route")(guarded)

    return decorate


# The operator's routes: /quota, /stats/webhooks, the product API's admin routes.
requires_admin_key = requires_key("ADMIN_API_KEYS", lambda settings: settings.admin_keys)
# The product API's read routes: a read key or an admin key.
requires_read_key = requires_key(
    "READ_API_KEYS or ADMIN_API_KEYS", lambda settings: settings.read_keys
)
