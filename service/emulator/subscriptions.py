"""/api/v3/push_subscriptions: one subscription per app, created after a handshake (§1.1, §1.2).

These calls use the app's credentials, not an athlete token. They are not rate-limited and
carry only ``X-Ratelimit-Limit`` and ``X-Ratelimit-Usage: 0,0``, as recorded.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.emulator.http import bad_request, fault, json_response, not_found, params
from service.emulator.render import subscription_json
from service.emulator.state import Subscription

if TYPE_CHECKING:
    from service.emulator.emulator import Emulator

log = logging.getLogger(__name__)


class Handlers:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    def _credentials_error(self, values: dict[str, str]) -> Response | None:
        config = self.emu.config
        if values.get("client_id") != str(config.client_id) or (
            values.get("client_secret") != config.client_secret
        ):
            # The recorded 401 for a bad application (client/authorization_error.yaml).
            return fault(401, "Authorization Error", "Application", "", "invalid")
        return None

    def _finish(self, response: Response) -> Response:
        response.raw_headers.extend(self.emu.limiter.subscription_headers())
        return response

    async def _verified(self, callback_url: str, verify_token: str) -> bool:
        """Strava's validation GET: 200 within 2 s echoing ``hub.challenge`` as JSON (§1.2).

        Async so the emulator's own event loop keeps serving while the callback answers
        (the callback may live in the same process, even on the same loop).
        """
        challenge = secrets.token_hex(16)
        query = {
            "hub.verify_token": verify_token,
            "hub.challenge": challenge,
            "hub.mode": "subscribe",
        }
        try:
            async with httpx.AsyncClient(timeout=self.emu.config.callback_timeout) as client:
                response = await client.get(callback_url, params=query)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("subscription callback not verifiable: %s", exc)
            return False
        return (
            response.status_code == 200
            and isinstance(body, dict)
            and body.get("hub.challenge") == challenge
        )

    async def create(self, request: Request) -> Response:
        self.emu.count("POST /push_subscriptions")
        values = await params(request)
        error = self._credentials_error(values)
        if error is not None:
            return self._finish(error)
        callback_url = values.get("callback_url", "")
        if not callback_url.startswith(("http://", "https://")) or len(callback_url) > 255:
            return self._finish(bad_request("PushSubscription", "callback url"))
        with self.emu.lock:
            if self.emu.current_subscription() is not None or self.emu.subscription_pending:
                return self._finish(bad_request("PushSubscription", "", "already exists"))
            self.emu.subscription_pending = True
        try:
            verified = await self._verified(callback_url, values.get("verify_token", ""))
            if not verified:
                return self._finish(
                    bad_request("PushSubscription", "callback url", "not verifiable")
                )
            subscription = Subscription(
                id=self.emu.new_subscription_id(),
                callback_url=callback_url,
                verify_token=values.get("verify_token", ""),
                created_at=self.emu.clock(),
            )
            self.emu.set_subscription(subscription)
        finally:
            with self.emu.lock:
                self.emu.subscription_pending = False
        body = subscription_json(subscription, self.emu.config.client_id, precise=True)
        return self._finish(json_response(body, 201))

    async def view(self, request: Request) -> Response:
        self.emu.count("GET /push_subscriptions")
        error = self._credentials_error(dict(request.query_params))
        if error is not None:
            return self._finish(error)
        current = self.emu.subscription
        return self._finish(json_response([current] if current else []))

    async def delete(self, request: Request) -> Response:
        self.emu.count("DELETE /push_subscriptions/{id}")
        error = self._credentials_error(await params(request))
        if error is not None:
            return self._finish(error)
        current = self.emu.current_subscription()
        if current is None or str(current.id) != request.path_params["id"]:
            return self._finish(not_found("PushSubscription"))
        self.emu.set_subscription(None)
        return self._finish(Response(status_code=204))


def routes(emulator: Emulator) -> list[BaseRoute]:
    handlers = Handlers(emulator)
    return [
        Route("/push_subscriptions", handlers.create, methods=["POST"]),
        Route("/push_subscriptions", handlers.view, methods=["GET"]),
        Route("/push_subscriptions/{id}", handlers.delete, methods=["DELETE"]),
    ]
