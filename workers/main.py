"""Entry point of the worker processes: `dramatiq workers.main:start` (Procfile `worker`).

dramatiq's CLI calls `start` in each worker process before it starts the worker threads;
importing this module only defines it.
"""

from __future__ import annotations

import sys

import dramatiq

from service.config import ConfigError, Settings, load_settings
from service.db import check_schema
from service.heartbeats import WORKER, Heartbeat, build_heartbeats
from service.ingest.context import build_context
from service.ingest.sync import SyncOptions
from service.logs import configure_logging
from service.metrics.collect import build_registry
from service.metrics.dramatiq_series import DramatiqMetrics
from service.metrics.events import EventMetrics, build_event_store
from service.metrics.exposition import serve_metrics
from workers import liveness
from workers.actors import setup_workers
from workers.broker import setup_broker
from workers.stop_signal import treat_copies_as_one_stop


def start() -> dramatiq.Broker:
    """Read the settings, build the broker (dramatiq's global one, which the CLI then uses)
    and the ingest context, and set up the actors on them."""
    try:
        settings = load_settings(Settings)
    except ConfigError as error:
        sys.exit(str(error))
    configure_logging(settings.log_level, settings.log_format_in_effect)
    treat_copies_as_one_stop()
    broker = setup_broker(settings.broker_url)
    # Started when this process's worker boots and closed when it shuts down.
    metrics = EventMetrics(build_event_store(settings.broker_url))
    broker.add_middleware(DramatiqMetrics(metrics))
    context = build_context(settings, metrics=metrics)
    check_schema(context.engine)
    setup_workers(broker, context, sync_options=SyncOptions.from_settings(settings))
    # Its store lives as long as the process: the heartbeat beats until the worker stops.
    heartbeats = build_heartbeats(settings)
    liveness.install(broker, Heartbeat.for_settings(heartbeats, WORKER, settings))
    if settings.metrics_port is not None:
        # Stopped with the process: dramatiq's worker processes exit when it shuts down.
        serve_metrics(
            settings.metrics_port,
            build_registry(context.engine, broker, context.quota, metrics.store),
        )
    return broker
