"""The Procfile's processes: `serve` (web), `worker`, `scheduler`; and `relay`.

Embedded mode is assembled here (web app, worker threads and the periodic duties in one
process), since only here may web and workers meet.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import click
import dramatiq
from sqlalchemy.engine import Engine

from service.cli.common import require_schema
from service.cli.common import settings as load_settings
from service.config import ConfigError, Mode, Settings, bind_url, check_web_settings
from service.heartbeats import (
    SCHEDULER,
    WORKER,
    Heartbeat,
    HeartbeatStore,
    MemoryHeartbeats,
    build_heartbeats,
)
from service.logs import configure_logging
from service.messaging import Dispatcher
from service.metrics.events import EventMetrics
from service.periodic import Duty, run_duties
from service.strava.client import StravaClient
from service.strava.metered import metered_client
from service.strava.quota import QuotaScheduler, Tier, build_scheduler, using_tier

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from service.ingest.progress import ProgressLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DutyDeps:
    """What the periodic duties work with."""

    settings: Settings
    engine: Engine
    dispatcher: Dispatcher
    # For the subscription watch's one call (its calls pass through the quota scheduler).
    strava: StravaClient
    # Admits waiting hydrations (service/strava/quota/admission.py).
    quota: QuotaScheduler


def periodic_duties(deps: DutyDeps) -> list[Duty]:
    """Every periodic duty of the service, in one list: the scheduler process and embedded
    mode run exactly these."""
    from service.ingest import job_log
    from service.ingest.held import release
    from service.ingest.inbox import relay
    from service.ingest.lifecycle import prune
    from service.ingest.policy import HydrationPolicy
    from service.ingest.reconcile import schedule_reconciliations
    from service.ingest.retention import RetentionPolicy, enforce
    from service.ingest.sync import sweep
    from service.models import utcnow
    from service.strava.quota.admission import admit_now, release_tick

    settings = deps.settings
    # Read once: the release runs every second.
    hydration_policy = HydrationPolicy.from_settings(settings)
    admit = functools.partial(admit_now, deps.quota)
    return [
        Duty(
            "relay",
            settings.relay_interval_seconds,
            lambda: relay(
                deps.engine,
                deps.dispatcher.send_event,
                older_than=timedelta(seconds=settings.relay_after_seconds),
            ),
        ),
        # Finished inbox rows past their retention (service/ingest/lifecycle.py).
        Duty(
            "inbox-prune",
            settings.inbox_prune_interval_seconds,
            lambda: prune(
                deps.engine,
                older_than=timedelta(days=settings.inbox_retention_days),
                now=utcnow(),
                unknown_owner_older_than=timedelta(hours=settings.unknown_owner_retention_hours),
            ),
        ),
        # Sync job log entries past their retention, in bounded batches
        # (service/ingest/job_log.py); as often as the inbox, whose prune is as cheap.
        Duty(
            "sync-log-prune",
            settings.inbox_prune_interval_seconds,
            lambda: job_log.prune(
                deps.engine,
                older_than=timedelta(days=settings.sync_log_retention_days),
                now=utcnow(),
            ),
        ),
        # Retention of Strava's data (service/ingest/retention.py): nothing unless one of
        # its limits is set; bounded work per run, the next run goes on.
        Duty(
            "retention",
            settings.retention_interval_seconds,
            lambda: enforce(deps.engine, RetentionPolicy.from_settings(settings), utcnow()),
        ),
        # Sync jobs whose worker died (expired lease) or whose message was lost.
        Duty(
            "sync-sweep",
            settings.sync_sweep_interval_seconds,
            lambda: sweep(deps.engine, utcnow(), deps.dispatcher.send_sync),
        ),
        # Hydrations waiting in their rows, admitted as the quota takes them.
        Duty(
            "hydration-release",
            release_tick(settings.quota_window_seconds),
            lambda: release(
                deps.engine,
                hydration_policy,
                utcnow(),
                admit,
                deps.dispatcher.send_hydration,
            ),
        ),
        Duty(
            "reconcile",
            settings.reconcile_check_seconds,
            lambda: schedule_reconciliations(
                deps.engine, settings, utcnow(), deps.dispatcher.send_sync
            ),
        ),
        # Strava stopped pushing, or dropped our subscription (docs/strava.md §1.5).
        Duty(
            "subscription-watch",
            settings.subscription_check_interval_seconds,
            lambda: _watch_subscription(deps),
        ),
    ]


def _watch_subscription(deps: DutyDeps) -> None:
    from service.ingest.subscription_health import watch
    from service.models import utcnow

    # Webhook tier: the subscription is what real-time work depends on; one call an hour.
    with using_tier(Tier.WEBHOOK):
        watch(deps.settings, deps.engine, lambda: deps.strava.list_subscriptions().data, utcnow())


@contextmanager
def _beating(store: HeartbeatStore, role: str, settings: Settings) -> Iterator[None]:
    """This process's heartbeat in `role` for the duration of the block."""
    heartbeat = Heartbeat.for_settings(store, role, settings)
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stop()


