"""Entry point of the worker processes: `dramatiq workers.main:broker` (Procfile `worker`)."""

from __future__ import annotations

import sys

from service.config import ConfigError, Settings, load_settings
from service.db import check_schema
from service.ingest.context import build_context
from service.ingest.sync import SyncOptions
from service.logs import configure_logging
from workers.actors import declare_actors
from workers.broker import setup_broker

try:
    settings = load_settings(Settings)
except ConfigError as error:
    sys.exit(str(error))

configure_logging(settings.log_level)
broker = setup_broker(settings.broker_url)
context = build_context(settings)
check_schema(context.engine)
declare_actors(broker, context, sync_options=SyncOptions.from_settings(settings))
