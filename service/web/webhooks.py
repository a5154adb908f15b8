"""Strava's push callback: the validation handshake (GET) and event delivery (POST).

Both must answer within two seconds (strava-api.md §1.2, §1.3). An event is acknowledged only
once it is committed to the inbox; the hand-off to the broker is best effort, because the
relay re-sends whatever stays `received`.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.config import Settings
from service.ingest.events import WebhookEvent
from service.ingest.inbox import StoredEvent, mark_enqueued, store_event
from service.messaging import Dispatcher
from service.models import InboxStatus
from service.web.errors import ContentTooLarge, Forbidden, InvalidRequest

log = logging.getLogger(__name__)

HANDSHAKE_PARAMETERS = ("hub.mode", "hub.challenge", "hub.verify_token")
# Strava's events are a few hundred bytes (strava-api.md §1.4); anything far bigger is not one.
MAX_EVENT_BYTES = 64 * 1024


async def validate_subscription(request: Request) -> JSONResponse:
    """Echo `hub.challenge` when `hub.verify_token` is ours (strava-api.md §1.2)."""
    params = request.query_params
    missing = [name for name in HANDSHAKE_PARAMETERS if not params.get(name)]
    if missing:
        log.warning("webhook handshake rejected reason=missing_parameters missing=%s", missing)
        raise InvalidRequest(f"missing query parameter: {', '.join(missing)}", missing=missing)
    if params["hub.mode"] != "subscribe":
        log.warning("webhook handshake rejected reason=bad_mode mode=%r", params["hub.mode"][:32])
        raise InvalidRequest("hub.mode must be 'subscribe'", parameter="hub.mode")
    settings: Settings = request.app.state.settings
    expected = settings.strava_verify_token.get_secret_value().encode()
    # Constant time, so the token cannot be guessed byte by byte from response times.
    if not hmac.compare_digest(params["hub.verify_token"].encode(), expected):
        log.warning("webhook handshake rejected reason=wrong_verify_token")
        raise Forbidden("hub.verify_token does not match", parameter="hub.verify_token")
    log.info("webhook handshake answered")
    return JSONResponse({"hub.challenge": params["hub.challenge"]})


async def receive_event(request: Request) -> JSONResponse:
    """Store the event, hand it to the workers, then acknowledge (strava-api.md §1.3)."""
    event = parse_event(await read_body(request))
    engine: Engine = request.app.state.engine
    # Database errors propagate: answering 503 makes Strava retry (service/web/errors.py).
    stored = await run_in_threadpool(store_event, engine, event)
    if stored.status == InboxStatus.RECEIVED:
        await hand_off(request.app.state.dispatcher, engine, stored)
    log.info(
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


async def read_body(request: Request) -> bytes:
    """The body, refused as soon as it grows past MAX_EVENT_BYTES (never read whole)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            log.warning("webhook event rejected reason=too_large")
            raise ContentTooLarge(f"an event body is at most {MAX_EVENT_BYTES} bytes")
    return bytes(body)


def parse_event(body: bytes) -> WebhookEvent:
    """The validated event, or InvalidRequest naming what is wrong (never echoing the body)."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        log.warning("webhook event rejected reason=invalid_json size=%d", len(body))
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        log.warning("webhook event rejected reason=not_an_object type=%s", type(payload).__name__)
        raise InvalidRequest("body must be a JSON object")
    try:
        return WebhookEvent.model_validate(payload)
    except ValidationError as error:
        fields = {
            ".".join(str(part) for part in item["loc"]) or "body": item["msg"]
            for item in error.errors()
        }
        log.warning(
            "webhook event rejected reason=invalid_event fields=%s object_id=%r owner_id=%r",
            sorted(fields),
            _scalar(payload.get("object_id")),
            _scalar(payload.get("owner_id")),
        )
        raise InvalidRequest("invalid event", fields=fields) from None


async def hand_off(dispatcher: Dispatcher, engine: Engine, stored: StoredEvent) -> None:
    """Enqueue the event and record it; on failure the row stays for the relay."""
    try:
        await run_in_threadpool(dispatcher.send_event, stored.id)
    except Exception as error:
        # The event is committed, so Strava still gets its 200; the relay re-sends it.
        log.warning(
            "broker unavailable, event left for the relay event_id=%s error=%s",
            stored.id,
            type(error).__name__,
        )
        return
    try:
        await run_in_threadpool(mark_enqueued, engine, [stored.id])
    except Exception as error:
        # Enqueued but not recorded: the relay may send it again, which processing tolerates.
        log.warning(
            "could not mark event enqueued event_id=%s error=%s", stored.id, type(error).__name__
        )


def _scalar(value: Any) -> Any:
    # Only short scalars reach the logs, never nested structures from an untrusted body.
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)[:32]


def routes(settings: Settings) -> list[Route]:
    return [
        Route(settings.webhook_path, validate_subscription, methods=["GET"]),
        Route(settings.webhook_path, receive_event, methods=["POST"]),
    ]
