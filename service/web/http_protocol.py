"""uvicorn's httptools protocol with the two limits a public endpoint needs and uvicorn lacks:
a deadline for a request to arrive in full, and a cap on the size of its line and headers.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but waits without limit
for a new connection's first byte and for the rest of a request that trickles in a byte at a
time (slowloris): each such connection holds a socket, and one whose headers are complete
also holds a request task, for as long as the client likes. Here a timer starts when a
connection opens or a request begins, and the connection is closed unless the whole request
(line, headers, body) has arrived when it fires. The httptools parser itself accepts headers
of any size, so their bytes are counted as they arrive and the request is refused with 431
once they pass the cap. Both refusals are logged and counted (``GET /stats/webhooks``) under
``request_timeout`` and ``head_too_large``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.web.state import find_web_state

log = logging.getLogger(__name__)

_TOO_LARGE_BODY = b'{"error": "request line and headers too large", "reason": "head_too_large"}'
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _TOO_LARGE_BODY
)


class HeadTooLarge(Exception):
    """The request line and headers passed the cap (raised inside the parser's callback)."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request does not arrive in full
    within ``request_timeout`` seconds, and refuses (431) a request line and headers larger
    than ``max_head_bytes``. Give it to uvicorn as ``http=functools.partial(
    GuardedHttpToolsProtocol, request_timeout=…, max_head_bytes=…)``."""

    def __init__(
        self,
        *args: Any,
        request_timeout: float,
        max_head_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._request_timeout = request_timeout
        self._max_head_bytes = max_head_bytes
        self._head_bytes = 0
        self._head_too_large = False
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._request_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # The parser reports an exception from a callback as an invalid request.
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._max_head_bytes:
            self._head_too_large = True
            self._count_rejection("head_too_large")
            log.warning(
                "request refused reason=head_too_large client=%r limit=%d",
                self.client,
                self._max_head_bytes,
            )
            raise HeadTooLarge

    def _count_rejection(self, reason: str) -> None:
        state = find_web_state(self.app_state)
        if state is not None:  # on the event loop's thread, like the app
            state.webhook_counters.count_rejection(reason)

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self._request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self._count_rejection("request_timeout")
            log.warning(
                "connection closed reason=request_timeout client=%r timeout=%g",
                self.client,
                self._request_timeout,
            )
            self.transport.close()