@contextmanager
def _duties_thread(deps: DutyDeps, heartbeats: HeartbeatStore) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=run_duties, args=(periodic_duties(deps), stop), name="duties", daemon=True
    )
    thread.start()
    try:
        with _beating(heartbeats, SCHEDULER, deps.settings):
            yield
    finally:
        stop.set()
        thread.join(timeout=10)


@dataclass(frozen=True)
class EmbeddedRuntime:
    """What the embedded web app shares with the worker threads and duties beside it."""

    broker: dramatiq.Broker
    quota: QuotaScheduler
    heartbeats: HeartbeatStore
    progress: ProgressLog
    metrics: EventMetrics


@contextmanager
def _embedded_runtime(settings: Settings) -> Iterator[EmbeddedRuntime]:
    """Worker threads and the periodic duties beside the web app, in this process; they
    share its quota scheduler, its progress log and its event counters."""
    from service.ingest.context import build_context
    from service.ingest.sync import SyncOptions
    from service.metrics.dramatiq_series import DramatiqMetrics
    from service.metrics.events import build_event_store
    from workers import liveness
    from workers.actors import setup_workers
    from workers.broker import setup_broker, start_embedded_worker

    broker = setup_broker(settings.broker_url)
    # One set of counters for the web app and the worker threads: the worker's boot starts
    # it and its shutdown closes it (service/metrics/dramatiq_series.py).
    metrics = EventMetrics(build_event_store(settings.broker_url))
    broker.add_middleware(DramatiqMetrics(metrics))
    # One quota scheduler for the web app and the workers.
    context = build_context(settings, metrics=metrics)
    heartbeats = MemoryHeartbeats()  # every role lives in this process
    setup_workers(broker, context, sync_options=SyncOptions.from_settings(settings))
    liveness.install(broker, Heartbeat.for_settings(heartbeats, WORKER, settings))
    worker = start_embedded_worker(broker, settings.worker_threads)
    try:
        deps = DutyDeps(settings, context.engine, Dispatcher(broker), context.strava, context.quota)
        with _duties_thread(deps, heartbeats):
            yield EmbeddedRuntime(broker, context.quota, heartbeats, context.progress, metrics)
    finally:
        worker.stop()
        context.close()


# How `serve` runs uvicorn; scripts/bench_ingest.py serves its parse-only baseline with the same.
# uvloop and httptools halve the per-request CPU of asyncio's loop and h11. uvloop is not
# installed where it does not build (Windows, PyPy: pyproject.toml's markers), so each is used
# where it can be imported and asyncio's loop or h11 stand in otherwise, as uvicorn's "auto".
def uvicorn_options(importable: Callable[[str], object] = find_spec) -> dict[str, Any]:
    return {
        "loop": "uvloop" if importable("uvloop") else "asyncio",
        "http": "httptools" if importable("httptools") else "h11",
        "log_config": None,
    }


UVICORN_OPTIONS = uvicorn_options()


def public_endpoint_options(settings: Settings) -> dict[str, Any]:
    """UVICORN_OPTIONS with the limits of a public endpoint (docs/deployment.md)."""
    options = {**UVICORN_OPTIONS}
    if options["http"] == "httptools":
        from service.web.http_protocol import GuardedHttpToolsProtocol

        # A partial of a module-level class: picklable, for `--workers N`.
        options["http"] = functools.partial(
            GuardedHttpToolsProtocol,
            request_timeout=settings.http_request_timeout_seconds,
            max_head_bytes=settings.http_max_header_bytes,
        )
    return {
        **options,
        "timeout_keep_alive": settings.http_keepalive_seconds,
        "limit_concurrency": settings.http_concurrency_limit,
        # Only h11 reads it; the same cap, should anyone run the app with h11.
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }


