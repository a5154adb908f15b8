"""Response helpers: Strava's JSON rendering and its Fault envelope (docs/strava.md §4.5)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response


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
