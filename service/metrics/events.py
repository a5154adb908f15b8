"""Events one process sees, summed in memory and published where every process reads them.

A process counts into an `EventMetrics` (cheap: a dict under a lock, no I/O on the caller's
thread or event loop); a background thread publishes the sums to an `EventStore` about once a
second. Counters are added to the store's totals (Redis ``HINCRBYFLOAT``), so any number of
processes add up; gauges (messages in progress, SSE subscribers) are this process's current
values, kept under a key of its own that expires ``GAUGE_TTL_SECONDS`` after its last
publication, so a killed process stops counting within that. A publication that fails (Redis
down) keeps its sums for the next one: nothing is lost but what a killed process had not yet
published (at most one interval).

Why Redis and not prometheus-client's multiprocess mode: see the package's docstring.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Mapping

import redis

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]
"""A series: its metric name and its labels, sorted by name."""

PUBLISH_INTERVAL_SECONDS = 1.0
# A process that has not refreshed its gauges for this long is taken for gone.
GAUGE_TTL_SECONDS = 15.0

# Strava answers in tens to hundreds of milliseconds; the client's timeout is 10 s.
STRAVA_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# dramatiq's own middleware's buckets (milliseconds), so dashboards made for it fit.
DRAMATIQ_DURATION_BUCKETS = (
    5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 30000, 60000,
    600000, 900000,
)  # fmt: skip

REJECTED_REQUESTS = "strava_ingest_rejected_requests_total"
STRAVA_DURATION = "strava_ingest_strava_request_duration_seconds"
STRAVA_ERRORS = "strava_ingest_strava_request_errors_total"
SSE_SUBSCRIBERS = "strava_ingest_sse_subscribers"
DRAMATIQ_MESSAGES = "dramatiq_messages_total"
DRAMATIQ_ERRORS = "dramatiq_message_errors_total"
DRAMATIQ_RETRIES = "dramatiq_message_retries_total"
DRAMATIQ_REJECTS = "dramatiq_message_rejects_total"
DRAMATIQ_IN_PROGRESS = "dramatiq_messages_inprogress"
DRAMATIQ_DURATION = "dramatiq_message_duration_milliseconds"


def series(name: str, **labels: str) -> SeriesKey:
    return name, tuple(sorted(labels.items()))


class EventStore(ABC):
    """Where the processes' sums meet."""

    @abstractmethod
    def add(self, deltas: Mapping[SeriesKey, float]) -> None:
        """Add ``deltas`` to the counters' totals."""

    @abstractmethod
    def publish_gauges(self, process: str, values: Mapping[SeriesKey, float]) -> None:
        """Replace ``process``'s gauges, valid for a while (GAUGE_TTL_SECONDS)."""

    @abstractmethod
    def drop_gauges(self, process: str) -> None:
        """Forget ``process``'s gauges (it is stopping)."""

    @abstractmethod
    def counters(self) -> dict[SeriesKey, float]:
        """Every counter's total."""

    @abstractmethod
    def gauges(self) -> dict[SeriesKey, float]:
        """Every gauge, summed over the live processes."""

    def close(self) -> None:
        return None


class MemoryEventStore(EventStore):
    """For embedded mode: one process, so its own memory is the whole deployment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[SeriesKey, float] = defaultdict(float)
        self._gauges: dict[str, dict[SeriesKey, float]] = {}

    def add(self, deltas: Mapping[SeriesKey, float]) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._counters[key] += delta

    def publish_gauges(self, process: str, values: Mapping[SeriesKey, float]) -> None:
        with self._lock:
            self._gauges[process] = dict(values)

    def drop_gauges(self, process: str) -> None:
        with self._lock:
            self._gauges.pop(process, None)

    def counters(self) -> dict[SeriesKey, float]:
        with self._lock:
            return dict(self._counters)

    def gauges(self) -> dict[SeriesKey, float]:
        with self._lock:
            return _summed(self._gauges.values())


class RedisEventStore(EventStore):
    """The deployment's sums in Redis: one hash of counter totals, one expiring hash of
    gauges per process.

    Parameters:
        client: a Redis client (the broker's Redis).
        prefix: the keys' prefix.
        gauge_ttl: seconds a process's gauges outlive its last publication.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "strava_ingest:metrics:",
        gauge_ttl: float = GAUGE_TTL_SECONDS,
    ) -> None:
        self._client = client
        self._gauge_ttl_ms = int(gauge_ttl * 1000)
        self._counters_key = f"{prefix}counters"
        self._gauges_prefix = f"{prefix}gauges:"

    @classmethod
    def from_url(cls, url: str) -> RedisEventStore:
        return cls(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2))

    def add(self, deltas: Mapping[SeriesKey, float]) -> None:
        if not deltas:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, delta in deltas.items():
            pipe.hincrbyfloat(self._counters_key, _field(key), delta)
        pipe.execute()

    def publish_gauges(self, process: str, values: Mapping[SeriesKey, float]) -> None:
        key = f"{self._gauges_prefix}{process}"
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(key)
        if values:
            pipe.hset(key, mapping={_field(series): value for series, value in values.items()})
            pipe.pexpire(key, self._gauge_ttl_ms)
        pipe.execute()

    def drop_gauges(self, process: str) -> None:
        self._client.delete(f"{self._gauges_prefix}{process}")

    def counters(self) -> dict[SeriesKey, float]:
        raw: dict[bytes, bytes] = self._client.hgetall(self._counters_key)  # type: ignore[assignment]
        return {_series(field): float(value) for field, value in raw.items()}

    def gauges(self) -> dict[SeriesKey, float]:
        keys = list(self._client.scan_iter(match=f"{self._gauges_prefix}*", count=100))
        if not keys:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        per_process = [
            {_series(field): float(value) for field, value in raw.items()} for raw in pipe.execute()
        ]
        return _summed(per_process)

    def close(self) -> None:
        self._client.close()


