"""Where sync progress travels from the workers to the web processes: an append-only log of
progress events, each the athlete's whole sync state (service/ingest/sync_status.py) as JSON.

In production the log is a Redis Stream (`XADD … MAXLEN ~ N`): the stream's entry ids are the
events' ids, ordered, so a subscriber that reconnects with the last id it saw reads exactly
what came after (`after`), and the stream keeps a bounded tail of history for that. In
embedded mode the workers are threads of the web process and the log is a bounded list in
memory with the same ids and the same calls.

Readers: one listener per web process follows the log (`read`, blocking) and fans events out
to its subscribers (service/web/progress_fanout.py); nobody reads per subscriber except one
catch-up read when a subscriber resumes.
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis

from service.config import Settings

# The Redis key of the stream, beside the broker's and the quota scheduler's keys.
STREAM_KEY = "strava-ingest:sync-progress"
# An event id, as Redis gives them: milliseconds, then a sequence number.
EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
# Before the first event: every id is after it.
START = "0-0"
# Athletes whose last state a publishing process remembers (a bound on its memory).
REMEMBERED_ATHLETES = 10_000


def id_key(event_id: str) -> tuple[int, int]:
    """An id as a pair that sorts like the ids do."""
    millis, sequence = event_id.split("-")
    return int(millis), int(sequence)


@dataclass(frozen=True)
class ProgressEvent:
    """One change of one athlete's sync state: its id in the log, the athlete, and the
    state as the JSON text every subscriber is sent."""

    id: str
    athlete_id: int
    data: str

    @cached_property
    def state(self) -> dict[str, Any]:
        """The state, parsed once however many subscribers look at it."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @property
    def ends_sync(self) -> bool:
        """Whether this state ends the athlete's sync (its phase is `done`)."""
        return bool(self.state.get("phase") == "done")


class ProgressLog(ABC):
    """The log of progress events; appended by the workers, read by the web processes."""

    def __init__(self) -> None:
        # Publishers in one process append in the order they computed their states.
        self._order = threading.Lock()
        # What this process last appended per athlete, to skip states that change nothing.
        self._last: dict[int, str] = {}

    @contextmanager
    def ordered(self) -> Iterator[None]:
        """Hold while computing a state and appending it, so that this process never
        appends an older state after a newer one (other processes: an advisory lock)."""
        with self._order:
            yield

    def repeats(self, athlete_id: int, fingerprint: str) -> bool:
        """Whether `fingerprint` is what this process last appended for the athlete; if not,
        it becomes that. Call while holding `ordered`."""
        if self._last.get(athlete_id) == fingerprint:
            return True
        if len(self._last) >= REMEMBERED_ATHLETES:
            self._last.clear()
        self._last[athlete_id] = fingerprint
        return False

    @abstractmethod
    def append(self, athlete_id: int, data: str) -> str:
        """Add an event; returns its id."""

    @abstractmethod
    def read(self, after: str, timeout: float) -> list[ProgressEvent]:
        """The events after `after`, oldest first; waits up to `timeout` seconds for one."""

    @abstractmethod
    def after(self, after: str, until: str) -> tuple[list[ProgressEvent], bool]:
        """The events with ids in (after, until], oldest first, and whether the log still
        holds everything after `after` (False: older events were trimmed meanwhile)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection, if any; a blocked `read` returns."""


class MemoryProgressLog(ProgressLog):
    """The embedded log: the last `retained` events in this process."""

    def __init__(self, retained: int = 10_000) -> None:
        super().__init__()
        self._events: deque[ProgressEvent] = deque(maxlen=retained)
        self._sequence = 0
        self._changed = threading.Condition()
        self._closed = False

    def append(self, athlete_id: int, data: str) -> str:
        with self._changed:
            self._sequence += 1
            event = ProgressEvent(f"0-{self._sequence}", athlete_id, data)
            self._events.append(event)
            self._changed.notify_all()
        return event.id

    def read(self, after: str, timeout: float) -> list[ProgressEvent]:
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed or self._newer(after) is not None, timeout=timeout
            )
            return self._since(after)

    def after(self, after: str, until: str) -> tuple[list[ProgressEvent], bool]:
        with self._changed:
            found = [e for e in self._since(after) if id_key(e.id) <= id_key(until)]
            # Ids are consecutive here: the oldest kept is the one right after `after` or older.
            oldest = id_key(self._events[0].id) if self._events else (0, 0)
            return found, oldest <= _next(after)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _newer(self, after: str) -> ProgressEvent | None:
        if self._events and id_key(self._events[-1].id) > id_key(after):
            return self._events[-1]
        return None

    def _since(self, after: str) -> list[ProgressEvent]:
        floor = id_key(after)
        return [event for event in self._events if id_key(event.id) > floor]


class RedisProgressLog(ProgressLog):
    """The production log: a Redis Stream trimmed to about `retained` entries."""

    def __init__(self, client: redis.Redis, retained: int = 10_000) -> None:
        super().__init__()
        self._redis = client
        self._retained = retained

    @classmethod
    def from_url(cls, url: str, retained: int = 10_000) -> RedisProgressLog:
        return cls(redis.Redis.from_url(url), retained)

    def append(self, athlete_id: int, data: str) -> str:
        entry_id = self._redis.xadd(
            STREAM_KEY,
            {"athlete_id": str(athlete_id), "data": data},
            maxlen=self._retained,
            approximate=True,
        )
        return _text(entry_id)

    def read(self, after: str, timeout: float) -> list[ProgressEvent]:
        answer: Any = self._redis.xread({STREAM_KEY: after}, block=max(1, int(timeout * 1000)))
        if not answer:
            return []
        return [_event(entry) for entry in answer[0][1]]

    def after(self, after: str, until: str) -> tuple[list[ProgressEvent], bool]:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrange(STREAM_KEY, min=f"({after}", max=until)
            pipe.xinfo_stream(STREAM_KEY)
            try:
                entries, info = pipe.execute()
            except redis.ResponseError:  # no stream yet: nothing was ever published
                return [], True
        # Nothing after `after` is lost while the stream still holds `after` (or older), or
        # has never been trimmed (the stream's ids are sparse, so a gap proves nothing).
        first = info.get("first-entry")
        kept = first is not None and id_key(_text(first[0])) <= id_key(after)
        untrimmed = int(info.get("entries-added", 0)) == int(info.get("length", 0))
        return [_event(entry) for entry in entries], kept or untrimmed

    def close(self) -> None:
        self._redis.close()


def _next(event_id: str) -> tuple[int, int]:
    millis, sequence = id_key(event_id)
    return millis, sequence + 1


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _event(entry: Sequence[Any]) -> ProgressEvent:
    entry_id, fields = entry[0], entry[1]
    return ProgressEvent(_text(entry_id), int(_text(fields[b"athlete_id"])), _text(fields[b"data"]))


def build_progress_log(settings: Settings) -> ProgressLog:
    """The log for these settings, in Redis at BROKER_URL or in memory (embedded mode)."""
    if settings.broker_url == "memory://":
        return MemoryProgressLog(settings.sync_events_retained)
    return RedisProgressLog.from_url(settings.broker_url, settings.sync_events_retained)
