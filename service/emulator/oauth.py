"""/oauth: authorize (auto-approved), token exchange and refresh, deauthorize (§3)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from service.emulator.http import bad_request, fault, injected_fault, json_response, params
from service.emulator.render import summary_athlete
from service.emulator.state import TokenError, grant_scope

if TYPE_CHECKING:
    from service.emulator.emulator import Emulator


class Handlers:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    def _client_error(self, values: dict[str, str]) -> Response | None:
        """Strava's answer to wrong app credentials (oauth/token_invalid_client.yaml)."""
        if values.get("client_id", "") != str(self.emu.config.client_id):
            return bad_request("Application", "client_id")
        if values.get("client_secret", "") != self.emu.config.client_secret:
            return bad_request("Application", "client_secret")
        return None

    async def authorize(self, request: Request) -> Response:
        """Approve at once as the logged-in athlete and redirect back with code and scope.

        The redirect carries ``state``, ``code`` and the granted ``scope``, which always
        includes ``read`` (observed, docs/strava.md §3.1).
        """
        self.emu.count("GET /oauth/authorize")
        query = request.query_params
        if query.get("client_id", "") != str(self.emu.config.client_id):
            return bad_request("Application", "client_id")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri:
            return bad_request("Application", "redirect_uri")
        if query.get("response_type") != "code":
            return bad_request("Application", "response_type")
        try:
            scope = grant_scope(query.get("scope", ""))
        except TokenError as exc:
            return fault(400, "Bad Request", **exc.error)
        with self.emu.lock:
            athlete_id = self.emu.logged_in
            if athlete_id is None:
                return bad_request("Athlete", "id")
            code = self.emu.tokens.new_code(athlete_id, scope)
        separator = "&" if "?" in redirect_uri else "?"
        location = (
            f"{redirect_uri}{separator}state={quote(query.get('state', ''), safe='')}"
            f"&code={code}&scope={quote(scope, safe=',:')}"
        )
        return RedirectResponse(location, status_code=302)

    async def token(self, request: Request) -> Response:
        """Code exchange (with athlete) or refresh (without; rotates the refresh token).

        Not rate-limited and without rate-limit headers, as recorded (§2.2).
        """
        self.emu.count("POST /oauth/token")
        values = await params(request)
        error = self._client_error(values)
        if error is not None:
            return error
        grant_type = values.get("grant_type", "")
        try:
            with self.emu.lock:
                if grant_type == "authorization_code":
                    athlete_id, access, refresh = self.emu.tokens.exchange(values.get("code", ""))
                    athlete = summary_athlete(self.emu.athlete(athlete_id))
                    body = self.emu.tokens.token_response(access, refresh, athlete)
                elif grant_type == "refresh_token":
                    access, refresh = self.emu.tokens.refresh(values.get("refresh_token", ""))
                    body = self.emu.tokens.token_response(access, refresh, None)
                else:
                    return bad_request("RequestToken", "grant_type")
        except TokenError as exc:
            return fault(400, "Bad Request", **exc.error)
        return json_response(body)

    async def deauthorize(self, request: Request) -> Response:
        """Revoke every token of the athlete (§3.4); answers ``{"access_token": …}``.

        Carries rate-limit headers as recorded (client/deauthorize.yaml). Injected faults
        (``fail_next``, ``timeout_next``) answer here as on the data endpoints, so that a
        failing revoke can be tested. Whether it also
        pushes the deauth event is UNCONFIRMED (§7 question 4): ``app_deauthorize_sends_event``.
        """
        self.emu.count("POST /oauth/deauthorize")
        injected = await injected_fault(self.emu)
        if injected is not None:
            return injected
        values = await params(request)
        token = values.get("access_token", "")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if not token and scheme.lower() == "bearer":
            token = bearer.strip()
        allowed, usage = self.emu.limiter.hit()
        if not allowed:
            response = fault(429, "Rate Limit Exceeded", "Application", "rate limit", "exceeded")
        else:
            with self.emu.lock:
                found = self.emu.tokens.authenticate(token)
            if found is None:
                response = fault(401, "Authorization Error", "Athlete", "access_token", "invalid")
            else:
                self.emu.deauthorize(
                    found.athlete_id, send_event=self.emu.config.app_deauthorize_sends_event
                )
                response = json_response({"access_token": token})
        response.raw_headers.extend(self.emu.limiter.headers(usage))
        return response


def routes(emulator: Emulator) -> list[BaseRoute]:
    handlers = Handlers(emulator)
    return [
        Route("/authorize", handlers.authorize, methods=["GET"]),
        Route("/token", handlers.token, methods=["POST"]),
        Route("/deauthorize", handlers.deauthorize, methods=["POST"]),
    ]