def web_app() -> Starlette:
    """The production web app of one `serve --workers N` process (a uvicorn factory)."""
    from service.web.app import create_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format_in_effect)
    return create_app(settings)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Web processes sharing the port (production mode only; each has its own batcher).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Run the web app (Procfile `web`); in embedded mode also the workers and duties."""
    import uvicorn

    from service.web.app import create_app

    settings = load_settings()
    if settings.public_url is None and settings.mode is Mode.EMBEDDED:
        # Strava sends the athlete back to this very server (config.oauth_base_url).
        settings = settings.model_copy(update={"public_url": bind_url(host, port)})
    try:
        check_web_settings(settings)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    configure_logging(settings.log_level, settings.log_format_in_effect)
    require_schema(settings)
    log.info(
        "starting mode=%s host=%s port=%s workers=%d loop=%s http=%s",
        settings.mode.value,
        host,
        port,
        workers,
        UVICORN_OPTIONS["loop"],
        UVICORN_OPTIONS["http"],
    )
    options = public_endpoint_options(settings)
    if settings.mode is Mode.EMBEDDED:
        if workers != 1:
            # The in-process broker and worker threads cannot be shared between processes.
            raise click.ClickException("embedded mode runs in one process: use --workers 1")
        with _embedded_runtime(settings) as runtime:
            app = create_app(
                settings,
                broker=runtime.broker,
                quota=runtime.quota,
                heartbeats=runtime.heartbeats,
                progress=runtime.progress,
                event_metrics=runtime.metrics,
            )
            uvicorn.run(app, host=host, port=port, **options)
    elif workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, **options)
    else:
        # Several processes need the app by import path; each builds its own.
        uvicorn.run(
            f"{__name__}:web_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            **options,
        )


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("dramatiq_args", nargs=-1, type=click.UNPROCESSED)
def worker(dramatiq_args: tuple[str, ...]) -> None:
    """Run the worker processes (Procfile `worker`); extra arguments go to dramatiq."""
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    settings = load_settings()
    if settings.broker_url == "memory://":
        raise click.ClickException(
            "BROKER_URL is memory://: workers run inside `strava-ingest serve` in embedded mode"
        )
    require_schema(settings)
    # Before dramatiq's own set-up, which then keeps this format in its processes too.
    configure_logging(settings.log_level, settings.log_format_in_effect)
    parser = make_argument_parser()  # type: ignore[no-untyped-call]
    arguments = parser.parse_args(["workers.main:start", *dramatiq_args])
    sys.exit(dramatiq_main(arguments))  # type: ignore[no-untyped-call]


@contextmanager
def _shared_deps() -> Iterator[DutyDeps]:
    from service.db import create_db_engine
    from service.messaging import build_broker

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format_in_effect)
    if settings.broker_url == "memory://":
        raise click.ClickException(
            "BROKER_URL is memory://: in embedded mode `strava-ingest serve` runs the duties"
        )
    require_schema(settings)
    engine = create_db_engine(settings.database_url)
    broker = build_broker(settings.broker_url)
    quota = build_scheduler(settings)
    strava = metered_client(settings, quota)
    try:
        yield DutyDeps(settings, engine, Dispatcher(broker), strava, quota)
    finally:
        strava.close()
        quota.close()
        broker.close()
        engine.dispose()


@click.command()
def scheduler() -> None:
    """Run the periodic duties (Procfile `scheduler`): the relay, pruning, retention, …"""
    with _shared_deps() as deps:
        heartbeats = build_heartbeats(deps.settings)
        stop_metrics = _serve_metrics(deps)
        try:
            with _beating(heartbeats, SCHEDULER, deps.settings):
                run_duties(periodic_duties(deps), threading.Event())
        finally:
            stop_metrics()
            heartbeats.close()


def _serve_metrics(deps: DutyDeps) -> Callable[[], None]:
    """With METRICS_PORT, the deployment's metrics on it (the scheduler counts no events
    of its own: it reads what the others published)."""
    port = deps.settings.metrics_port
    if port is None:
        return lambda: None
    from service.metrics.collect import build_registry
    from service.metrics.events import build_event_store
    from service.metrics.exposition import serve_metrics
    from service.strava.quota import build_scheduler

    quota = build_scheduler(deps.settings)
    events = build_event_store(deps.settings.broker_url)
    stop = serve_metrics(port, build_registry(deps.engine, deps.dispatcher.broker, quota, events))

    def close() -> None:
        stop()
        events.close()
        quota.close()

    return close


@click.command()
def relay() -> None:
    """Re-send webhook events that were stored but never reached the broker, once."""
    from service.ingest.inbox import relay as relay_events

    with _shared_deps() as deps:
        older_than = timedelta(seconds=deps.settings.relay_after_seconds)
        sent = relay_events(deps.engine, deps.dispatcher.send_event, older_than=older_than)
    click.echo(f"re-sent {sent} events")
