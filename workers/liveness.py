"""A worker process's heartbeat (service/heartbeats.py), beating from the moment its dramatiq
worker has booted until it shuts down cleanly; a killed process just stops renewing it."""

from __future__ import annotations

from typing import Any

import dramatiq

from service.heartbeats import Heartbeat


class Heartbeating(dramatiq.Middleware):
    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.heartbeat.stop()


def install(broker: dramatiq.Broker, heartbeat: Heartbeat) -> None:
    """Beat `heartbeat` while a worker consumes from `broker`."""
    broker.add_middleware(Heartbeating(heartbeat))
