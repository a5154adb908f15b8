"""dramatiq's Prometheus series for the workers, counted into `EventMetrics`.

The same names, labels and buckets as dramatiq's own middleware
(``dramatiq.middleware.prometheus``), so its dashboards work, but published like the
service's other per-process counters (service/metrics/events.py) rather than through its
multiprocess directory and its own HTTP server on port 9191 of each worker host.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from service.metrics.events import (
    DRAMATIQ_DURATION,
    DRAMATIQ_DURATION_BUCKETS,
    DRAMATIQ_ERRORS,
    DRAMATIQ_IN_PROGRESS,
    DRAMATIQ_MESSAGES,
    DRAMATIQ_REJECTS,
    DRAMATIQ_RETRIES,
    EventMetrics,
    SeriesKey,
    series,
)


class DramatiqMetrics(Middleware):
    """Messages processed, failed, retried, rejected and in progress per queue and actor,
    and how long each took. Closes ``metrics`` when the worker shuts down.

    Parameters:
        metrics: this process's `EventMetrics`.
    """

    def __init__(self, metrics: EventMetrics) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()
        self.metrics.gauge_add(_key(DRAMATIQ_IN_PROGRESS, message), 1)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None:
            self.metrics.gauge_add(_key(DRAMATIQ_IN_PROGRESS, message), -1)
            self.metrics.observe(
                DRAMATIQ_DURATION,
                DRAMATIQ_DURATION_BUCKETS,
                (time.perf_counter() - started) * 1000,
                **_labels(message),
            )
        self.metrics.count(_key(DRAMATIQ_MESSAGES, message))
        if exception is not None:
            self.metrics.count(_key(DRAMATIQ_ERRORS, message))

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.metrics.count(_key(DRAMATIQ_REJECTS, message))

    def after_enqueue(self, broker: dramatiq.Broker, message: Message[Any], delay: int) -> None:
        if "retries" in message.options:
            self.metrics.count(_key(DRAMATIQ_RETRIES, message))

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.metrics.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.metrics.close()


def _labels(message: MessageProxy | Message[Any]) -> dict[str, str]:
    return {"queue_name": message.queue_name, "actor_name": message.actor_name}


def _key(name: str, message: MessageProxy | Message[Any]) -> SeriesKey:
    return series(name, **_labels(message))
