"""Strava's HTTP surface: /api/v3 (data, push subscriptions), /oauth, plus /_emulator controls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from service.emulator import control, oauth, subscriptions
from service.emulator.http import bad_request, fault, injected_fault, json_response, not_found
from service.emulator.render import laps, streams
from service.emulator.state import AccessToken

if TYPE_CHECKING:
    from service.emulator.emulator import Emulator

Handler = Callable[[Request, AccessToken], Awaitable[Response]]

AUTH_INVALID = ("Authorization Error", "Athlete", "access_token", "invalid")
# Missing scope (docs/strava.md §3.3, from public code; UNCONFIRMED wording).
SCOPE_MISSING = ("Authorization Error", "AccessToken", "activity:read_permission", "missing")
STREAM_KEYS = (
    "time",
    "distance",
    "latlng",
    "altitude",
    "velocity_smooth",
    "heartrate",
    "cadence",
    "watts",
    "temp",
    "moving",
    "grade_smooth",
)


class Api:
    """The /api/v3 data endpoints, each wrapped by :meth:`pipeline`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def pipeline(self, request: Request, endpoint: str, handler: Handler) -> Response:
        """Count, inject faults, add latency, rate-limit, authenticate, then answer.

        Injected faults act like a failing gateway in front of Strava: they are not counted
        against the rate limit and carry no rate-limit headers. Everything after counts,
        including 401s and 429s (rejected requests still count, §2.1).
        """
        emu = self.emu
        emu.count(endpoint)
        injected = await injected_fault(emu)
        if injected is not None:
            return injected
        if emu.config.latency > 0:
            await asyncio.sleep(emu.config.latency)
        allowed, usage = emu.limiter.hit()
        if not allowed:
            response = fault(429, "Rate Limit Exceeded", "Application", "rate limit", "exceeded")
        else:
            token = self._token(request)
            if token is None:
                response = fault(401, *AUTH_INVALID)
            else:
                response = await handler(request, token)
        response.raw_headers.extend(emu.limiter.headers(usage))
        return response

    def _token(self, request: Request) -> AccessToken | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        with self.emu.lock:
            return self.emu.tokens.authenticate(value.strip())

    def _visible(self, token: AccessToken, raw_id: str) -> Response | int:
        """The activity id if this token may read it, else the 404 Strava gives (§4.2), or
        its 401 for a token without activity:read at all (§3.3)."""
        if not token.allows("activity:read"):
            return fault(401, *SCOPE_MISSING)
        try:
            activity_id = int(raw_id)
        except ValueError:
            return not_found("Activity")
        activity = self.emu.get_activity(activity_id)
        # Only-You activities need activity:read_all; without it they look absent (UNCONFIRMED
        # status on Strava, §7 question 2; 404 chosen).
        if activity is None or (activity.private and not token.allows("activity:read_all")):
            return not_found("Activity")
        if activity.athlete_id != token.athlete_id and not (
            self.emu.public_to_others and activity.visibility == "everyone"
        ):
            return not_found("Activity")
        return activity_id

    # -- handlers ----------------------------------------------------------------------------

    async def athlete(self, request: Request, token: AccessToken) -> Response:
        return json_response(self.emu.athlete_json(token.athlete_id))

    async def list_activities(self, request: Request, token: AccessToken) -> Response:
        """GET /athlete/activities, page-based (docs/strava.md §4.1).

        Always newest first (also with only ``after``: that order is UNCONFIRMED on Strava, §7).
        Both bounds are exclusive: ``after < start_date < before``, epoch seconds.
        """
        if not token.allows("activity:read"):
            return fault(401, *SCOPE_MISSING)
        params = request.query_params
        now = self.emu.clock()
        bounds: dict[str, int | None] = {}
        for name in ("before", "after"):
            raw = params.get(name)
            if raw in (None, ""):
                bounds[name] = None
                continue
            try:
                value = int(raw)
            except ValueError:
                return bad_request("Application", name, "invalid")
            # Milliseconds land ~50 000 years ahead: Strava answers "future" (§4.1). A day of
            # slack keeps a client whose clock runs a little ahead working.
            if value > now + 86400:
                return bad_request("Application", name, "future")
            bounds[name] = value
        try:
            page = int(params.get("page") or 1)
            per_page = int(params.get("per_page") or 30)
        except ValueError:
            return bad_request("Application", "page", "invalid")
        if page < 1:
            return bad_request("Application", "page", "invalid")
        per_page = max(1, min(200, per_page))  # max 200 (§4.1); larger values are clamped
        before, after = bounds["before"], bounds["after"]
        chosen = [
            a
            for a in self.emu.activities_for(token.athlete_id)
            if (before is None or a.start < before)
            and (after is None or a.start > after)
            and (not a.private or token.allows("activity:read_all"))
        ]
        page_items = chosen[(page - 1) * per_page : page * per_page]
        return json_response([self.emu.summary_json(a) for a in page_items])

    async def activity(self, request: Request, token: AccessToken) -> Response:
        found = self._visible(token, request.path_params["id"])
        if isinstance(found, Response):
            return found
        return json_response(self.emu.activity(found))

    async def laps(self, request: Request, token: AccessToken) -> Response:
        found = self._visible(token, request.path_params["id"])
        if isinstance(found, Response):
            return found
        activity = self.emu.get_activity(found)
        assert activity is not None
        derived = self.emu.derived(activity)
        return json_response(laps(activity, derived, self.emu.track(activity)))

    async def streams(self, request: Request, token: AccessToken) -> Response:
        """Streams keyed by type when ``key_by_type=true`` (§4.3), else the array form.

        Without ``keys`` only distance comes back (client/activity_streams.yaml). With keys,
        distance, the axis the others are indexed by, is added too (community reports that
        Strava always includes it; UNCONFIRMED).
        """
        found = self._visible(token, request.path_params["id"])
        if isinstance(found, Response):
            return found
        activity = self.emu.get_activity(found)
        assert activity is not None
        raw = request.query_params.get("keys", "")
        keys = [k.strip() for k in raw.split(",") if k.strip() in STREAM_KEYS]
        if "distance" not in keys:
            keys.append("distance")
        data = streams(self.emu.track(activity), keys)
        if request.query_params.get("key_by_type", "").lower() == "true":
            return json_response(data)
        return json_response([{"type": key, **value} for key, value in data.items()])


def build_app(emulator: Emulator) -> Starlette:
    api = Api(emulator)

    def route(path: str, endpoint: str, handler: Handler) -> Route:
        async def call(request: Request) -> Response:
            return await api.pipeline(request, endpoint, handler)

        return Route(path, call, methods=["GET"])

    api_routes: list[BaseRoute] = [
        route("/athlete", "GET /athlete", api.athlete),
        route("/athlete/activities", "GET /athlete/activities", api.list_activities),
        route("/activities/{id}", "GET /activities/{id}", api.activity),
        route("/activities/{id}/laps", "GET /activities/{id}/laps", api.laps),
        route("/activities/{id}/streams", "GET /activities/{id}/streams", api.streams),
        *subscriptions.routes(emulator),
        # The swagger's tokenUrl is /api/v3/oauth/token; both forms are in use (§3.2).
        Route("/oauth/token", oauth.Handlers(emulator).token, methods=["POST"]),
    ]
    return Starlette(
        routes=[
            Mount("/api/v3", routes=api_routes),
            Mount("/oauth", routes=oauth.routes(emulator)),
            Mount("/_emulator", routes=control.routes(emulator)),
        ]
    )
