"""The web app, assembled in one place from settings, routes and error handlers.

Resources (database engine, broker, Strava client, token cipher) live on one `WebState`
(service/web/state.py), built in the lifespan and kept on ``app.state``. Those passed to
``create_app`` belong to the caller; the others are opened in the lifespan and closed at
shutdown. Worker threads and the relay are composed by the CLI, not here: the web
layer never imports ``workers``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import dramatiq
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from service.config import Settings, check_web_settings
from service.db import check_schema as require_current_schema
from service.db import create_db_engine
from service.heap import settle_after_start_up
from service.heartbeats import WEB, Heartbeat, HeartbeatStore, build_heartbeats
from service.ingest.context import build_context
from service.ingest.crypto import TokenCipher
from service.ingest.progress import ProgressLog, build_progress_log
from service.messaging import Dispatcher, build_broker
from service.metrics.collect import build_registry
from service.metrics.events import EventMetrics, build_event_store
from service.metrics.exposition import serve_metrics
from service.strava.client import AsyncStravaClient
from service.strava.metered import metered_async_client
from service.strava.quota import QuotaScheduler, build_scheduler
from service.web import (
    activities,
    athletes,
    health,
    metrics,
    oauth,
    quota_view,
    sync_log,
    syncs,
    webhooks,
)
from service.web.admin import pages as admin_pages
from service.web.batching import WATCHDOG_TICK_SECONDS, InboxBatcher
from service.web.errors import exception_handlers
from service.web.metrics import WebhookCounters
from service.web.openapi import document_routes
from service.web.progress_fanout import ProgressFanout
from service.web.request_ids import RequestIds
from service.web.state import WEB_STATE_KEY, WebState
from service.web.trust import RedactPathSecret, SubscriptionGate

log = logging.getLogger(__name__)

# Strava wants every push answered within this (docs/strava.md §1.3).
STRAVA_ANSWER_SECONDS = 2.0


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    broker: dramatiq.Broker | None = None,
    strava: AsyncStravaClient | None = None,
    quota: QuotaScheduler | None = None,
    heartbeats: HeartbeatStore | None = None,
    progress: ProgressLog | None = None,
    event_metrics: EventMetrics | None = None,
    check_schema: bool = True,
) -> Starlette:
    """Build the app. Raises ConfigError for settings the web app must not start with
    (service/config.py `check_web_settings`). With ``check_schema`` (the default) start-up
    fails with SchemaBehind when the database is not migrated to the code's head revision.
    ``heartbeats``: where processes report alive (embedded mode shares one store between the
    app, its worker threads and its duties); by default the settings' store.
    ``event_metrics`` (embedded mode shares the workers') is started and closed by its owner."""
    check_web_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as owned:
            db = engine
            if db is None:
                db = create_db_engine(settings.database_url)
                owned.callback(db.dispose)
            if check_schema:
                await run_in_threadpool(require_current_schema, db)
            queue = broker
            if queue is None:
                queue = build_broker(settings.broker_url)
                owned.callback(queue.close)
            scheduler = quota
            if scheduler is None:
                scheduler = build_scheduler(settings)
                owned.callback(scheduler.close)
            events = event_metrics
            if events is None:
                events = EventMetrics(build_event_store(settings.broker_url))
                events.start()
                owned.callback(events.close)
            registry = build_registry(db, queue, scheduler, events.store)
            if settings.metrics_port is not None:
                owned.callback(serve_metrics(settings.metrics_port, registry))
            client = strava
            if client is None:
                client = metered_async_client(settings, scheduler, events)
                owned.push_async_callback(client.aclose)

            progress_log = progress
            if progress_log is None:
                progress_log = build_progress_log(settings)
                owned.callback(progress_log.close)
            # Stopped (its listener joined) before the log it reads, pushed just before.
            fanout = ProgressFanout(progress_log, settings.sync_events_subscriber_queue)
            fanout.start()
            owned.push_async_callback(fanout.aclose)
            # Closes only its own Strava client: the engine, the quota and the progress log
            # are closed above.
            ingest = build_context(
                settings, engine=db, quota=scheduler, progress=progress_log, metrics=events
            )
            owned.callback(ingest.strava.close)
            beats = heartbeats
            if beats is None:
                beats = build_heartbeats(settings)
                owned.callback(beats.close)
            # This web process's own heartbeat, stopped (and dropped) before its store closes.
            beating = Heartbeat.for_settings(beats, WEB, settings)
            beating.start()
            owned.callback(beating.stop)

            counters = WebhookCounters(on_rejection=events.rejection)
            # Closed (drained) before the engine and broker it uses, which were pushed first.
            batcher = InboxBatcher(
                db,
                queue,
                counters,
                max_batch=settings.ingest_batch_max,
                deadline=settings.ingest_deadline_seconds,
                commit_lanes=settings.ingest_commit_lanes,
            )
            batcher.start()
            owned.push_async_callback(batcher.aclose)
            web = WebState(
                settings=settings,
                engine=db,
                broker=queue,
                dispatcher=Dispatcher(queue),
                strava=client,
                quota=scheduler,
                cipher=TokenCipher(settings.token_key.get_secret_value()),
                webhook_counters=counters,
                subscription_gate=SubscriptionGate(
                    db,
                    settings.strava_subscription_id,
                    settings.subscription_cache_seconds,
                    # What Strava's two seconds leave after the commit's own deadline, which
                    # the watchdog enforces to within one tick.
                    timeout=max(
                        WATCHDOG_TICK_SECONDS,
                        STRAVA_ANSWER_SECONDS
                        - WATCHDOG_TICK_SECONDS
                        - settings.ingest_deadline_seconds,
                    ),
                ),
                inbox_batcher=batcher,
                ingest=ingest,
                heartbeats=beats,
                progress_fanout=fanout,
                metrics=events,
                metrics_registry=registry,
            )
            if settings.webhook_secret is not None:
                _redact_in_access_log(owned, settings.webhook_secret.get_secret_value())
            settle_after_start_up()
            if settings.webhook_secret is None and settings.webhook_secret_optout:
                log.warning(
                    "WEBHOOK_SECRET_OPTOUT is set: the webhook path carries no secret, so "
                    "only the proxy in front keeps forged events out"
                )
            log.info("web app started mode=%s", settings.mode)
            setattr(app.state, WEB_STATE_KEY, web)
            # The lifespan state reaches uvicorn's connections too, which count the requests
            # they refuse before the app sees them (service/web/http_protocol.py).
            yield {WEB_STATE_KEY: web}
        log.info("web app stopped")

    app = Starlette(
        routes=[
            *webhooks.routes(settings),
            *oauth.routes(),
            *health.routes(),
            *quota_view.routes(),
            *metrics.routes(),
            *athletes.routes(),
            *sync_log.routes(),
            *activities.routes(),
            *syncs.routes(),
            *admin_pages.routes(settings),
        ],
        exception_handlers=exception_handlers(),
        # Each request's id is on every log line of it and in its answer.
        middleware=[*cors_middleware(settings), Middleware(RequestIds)],
        lifespan=lifespan,
    )
    # Described once, from every route above (service/web/openapi.py).
    app.router.routes.extend(document_routes(app.routes))
    return app


def cors_middleware(settings: Settings) -> list[Middleware]:
    """CORS for the origins CORS_ORIGINS names; none (no CORS headers at all) when unset."""
    origins = settings.cors_origin_list
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "last-event-id"],
            # Keys travel in the Authorization header; the operator page's session cookie
            # is for the page's own origin, never for another site's.
            allow_credentials=False,
            max_age=600,
        )
    ]


def _redact_in_access_log(owned: AsyncExitStack, secret: str) -> None:
    # uvicorn's access log prints the request path, which ends in WEBHOOK_SECRET.
    access_log = logging.getLogger("uvicorn.access")
    redact = RedactPathSecret(secret)
    access_log.addFilter(redact)
    owned.callback(access_log.removeFilter, redact)
