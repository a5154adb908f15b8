"""Webhook event delivery on a background event loop (docs/strava.md §1.3).

Strava POSTs each event to the callback, expects a 200 within two seconds, and makes at most
three attempts in total. Delivery runs on its own thread and loop so that whoever triggered the
event (a test thread, or a request handler on the server's loop) is never blocked by it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of one event: the answer's status, or why none came."""

    event: dict[str, Any]
    attempt: int
    status: int | None
    error: str | None
    at: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Deliverer:
    """Sends events in the background, retrying until a 200 or ``attempts`` are used up."""

    def __init__(
        self, *, timeout: float, attempts: int, retry_delay: float, clock: Callable[[], float]
    ) -> None:
        self._timeout = timeout
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._clock = clock
        self._cond = threading.Condition()
        self._pending = 0
        self._records: list[DeliveryAttempt] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._cond:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="strava-emulator-delivery", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, url: str, event: dict[str, Any]) -> None:
        loop = self._ensure_loop()
        with self._cond:
            self._pending += 1
        asyncio.run_coroutine_threadsafe(self._deliver(url, event), loop)

    async def _deliver(self, url: str, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":"))
        headers = {"Content-Type": "application/json"}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                for attempt in range(1, self._attempts + 1):
                    status: int | None = None
                    error: str | None = None
                    try:
                        response = await client.post(url, content=body, headers=headers)
                        status = response.status_code
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    self._record(DeliveryAttempt(event, attempt, status, error, self._clock()))
                    if status == 200:
                        return
                    log.info("event delivery attempt %d failed: %s", attempt, error or status)
                    if attempt < self._attempts:
                        await asyncio.sleep(self._retry_delay)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def _record(self, record: DeliveryAttempt) -> None:
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()

    @property
    def records(self) -> list[DeliveryAttempt]:
        with self._cond:
            return list(self._records)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    def clear(self) -> None:
        with self._cond:
            self._records.clear()

    def wait(self, timeout: float) -> bool:
        """Block until no delivery is outstanding; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        with self._cond:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
