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
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.config import Settings
from service.ingest.events import WebhookEvent
from service.web.batching import InboxBatcher
from service.web.errors import Forbidden, InvalidRequest, WebError
from service.web.metrics import WebhookCounters
from service.web.trust import (
    SIGNATURE_HEADER,
    SubscriptionGate,
    check_content_length,
    check_content_type,
    check_path_secret,
    read_body,
    verify_signature,
)

log = logging.getLogger(__name__)

HANDSHAKE_PARAMETERS = ("hub.mode", "hub.challenge", "hub.verify_token")

Endpoint = Callable[[Request], Awaitable[Response]]


def counted(endpoint: Endpoint) -> Endpoint:
    """Count and log every rejection of ``endpoint`` by its reason, then let it propagate."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except WebError as error:
            counters: WebhookCounters = request.app.state.webhook_counters
            reason = error.reason or type(error).__name__
            counters.rejected[reason] += 1
            # Never the body, the path (it may hold the secret) or the header values.
            log.warning(
                "webhook request rejected method=%s reason=%s status=%d",
                request.method,
                reason,
                error.status_code,
            )
            raise

    return wrapper


def _check_path(request: Request) -> None:
    settings: Settings = request.app.state.settings
    secret = settings.webhook_secret
    check_path_secret(
        request.path_params.get("secret"), None if secret is None else secret.get_secret_value()
    )


@counted
async def validate_subscription(request: Request) -> Response:
    """Echo `hub.challenge` when `hub.verify_token` is ours (docs/strava.md §1.2)."""
    _check_path(request)
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
    settings: Settings = request.app.state.settings
    expected = settings.strava_verify_token.get_secret_value().encode()
    # Constant time, so the token cannot be guessed byte by byte from response times.
    if not hmac.compare_digest(params["hub.verify_token"].encode(), expected):
        raise Forbidden(
            "hub.verify_token does not match",
            reason="wrong_verify_token",
            parameter="hub.verify_token",
        )
    log.info("webhook handshake answered")
    return JSONResponse({"hub.challenge": params["hub.challenge"]})


@counted
async def receive_event(request: Request) -> Response:
    """Check, store (group commit), acknowledge (docs/strava.md §1.3)."""
    settings: Settings = request.app.state.settings
    _check_path(request)
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
    gate: SubscriptionGate = request.app.state.subscription_gate
    await gate.check(event.subscription_id)
    batcher: InboxBatcher = request.app.state.inbox_batcher
    stored = await batcher.store(event)
    counters: WebhookCounters = request.app.state.webhook_counters
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
        fields = {
            ".".join(str(part) for part in item["loc"]) or "body": item["msg"]
            for item in error.errors()
        }
        log.info(
            "webhook event invalid reason=invalid_event fields=%s object_id=%r owner_id=%r",
            sorted(fields),
            _scalar(payload.get("object_id")),
            _scalar(payload.get("owner_id")),
        )
        raise InvalidRequest("invalid event", reason="invalid_event", fields=fields) from None


def _scalar(value: Any) -> Any:
    # Only short scalars reach the logs, never nested structures from an untrusted body.
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)[:32]


def routes(settings: Settings) -> list[Route]:
    # With a secret, `{path}/{secret}` is the callback; the bare path stays routed so that a
    # request without the segment is counted (and answered 404 like a wrong one).
    paths = [settings.webhook_path]
    if settings.webhook_secret is not None:
        paths.append(settings.webhook_path.rstrip("/") + "/{secret}")
    return [
        route
        for path in paths
        for route in (
            Route(path, validate_subscription, methods=["GET"]),
            Route(path, receive_event, methods=["POST"]),
        )
    ]
