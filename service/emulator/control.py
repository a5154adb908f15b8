"""/_emulator: the Python API over HTTP (JSON in and out), for an emulator in another process."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from service.emulator.emulator import Emulator


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    loaded = json.loads(raw)
    if not isinstance(loaded, dict):
        raise ValueError("expected a JSON object")
    return loaded


class Control:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def athletes(self, request: Request) -> Response:
        return JSONResponse({"athletes": self.emu.athlete_ids, "logged_in": self.emu.logged_in})

    async def add_athlete(self, request: Request) -> Response:
        return JSONResponse({"id": self.emu.add_athlete(**await _body(request))}, 201)

    async def login(self, request: Request) -> Response:
        self.emu.login(int((await _body(request))["athlete_id"]))
        return JSONResponse({"logged_in": self.emu.logged_in})

    async def tokens(self, request: Request) -> Response:
        scope = (await _body(request)).get("scope", "read,activity:read_all")
        athlete_id = int(request.path_params["id"])
        return JSONResponse(self.emu.issue_tokens(athlete_id, str(scope)), 201)

    async def activities(self, request: Request) -> Response:
        return JSONResponse(self.emu.activities_of(int(request.path_params["id"])))

    async def create_activity(self, request: Request) -> Response:
        athlete_id = int(request.path_params["id"])
        return JSONResponse(self.emu.create_activity(athlete_id, **await _body(request)), 201)

    async def update_activity(self, request: Request) -> Response:
        body = await _body(request)
        changed = self.emu.update_activity(
            int(request.path_params["id"]),
            title=body.get("title"),
            type=body.get("type"),
            private=body.get("private"),
        )
        return JSONResponse(changed)

    async def delete_activity(self, request: Request) -> Response:
        self.emu.delete_activity(int(request.path_params["id"]))
        return Response(status_code=204)

    async def deauthorize(self, request: Request) -> Response:
        """``{"send_event": false}`` revokes the tokens without pushing the event: the grant
        is gone on Strava before its deauthorization event reaches the service."""
        send_event = bool((await _body(request)).get("send_event", True))
        self.emu.deauthorize(int(request.path_params["id"]), send_event=send_event)
        return Response(status_code=204)

    async def calls(self, request: Request) -> Response:
        return JSONResponse(dict(self.emu.calls))

    async def reset_calls(self, request: Request) -> Response:
        self.emu.reset_calls()
        return Response(status_code=204)

    async def deliveries(self, request: Request) -> Response:
        return JSONResponse([d.as_json() for d in self.emu.deliveries])

    async def wait(self, request: Request) -> Response:
        timeout = float((await _body(request)).get("timeout", 10.0))
        # Waiting blocks a thread, never the server's event loop.
        done = await run_in_threadpool(self.emu.wait_for_deliveries, timeout)
        return JSONResponse({"done": done})

    async def faults(self, request: Request) -> Response:
        """``{"fail_next": n, "status": 503}``, ``{"timeout_next": n}``, ``{"fault_rate": r}``."""
        body = await _body(request)
        if "fail_next" in body:
            self.emu.fail_next(int(body["fail_next"]), int(body.get("status", 500)))
        if "timeout_next" in body:
            self.emu.timeout_next(int(body["timeout_next"]))
        if "fault_rate" in body:
            self.emu.set_fault_rate(float(body["fault_rate"]))
        return Response(status_code=204)

    async def subscription(self, request: Request) -> Response:
        return JSONResponse(self.emu.subscription)

    async def ratelimits(self, request: Request) -> Response:
        return JSONResponse(asdict(self.emu.rate_limit_usage()))


def routes(emulator: Emulator) -> list[BaseRoute]:
    c = Control(emulator)

    def guarded(handler: Any) -> Any:
        async def call(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except KeyError as exc:
                return _error(404, f"unknown id: {exc}")
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc))
            return response

        return call

    table: list[tuple[str, Any, str]] = [
        ("/athletes", c.athletes, "GET"),
        ("/athletes", c.add_athlete, "POST"),
        ("/login", c.login, "POST"),
        ("/athletes/{id}/tokens", c.tokens, "POST"),
        ("/athletes/{id}/activities", c.activities, "GET"),
        ("/athletes/{id}/activities", c.create_activity, "POST"),
        ("/athletes/{id}/deauthorize", c.deauthorize, "POST"),
        ("/activities/{id}", c.update_activity, "PATCH"),
        ("/activities/{id}", c.delete_activity, "DELETE"),
        ("/calls", c.calls, "GET"),
        ("/calls", c.reset_calls, "DELETE"),
        ("/deliveries", c.deliveries, "GET"),
        ("/deliveries/wait", c.wait, "POST"),
        ("/faults", c.faults, "POST"),
        ("/subscription", c.subscription, "GET"),
        ("/ratelimits", c.ratelimits, "GET"),
    ]
    return [Route(path, guarded(h), methods=[method]) for path, h, method in table]
