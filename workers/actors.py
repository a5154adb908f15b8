"""Thin actors: decode the message, call the domain, decide about retries.

Each actor is a module function named for its message (service/messaging.py); what it needs
besides its arguments comes from the worker's runtime (workers/runtime.py), which
`setup_workers` sets when it declares the actors on a broker. Declaring them then rather than
with `@dramatiq.actor` at import keeps importing this module free of effects: dramatiq's
decorator binds to the global broker at once, creating a default one when none is set.

Dramatiq's own retries are off: a unit of work that waits for quota or backs off is sent
again with a delay and its row says why (`rate_limited` / `retry_after`), so a worker never
sleeps and a long rate limit never dead-letters anything. Hydrations below the real-time
tiers wait in their rows instead, and the release duty admits them with their quota reserved
(service/ingest/held.py), so a backlog is not refused every window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq

from service.ingest import held, hydrate, process, sync
from service.ingest.context import IngestContext
from service.ingest.policy import streams_for
from service.ingest.retry import Backoff, GiveUp, Step, WaitForQuota, delay_ms, next_step
from service.ingest.sync_status import publish_hydration_state
from service.ingest.workitems import EVENTS, HYDRATIONS, WorkItems
from service.messaging import (
    EVENTS_QUEUE,
    HYDRATE_ACTIVITY,
    HYDRATE_ON_DEMAND,
    HYDRATE_QUEUE,
    ON_DEMAND_QUEUE,
    PROCESS_EVENT,
    RUN_SYNC_JOB,
    SYNC_QUEUE,
    Dispatcher,
)
from service.strava.quota import Tier, using_prepaid, using_tier
from service.strava.quota.admission import QUEUED_TIERS
from workers import log_ids, runtime
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def process_event(inbox_id: int) -> None:
    run = runtime.current()
    ctx, dispatcher = run.ctx, run.dispatcher

    def work() -> None:
        outcome = process.process_event(
            ctx, inbox_id, _webhook_streams(run), fetch_streams=_fetch_webhook_streams
        )
        if isinstance(outcome, process.Deferred):
            # Waiting out the activity's coalescing window (docs/events.md): not a retry.
            dispatcher.send_event(inbox_id, delay_ms(outcome.until, ctx.clock()))

    _attempt(
        run,
        EVENTS,
        inbox_id,
        Tier.WEBHOOK,
        work,
        lambda _step, delay: dispatcher.send_event(inbox_id, delay),
    )


def hydrate_activity(activity_id: int, tier: str, prepaid: list[int] | None = None) -> None:
    """`prepaid` (short window, requests): admission reserved that many of the hydration's
    requests in that window (service/strava/quota/admission.py)."""
    run = runtime.current()
    keys = streams_for(run.sync_options.policy, Tier(tier))

    def work() -> None:
        if prepaid is None:
            hydrate.hydrate_stored(run.ctx, activity_id, keys)
            return
        window, requests = prepaid
        with using_prepaid(window, requests):
            hydrate.hydrate_stored(run.ctx, activity_id, keys)

    _attempt(
        run,
        HYDRATIONS,
        activity_id,
        Tier(tier),
        work,
        lambda step, delay: _resend_hydration(run, activity_id, Tier(tier), step, delay),
    )
    run.hydration_progress.record(run.ctx.engine, activity_id, Tier(tier), run.ctx.clock())
    # Hydrations are the phase after a sync's listing: its progress streams count them.
    ctx = run.ctx
    publish_hydration_state(ctx.engine, ctx.quota, ctx.progress, activity_id, ctx.clock)


def run_sync_job(job_id: int) -> None:
    run = runtime.current()
    ctx = run.ctx
    owner = f"{run.worker_id}:{threading.get_ident()}"
    outcome = sync.run_job(
        ctx,
        job_id,
        owner=owner,
        options=run.sync_options,
        send_hydration=lambda activity_id, tier: _queue_hydrations(run, [(activity_id, tier)]),
        send_hydrations=lambda hydrations: _queue_hydrations(run, hydrations),
    )
    match outcome:
        case sync.Wait(at):
            run.dispatcher.send_sync(job_id, delay_ms(at, ctx.clock()))
        case sync.Continue():
            run.dispatcher.send_sync(job_id)


# Every actor, by its message's name and queue, with its dramatiq priority (lower first):
# admitted hydrations come in bursts at each release, and a webhook event or a reader's
# on-demand hydration that a worker has pulled beside them must not wait behind them.
ACTORS: tuple[tuple[Callable[..., None], str, str, int], ...] = (
    (process_event, PROCESS_EVENT, EVENTS_QUEUE, 0),
    (hydrate_activity, HYDRATE_ON_DEMAND, ON_DEMAND_QUEUE, 0),
    (run_sync_job, RUN_SYNC_JOB, SYNC_QUEUE, 5),
    (hydrate_activity, HYDRATE_ACTIVITY, HYDRATE_QUEUE, 10),
)


def setup_workers(
    broker: dramatiq.Broker,
    ctx: IngestContext,
    backoff: Backoff | None = None,
    sync_options: sync.SyncOptions | None = None,
) -> None:
    """The worker's start-up: set the runtime the actors run with and declare them on
    `broker`."""
    runtime.install(
        Runtime(
            ctx=ctx,
            backoff=backoff or Backoff(max_attempts=ctx.retry_max_attempts),
            sync_options=sync_options or sync.SyncOptions(),
            dispatcher=Dispatcher(broker),
        )
    )
    log_ids.install(broker)
    for function, name, queue, priority in ACTORS:
        dramatiq.actor(
            broker=broker, actor_name=name, queue_name=queue, max_retries=0, priority=priority
        )(function)


def _queue_hydrations(run: Runtime, hydrations: list[tuple[int, str]]) -> None:
    # Below the real-time tiers a hydration waits in its row for the release duty to admit
    # it (service/ingest/held.py); a page's rows are put in the queue in one statement.
    ctx = run.ctx
    waiting = [activity_id for activity_id, tier in hydrations if Tier(tier) in QUEUED_TIERS]
    held.wait_for_place(ctx.engine, waiting, ctx.clock())
    for activity_id, tier in hydrations:
        if Tier(tier) not in QUEUED_TIERS:
            run.dispatcher.send_hydration(activity_id, tier)


def _resend_hydration(run: Runtime, activity_id: int, tier: Tier, step: Step, delay: int) -> None:
    # Refused quota below the real-time tiers: back to the queue, admitted when room exists.
    if isinstance(step, WaitForQuota) and tier in QUEUED_TIERS:
        held.wait_for_place(run.ctx.engine, [activity_id], run.ctx.clock())
    else:
        run.dispatcher.send_hydration(activity_id, tier.value, delay)


def _webhook_streams(run: Runtime) -> tuple[str, ...]:
    # A webhook fetch counts as above backfill: the stream policy decides its streams.
    return streams_for(run.sync_options.policy, Tier.WEBHOOK)


def _fetch_webhook_streams(activity_id: int, tier: Tier) -> None:
    # The event is finished: the streams are the activity's hydration now, with its
    # bookkeeping and retries (the row stays `partial` until they are stored), at the
    # tier of its detail (`recent` past the owner's budget, service/ingest/budget.py).
    run = runtime.current()
    keys = _webhook_streams(run)
    _attempt(
        run,
        HYDRATIONS,
        activity_id,
        tier,
        lambda: hydrate.hydrate_missing_streams(run.ctx, activity_id, keys),
        lambda step, delay: _resend_hydration(run, activity_id, tier, step, delay),
    )


def _attempt(
    run: Runtime,
    items: WorkItems,
    item_id: int,
    tier: Tier,
    work: Callable[[], object],
    resend: Callable[[Step, int], object],
) -> None:
    ctx = run.ctx
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
            backoff=run.backoff,
            rng=run.rng,
        )
        # The exception's type and message only: Strava's fault, never request data.
        items.record(ctx.engine, item_id, step, f"{type(error).__name__}: {error}"[:2000], now)
        if isinstance(step, GiveUp):
            log.error("work failed for good item_id=%s reason=%s", item_id, step.reason)
            return
        delay = delay_ms(step.at, now)
        log.info(
            "work deferred item_id=%s step=%s delay_ms=%s", item_id, type(step).__name__, delay
        )
        resend(step, delay)
