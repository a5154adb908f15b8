"""Thin actors: decode the message, call the domain, decide about retries."""

from __future__ import annotations

import logging

import dramatiq

from service.ingest import process
from service.ingest.context import IngestContext
from service.messaging import EVENTS_QUEUE, PROCESS_EVENT

log = logging.getLogger(__name__)

MAX_EVENT_ATTEMPTS = 5


def declare_actors(broker: dramatiq.Broker, ctx: IngestContext) -> None:
    """Register the actors on `broker`, with their dependencies closed over."""

    def process_event(inbox_id: int) -> None:
        try:
            process.process_event(ctx, inbox_id)
        except Exception as error:
            if process.record_failure(ctx, inbox_id, error, max_attempts=MAX_EVENT_ATTEMPTS):
                log.error("event failed for good inbox_id=%s error=%r", inbox_id, error)
                return
            raise  # dramatiq's Retries middleware backs off and tries again

    dramatiq.actor(
        broker=broker,
        actor_name=PROCESS_EVENT,
        queue_name=EVENTS_QUEUE,
        # The inbox row counts attempts and decides when to give up; dramatiq must not first.
        max_retries=MAX_EVENT_ATTEMPTS,
        min_backoff=1_000,
        max_backoff=60_000,
    )(process_event)