def _field(key: SeriesKey) -> str:
    name, labels = key
    return json.dumps([name, [list(pair) for pair in labels]], separators=(",", ":"))


def _series(field: bytes | str) -> SeriesKey:
    name, labels = json.loads(field)
    return str(name), tuple((str(k), str(v)) for k, v in labels)


def _summed(per_process: Iterable[Mapping[SeriesKey, float]]) -> dict[SeriesKey, float]:
    total: dict[SeriesKey, float] = defaultdict(float)
    for values in per_process:
        for key, value in values.items():
            total[key] += value
    return dict(total)


def build_event_store(broker_url: str) -> EventStore:
    """In memory for embedded mode (``memory://``), else in the broker's Redis."""
    if broker_url == "memory://":
        return MemoryEventStore()
    return RedisEventStore.from_url(broker_url)


class EventMetrics:
    """This process's counters and gauges, published to ``store`` by a background thread
    (``start``; ``close`` publishes what is left and withdraws the gauges).

    Parameters:
        store: where every process's sums meet.
        interval: seconds between publications.
    """

    def __init__(self, store: EventStore, *, interval: float = PUBLISH_INTERVAL_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self.process = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._pending: dict[SeriesKey, float] = defaultdict(float)
        self._gauges: dict[SeriesKey, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # What the service counts.

    def rejection(self, reason: str) -> None:
        """A request refused with a 4xx/5xx error of ``reason`` (service/web/errors.py)."""
        self.count(series(REJECTED_REQUESTS, reason=reason))

    def strava_call(self, endpoint: str, status: int | None, seconds: float) -> None:
        """One request to Strava: its endpoint template, HTTP status (None: no answer)."""
        self.observe(STRAVA_DURATION, STRAVA_LATENCY_BUCKETS, seconds, endpoint=endpoint)
        if status is None or status >= 400:
            self.count(
                series(STRAVA_ERRORS, endpoint=endpoint, status=str(status or "no_response"))
            )

    def sse_subscribers_changed(self, delta: int) -> None:
        """A progress stream opened (+1) or closed (-1) in this process."""
        self.gauge_add(series(SSE_SUBSCRIBERS), delta)

    # The primitives.

    def count(self, key: SeriesKey, amount: float = 1.0) -> None:
        with self._lock:
            self._pending[key] += amount

    def observe(self, name: str, buckets: Iterable[float], value: float, **labels: str) -> None:
        """One observation of a histogram (cumulative buckets, as Prometheus has them)."""
        with self._lock:
            for bound in (*buckets, math.inf):
                if value <= bound:
                    self._pending[series(f"{name}_bucket", le=_bound(bound), **labels)] += 1
            self._pending[series(f"{name}_sum", **labels)] += value
            self._pending[series(f"{name}_count", **labels)] += 1

    def gauge_add(self, key: SeriesKey, delta: float) -> None:
        with self._lock:
            self._gauges[key] += delta

    # Publication.

    def publish(self) -> None:
        """Send the sums counted since the last publication, and the gauges, to the store.
        On failure the sums are kept for the next try."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
            gauges = dict(self._gauges)
        try:
            self.store.add(pending)
        except (redis.RedisError, OSError) as error:
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] += amount
            log.warning("metrics not published error=%s", type(error).__name__)
            return
        # Apart from the counters: a failure here must not put sums already added back.
        try:
            self.store.publish_gauges(self.process, gauges)
        except (redis.RedisError, OSError) as error:
            log.warning("metrics gauges not published error=%s", type(error).__name__)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.publish()
        try:
            self.store.drop_gauges(self.process)
        except (redis.RedisError, OSError) as error:
            log.warning("metrics gauges not withdrawn error=%s", type(error).__name__)
        self.store.close()


def _bound(bound: float) -> str:
    # Prometheus's own spelling of bucket bounds ("0.25", "10.0", "+Inf").
    return "+Inf" if math.isinf(bound) else repr(float(bound))
