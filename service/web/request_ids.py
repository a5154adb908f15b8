"""A request id for every HTTP request: the caller's `X-Request-ID` when it is sane (a proxy
in front may have set it, so its logs and ours join), else a new one; echoed in the answer's
`X-Request-ID`, and carried by every log line of the request (service/log_ids.py).

A pure ASGI middleware rather than Starlette's BaseHTTPMiddleware: the app, and uvicorn's
access log written when the answer starts, run in the context where the id was set.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.log_ids import log_ids

HEADER = "x-request-id"
# Printable, unambiguous in a log line and in a header: what tracing ids and UUIDs are made
# of, and bounded, so a caller cannot fill a log line with it.
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The incoming id when it is sane, else a new random one."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = [v for k, v in scope["headers"] if k == HEADER.encode()]
        # One header, decodable; two are ambiguous, and neither is trusted.
        given = incoming[0].decode("latin-1") if len(incoming) == 1 else None
        rid = request_id(given)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        with log_ids(request_id=rid):
            await self.app(scope, receive, send_with_id)
