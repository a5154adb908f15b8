"""Strava's push callback: the validation handshake (GET) and event delivery (POST).

Both must answer within two seconds (docs/strava.md §1.2, §1.3). A request first passes the
trust checks (service/web/trust.py); an event is then acknowledged only once it is committed
to the inbox, in a transaction shared with concurrent requests (service/web/batching.py). The
hand-off to the broker is best effort, because the relay re-sends whatever stays `received`.
Every rejection is a JSON error whose ``"reason"`` is also the key it is counted under
(``GET /stats/webhooks``).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from service.config import Settings
from service.ingest.events import UNSTORABLE, WebhookEvent
from service.log_ids import add_log_ids
from service.web.errors import Forbidden, InvalidRequest
from service.web.rejections import Endpoint, counted
from service.web.state import web_state
from service.web.trust import (
    SIGNATURE_HEADER,
    check_content_length,
    check_content_type,
    check_event_time,
    check_path_secret,
    read_body,
    verify_signature,
)

log = logging.getLogger(__name__)

HANDSHAKE_PARAMETERS = ("hub.mode", "hub.challenge", "hub.verify_token")
ALLOWED_METHODS = "GET, HEAD, POST"


@counted("webhook")
async def webhook(request: Request) -> Response:
    """The callback, whatever the method: the secret path segment is checked first, so that
    a prober cannot tell this path from an unknown one by the method it tries."""
    secret = web_state(request).settings.webhook_secret
    check_path_secret(
        request.path_params.get("secret"), None if secret is None else secret.get_secret_value()
    )
    if request.method in ("GET", "HEAD"):
        return validate_subscription(request)
    if request.method == "POST":
        return await receive_event(request)
    raise HTTPException(405, headers={"Allow": ALLOWED_METHODS})


def validate_subscription(request: Request) -> Response:
    """Echo `hub.challenge` when `hub.verify_token` is ours (docs/strava.md §1.2)."""
    params = request.query_params
    missing = [name for name in HANDSHAKE_PARAMETERS if not params.get(name)]
    if missing:
        raise InvalidRequest(
            f"missing query parameter: {', '.join(missing)}",
            reason="missing_parameters",
            missing=missing,
        )
    if params["hub.mode"] != "subscribe":
        raise InvalidRequest(
            "hub.mode must be 'subscribe'", reason="bad_mode", parameter="hub.mode"
        )
    expected = web_state(request).settings.strava_verify_token.get_secret_value().encode()
    # Constant time, so the token cannot be guessed byte by byte from response times.
    if not hmac.compare_digest(params["hub.verify_token"].encode(), expected):
        raise Forbidden(
            "hub.verify_token does not match",
            reason="wrong_verify_token",
            parameter="hub.verify_token",
        )
    log.info("webhook handshake answered")
    return JSONResponse({"hub.challenge": params["hub.challenge"]})


async def receive_event(request: Request) -> Response:
    """Check, store (group commit), acknowledge (docs/strava.md §1.3)."""
    web = web_state(request)
    settings = web.settings
    check_content_type(request.headers.get("content-type"))
    check_content_length(request.headers.get("content-length"))
    body = await read_body(request)
    if settings.webhook_signing_secret is not None:
        verify_signature(
            settings.webhook_signing_secret.get_secret_value().encode(),
            request.headers.get(SIGNATURE_HEADER),
            body,
            time.time(),
        )
    event = parse_event(body)
    check_event_time(event.event_time, time.time(), settings.webhook_clock_skew_seconds)
    await web.subscription_gate.check(event.subscription_id)
    stored = await web.inbox_batcher.store(event)
    # The owner and object are the event's claims, not yet checked with Strava.
    add_log_ids(
        inbox_event_id=stored.id,
        athlete_id=event.owner_id,
        activity_id=event.object_id if event.object_type == "activity" else None,
    )
    counters = web.webhook_counters
    counters.accepted += 1
    counters.duplicates += not stored.created
    # Debug only: the batch is logged at INFO, and the inbox row itself is the record.
    log.debug(
        "webhook event accepted event_id=%s duplicate=%s object_type=%r aspect_type=%r "
        "object_id=%s owner_id=%s",
        stored.id,
        not stored.created,
        event.object_type,
        event.aspect_type,
        event.object_id,
        event.owner_id,
    )
    return JSONResponse({"status": "received", "event_id": stored.id})


def parse_event(body: bytes) -> WebhookEvent:
    """The validated event, or InvalidRequest naming what is wrong (never echoing the body)."""
    try:
        payload: Any = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise InvalidRequest("body is not valid JSON", reason="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("body is nested too deeply", reason="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("body must be a JSON object", reason="not_an_object")
    try:
        return WebhookEvent.model_validate(payload)
    except ValidationError as error:
        problems = error.errors()
        fields = {
            ".".join(str(part) for part in item["loc"]) or "body": item["msg"] for item in problems
        }
        # A value the database cannot store is counted apart: it is an attack, not a slip.
        # (pydantic refuses a lone surrogate in a plain string field itself, as string_unicode.)
        unstorable = any(item["type"] in (UNSTORABLE, "string_unicode") for item in problems)
        reason = UNSTORABLE if unstorable else "invalid_event"
        log.info(
            "webhook event invalid reason=%s fields=%s object_id=%r owner_id=%r",
            reason,
            sorted(fields),
            _scalar(payload.get("object_id")),
            _scalar(payload.get("owner_id")),
        )
        raise InvalidRequest("invalid event", reason=reason, fields=fields) from None


def _scalar(value: Any) -> Any:
    # Only short scalars reach the logs, never nested structures from an untrusted body.
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)[:32]


def routes(settings: Settings) -> list[Route]:
    # With a secret, `{path}/{secret}` is the callback; the bare path stays routed so that a
    # request without the segment is counted (and answered 404 like a wrong one). Every
    # method is routed, so that none answers 405 before the secret is checked.
    paths = [settings.webhook_path]
    if settings.webhook_secret is not None:
        paths.append(settings.webhook_path.rstrip("/") + "/{secret}")
    return [Route(path, _AnyMethod(webhook)) for path in paths]


class _AnyMethod:
    """An endpoint as an ASGI app, which Starlette routes for every method (it limits a plain
    function to the methods it is given, answering 405 to the others)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)
