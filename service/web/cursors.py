"""Opaque page cursors of the product API: a keyset position (e.g. the last id of a page),
signed, so that a client can only hand back a cursor this service issued for the same list.

A cursor is two runs of unpadded url-safe base64: the JSON position with the list's name, and
its HMAC-SHA256. The key is derived from STRAVA_CLIENT_SECRET (as the OAuth state's is, with
another label), so it survives a TOKEN_KEY rotation. A cursor that is malformed, altered or
issued for another list is refused with 400 (reason ``cursor``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import Settings
from service.web.errors import InvalidRequest

# Far above any position this service encodes; nothing longer deserves an HMAC.
MAX_CURSOR = 512
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", re.ASCII)


def cursor_key(settings: Settings) -> bytes:
    """The key cursors are signed with: HKDF of STRAVA_CLIENT_SECRET, distinct from the
    secret itself and from the OAuth state's key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"strava-ingest page cursor v1"
    ).derive(settings.strava_client_secret.get_secret_value().encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def encode_cursor(key: bytes, listing: str, position: dict[str, Any]) -> str:
    """A cursor for `position` in the list named `listing` (e.g. ``athletes``)."""
    payload = _b64(json.dumps({"l": listing, "p": position}, separators=(",", ":")).encode())
    return f"{payload}.{_signature(key, payload)}"


def decode_cursor(key: bytes, listing: str, cursor: str) -> dict[str, Any]:
    """The position a cursor of `listing` holds; InvalidRequest for any other text."""
    # The shape first: compare_digest refuses non-ASCII text.
    if len(cursor) > MAX_CURSOR or not _SHAPE.fullmatch(cursor):
        raise _invalid("the cursor is malformed")
    payload, _, signature = cursor.partition(".")
    if not hmac.compare_digest(signature, _signature(key, payload)):
        raise _invalid("the cursor is not one this service issued")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        raise _invalid("the cursor is malformed") from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), dict):
        raise _invalid("the cursor is malformed")
    if data.get("l") != listing:
        raise _invalid("the cursor belongs to another list")
    position: dict[str, Any] = data["p"]
    return position


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, reason="cursor", fields=[{"name": "cursor", "problem": message}])
