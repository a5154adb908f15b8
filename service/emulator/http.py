"""Response helpers: Strava's JSON rendering and its Fault envelope (docs/strava.md §4.5)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from service.emulator.emulator import Emulator


class StravaJSON(Response):
    """Compact JSON with the content type Strava sends (``application/json; charset=utf-8``)."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, status: int = 200) -> Response:
    return StravaJSON(body, status_code=status)


def fault(
    status: int, message: str, resource: str = "", field: str = "", code: str = ""
) -> Response:
    """``{"message": …, "errors": [{"resource", "field", "code"}]}``; no triple when no resource.

    The 5xx bodies (injected faults) are not from a recording: they reuse the envelope with an
    empty ``errors`` list.
    """
    errors = [{"resource": resource, "field": field, "code": code}] if resource else []
    return json_response({"message": message, "errors": errors}, status)


def bad_request(resource: str, field: str, code: str = "invalid") -> Response:
    return fault(400, "Bad Request", resource, field, code)


def not_found(resource: str) -> Response:
    """The 404 body from strava/go.strava's test (§4.2)."""
    return fault(404, "Record Not Found", resource, "id", "invalid")


async def params(request: Request) -> dict[str, str]:
    """Query parameters merged with a form-encoded body (Strava accepts either, §3.2)."""
    merged = dict(request.query_params)
    body = (await request.body()).decode("utf-8", errors="replace")
    if body and "json" not in request.headers.get("content-type", ""):
        merged.update(parse_qsl(body, keep_blank_values=True))
    elif body:
        try:
            loaded = json.loads(body)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            merged.update({str(k): str(v) for k, v in loaded.items()})
    return merged


async def injected_fault(emulator: Emulator) -> Response | None:
    """The answer of the next injected fault (``fail_next``, ``timeout_next``, the fault rate),
    or None when there is none. A timeout hangs like an overloaded upstream, then answers 504,
    but ``Emulator.close()`` releases it. Like a failing gateway in front of Strava, a fault
    is not counted against the rate limit and carries no rate-limit headers."""
    injected = emulator.take_fault()
    if injected is None:
        return None
    if injected.timeout:
        deadline = time.monotonic() + emulator.config.timeout_delay
        while time.monotonic() < deadline and not emulator.closing.is_set():
            await asyncio.sleep(0.05)
        return fault(504, "Gateway Timeout")
    return fault(injected.status or 500, "Server Error")
