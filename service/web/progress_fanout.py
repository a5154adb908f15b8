"""One listener per web process follows the sync progress log and hands every event to the
process's subscribers (the SSE streams of service/web/syncs.py).

The listener is a thread blocked on the log (`XREAD BLOCK` in production); each batch it
reads is passed to the event loop, which offers every event to the subscribers it concerns.
Nothing reads per subscriber, except once when a subscriber resumes from an event id.

A subscriber has a bounded queue. When a slow client lets it fill up, what waits is folded
into the latest event of each athlete (every event is a whole state, so the newest one says
all the dropped ones did) and `dropped` counts the events it never got: a slow client never
holds up the listener or the other subscribers, and it still ends on the current state.

The fan-out also keeps each athlete's latest event, which a new subscriber starts from.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

from service.ingest.progress import START, ProgressEvent, ProgressLog, id_key

log = logging.getLogger(__name__)

# How long one blocking read of the log lasts, so that the listener notices shutdown.
READ_TIMEOUT_SECONDS = 1.0


class Subscriber:
    """One stream's view of the events: those of `athlete_id` (None: every athlete)."""

    def __init__(self, athlete_id: int | None, capacity: int) -> None:
        self.athlete_id = athlete_id
        self.capacity = capacity
        self.dropped = 0
        self.closed = False
        self._pending: deque[ProgressEvent] = deque()
        self._ready = asyncio.Event()

    def wants(self, event: ProgressEvent) -> bool:
        return self.athlete_id is None or self.athlete_id == event.athlete_id

    def offer(self, event: ProgressEvent) -> None:
        """Queue the event, or fold what waits into the latest per athlete when full."""
        self._pending.append(event)
        if len(self._pending) > self.capacity:
            latest: dict[int, ProgressEvent] = {}
            for waiting in self._pending:
                latest[waiting.athlete_id] = waiting
            kept = sorted(latest.values(), key=lambda e: id_key(e.id))
            self.dropped += len(self._pending) - len(kept)
            self._pending = deque(kept)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next_batch(self, timeout: float | None = None) -> list[ProgressEvent]:
        """What has arrived, oldest first; waits for something, or up to `timeout` seconds
        (empty: nothing came). Empty once closed."""
        if not self._pending and not self.closed:
            try:
                # Not wait_for: it starts a task per call, for every subscriber and event.
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        self._ready.clear()
        batch = list(self._pending)
        self._pending.clear()
        return batch


class ProgressFanout:
    """The web process's listener and its subscribers."""

    def __init__(self, progress_log: ProgressLog, capacity: int) -> None:
        self.progress_log = progress_log
        self.capacity = capacity
        self.subscribers: set[Subscriber] = set()
        # The newest event read, and each athlete's latest: where new subscribers start.
        self.last_id = START
        self.latest: dict[int, ProgressEvent] = {}
        self.events_read = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read what the log holds (each athlete's latest state), then follow it."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="progress-listener", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        self._stop.set()
        for subscriber in list(self.subscribers):
            subscriber.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, READ_TIMEOUT_SECONDS * 5)

    def subscribe(self, athlete_id: int | None) -> Subscriber:
        subscriber = Subscriber(athlete_id, self.capacity)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if subscriber.dropped:
            log.info(
                "progress subscriber lagged athlete_id=%s dropped=%s",
                subscriber.athlete_id,
                subscriber.dropped,
            )

    def dispatch(self, events: list[ProgressEvent]) -> None:
        """On the event loop: hand a batch to every subscriber it concerns."""
        for event in events:
            if id_key(event.id) <= id_key(self.last_id):
                continue
            self.last_id = event.id
            self.latest[event.athlete_id] = event
            self.events_read += 1
            for subscriber in self.subscribers:
                if subscriber.wants(event):
                    subscriber.offer(event)

    def _listen(self) -> None:
        after = START
        while not self._stop.is_set():
            try:
                events = self.progress_log.read(after, READ_TIMEOUT_SECONDS)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("progress log unreadable; trying again")
                self._stop.wait(READ_TIMEOUT_SECONDS)
                continue
            if not events:
                continue
            after = events[-1].id
            self._hand_over(events)

    def _hand_over(self, events: list[ProgressEvent]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        call: Callable[[list[ProgressEvent]], None] = self.dispatch
        try:
            loop.call_soon_threadsafe(call, events)
        except RuntimeError:  # the loop closed during shutdown
            return
