"""Thin actors: decode the message, call the domain, decide about retries.

Dramatiq's own retries are off: a unit of work that waits for quota or backs off is sent
again with a delay and its row says why (`rate_limited` / `retry_after`), so a worker never
sleeps and a long rate limit never dead-letters anything.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable

import dramatiq

from service.ingest import hydrate, process, sync
from service.ingest.context import IngestContext
from service.ingest.policy import streams_for
from service.ingest.retry import Backoff, GiveUp, next_step
from service.ingest.workitems import EVENTS, HYDRATIONS, WorkItems
from service.messaging import (
    EVENTS_QUEUE,
    HYDRATE_ACTIVITY,
    HYDRATE_QUEUE,
    PROCESS_EVENT,
    RUN_SYNC_JOB,
    SYNC_QUEUE,
    Dispatcher,
)
from service.strava.quota import Tier, using_tier

log = logging.getLogger(__name__)


def declare_actors(
    broker: dramatiq.Broker,
    ctx: IngestContext,
    backoff: Backoff | None = None,
    sync_options: sync.SyncOptions | None = None,
) -> None:
    """Register the actors on `broker`, with their dependencies closed over."""
    policy = backoff or Backoff(max_attempts=ctx.retry_max_attempts)
    rng = random.Random()
    options = sync_options or sync.SyncOptions()

    def attempt(
        items: WorkItems,
        item_id: int,
        tier: Tier,
        work: Callable[[], object],
        resend: Callable[[int], object],
    ) -> None:
        try:
            with using_tier(tier):
                work()
        except Exception as error:
            now = ctx.clock()
            step = next_step(
                error,
                attempts=items.failed_attempts(ctx.engine, item_id) + 1,
                now=now,
                window_reset=ctx.quota.retry_at,
                backoff=policy,
                rng=rng,
            )
            # The exception's type and message only: Strava's fault, never request data.
            items.record(ctx.engine, item_id, step, f"{type(error).__name__}: {error}"[:2000], now)
            if isinstance(step, GiveUp):
                log.error("work failed for good item_id=%s reason=%s", item_id, step.reason)
                return
            delay = max(0, int((step.at - now).total_seconds() * 1000))
            log.info(
                "work deferred item_id=%s step=%s delay_ms=%s", item_id, type(step).__name__, delay
            )
            resend(delay)

    # A webhook fetch counts as above backfill: the stream policy decides its streams.
    webhook_streams = streams_for(options.policy, Tier.WEBHOOK)

    def fetch_webhook_streams(activity_id: int, tier: Tier) -> None:
        # The event is finished: the streams are the activity's hydration now, with its
        # bookkeeping and retries (the row stays `partial` until they are stored), at the
        # tier of its detail (`recent` past the owner's budget, service/ingest/budget.py).
        attempt(
            HYDRATIONS,
            activity_id,
            tier,
            lambda: hydrate.hydrate_missing_streams(ctx, activity_id, webhook_streams),
            lambda delay: hydrate_activity.send_with_options(
                args=(activity_id, tier.value), delay=delay
            ),
        )

    @dramatiq.actor(broker=broker, actor_name=PROCESS_EVENT, queue_name=EVENTS_QUEUE, max_retries=0)
    def process_event(inbox_id: int) -> None:
        def work() -> None:
            outcome = process.process_event(
                ctx, inbox_id, webhook_streams, fetch_streams=fetch_webhook_streams
            )
            if isinstance(outcome, process.Deferred):
                # Waiting out the activity's coalescing window (docs/events.md): not a retry.
                delay = outcome.delay_ms(ctx.clock())
                process_event.send_with_options(args=(inbox_id,), delay=delay)

        attempt(
            EVENTS,
            inbox_id,
            Tier.WEBHOOK,
            work,
            lambda delay: process_event.send_with_options(args=(inbox_id,), delay=delay),
        )

    @dramatiq.actor(
        broker=broker, actor_name=HYDRATE_ACTIVITY, queue_name=HYDRATE_QUEUE, max_retries=0
    )
    def hydrate_activity(activity_id: int, tier: str) -> None:
        keys = streams_for(options.policy, Tier(tier))
        attempt(
            HYDRATIONS,
            activity_id,
            Tier(tier),
            lambda: hydrate.hydrate_stored(ctx, activity_id, keys),
            lambda delay: hydrate_activity.send_with_options(args=(activity_id, tier), delay=delay),
        )

    dispatcher = Dispatcher(broker)
    # Who holds a job's lease: this process and thread (uuid4 keeps restarts apart).
    worker_id = uuid.uuid4().hex[:12]

    @dramatiq.actor(broker=broker, actor_name=RUN_SYNC_JOB, queue_name=SYNC_QUEUE, max_retries=0)
    def run_sync_job(job_id: int) -> None:
        owner = f"{worker_id}:{threading.get_ident()}"
        outcome = sync.run_job(
            ctx, job_id, owner=owner, options=options, send_hydration=dispatcher.send_hydration
        )
        match outcome:
            case sync.Wait(at):
                delay = max(0, int((at - ctx.clock()).total_seconds() * 1000))
                run_sync_job.send_with_options(args=(job_id,), delay=delay)
            case sync.Continue():
                run_sync_job.send(job_id)
