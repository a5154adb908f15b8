"""Liveness of the service's processes: each web, worker and scheduler process writes a
heartbeat (who it is, since when, when it last beat) that expires unless renewed.

Production keeps them in Redis (the broker's server, shared by every process and host);
embedded mode, where every role lives in the one `serve` process, keeps them in memory.
`strava-ingest health` and `GET /readyz` read them (service/liveness.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import redis

from service.config import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# The roles of the Procfile's processes.
WEB, WORKER, SCHEDULER = "web", "worker", "scheduler"
ROLES = (WEB, WORKER, SCHEDULER)


@dataclass(frozen=True)
class Beat:
    """One process's heartbeat. Times are seconds since the epoch."""

    role: str
    instance: str
    pid: int
    host: str
    started_at: float
    last_beat: float


class HeartbeatStore(Protocol):
    def beat(self, beat: Beat, ttl: float) -> None:
        """Record `beat`, forgotten after `ttl` seconds unless beaten again."""

    def forget(self, beat: Beat) -> None:
        """Drop `beat` at once (its process stops cleanly)."""

    def alive(self) -> list[Beat]:
        """Every heartbeat that has not expired."""

    def close(self) -> None: ...


class MemoryHeartbeats:
    """Embedded mode's store: a dict in the one process, expiring on a monotonic clock."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._beats: dict[str, tuple[Beat, float]] = {}
        self._lock = threading.Lock()

    def beat(self, beat: Beat, ttl: float) -> None:
        with self._lock:
            self._beats[beat.instance] = (beat, self._clock() + ttl)

    def forget(self, beat: Beat) -> None:
        with self._lock:
            self._beats.pop(beat.instance, None)

    def alive(self) -> list[Beat]:
        now = self._clock()
        with self._lock:
            return [beat for beat, expires in self._beats.values() if expires > now]

    def close(self) -> None:
        pass


KEY_PREFIX = "strava-ingest:heartbeat:"


class RedisHeartbeats:
    """Production's store: one key per process, `{prefix}{role}:{instance}`, holding the beat
    as JSON, with Redis's own expiry as the deadline."""

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str) -> RedisHeartbeats:
        # Short timeouts: a health probe must answer even when Redis does not.
        return cls(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2))

    def _key(self, beat: Beat) -> str:
        return f"{self._prefix}{beat.role}:{beat.instance}"

    def beat(self, beat: Beat, ttl: float) -> None:
        self._client.set(self._key(beat), json.dumps(asdict(beat)), px=max(1, int(ttl * 1000)))

    def forget(self, beat: Beat) -> None:
        self._client.delete(self._key(beat))

    def alive(self) -> list[Beat]:
        keys = list(self._client.scan_iter(match=f"{self._prefix}*", count=500))
        if not keys:
            return []
        beats = []
        for value in self._client.mget(keys):
            if value is None:  # expired between the scan and the read
                continue
            try:
                beats.append(Beat(**json.loads(value)))
            except (ValueError, TypeError):
                log.warning("unreadable heartbeat ignored")
        return beats

    def close(self) -> None:
        self._client.close()


def build_heartbeats(settings: Settings) -> HeartbeatStore:
    """Redis on the broker's server in production, memory in embedded mode; the caller
    closes it."""
    if settings.broker_url == "memory://":
        return MemoryHeartbeats()
    return RedisHeartbeats.from_url(settings.broker_url)


class Heartbeat:
    """The heartbeat of this process in one role: a daemon thread renews it every `interval`
    seconds, each beat valid for `ttl`. A beat that fails (Redis away) is logged and tried
    again at the next interval; the process keeps working."""

    def __init__(
        self,
        store: HeartbeatStore,
        role: str,
        *,
        interval: float,
        ttl: float,
        clock: Clock = time.time,
    ) -> None:
        now = clock()
        self.store = store
        self.interval = interval
        self.ttl = ttl
        self._clock = clock
        self.beat = Beat(
            role=role,
            instance=uuid.uuid4().hex[:12],
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=now,
            last_beat=now,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_settings(cls, store: HeartbeatStore, role: str, settings: Settings) -> Heartbeat:
        return cls(
            store,
            role,
            interval=settings.heartbeat_interval_seconds,
            ttl=settings.heartbeat_ttl_seconds,
        )

    def beat_once(self) -> None:
        self.beat = replace(self.beat, last_beat=self._clock())
        try:
            self.store.beat(self.beat, self.ttl)
        except redis.RedisError as error:
            log.warning("heartbeat not recorded role=%s error=%s", self.beat.role, error)

    def start(self) -> None:
        """Beat now, then every interval until `stop`."""
        if self._thread is not None:
            return
        # The pid of the process that starts beating (dramatiq forks its worker processes).
        self.beat = replace(self.beat, pid=os.getpid())
        self.beat_once()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.beat.role}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat_once()

    def stop(self) -> None:
        """Stop beating and drop the heartbeat, so the process is missed at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        try:
            self.store.forget(self.beat)
        except redis.RedisError as error:
            log.warning("heartbeat not dropped role=%s error=%s", self.beat.role, error)
