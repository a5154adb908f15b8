"""Dramatiq broker set-up for the worker processes (Redis) or threads (embedded mode)."""

from __future__ import annotations

import dramatiq

from service.messaging import build_broker


def setup_broker(broker_url: str) -> dramatiq.Broker:
    """Build the broker and make it dramatiq's global one, which its CLI uses."""
    broker = build_broker(broker_url)
    dramatiq.set_broker(broker)
    return broker


def start_embedded_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    """Worker threads inside the web process: embedded mode's stand-in for `worker`."""
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    return worker
