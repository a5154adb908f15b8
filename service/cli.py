"""The `strava-ingest` command. Thin: it parses, wires dependencies and calls domain code.

It is also the one place where embedded mode is assembled (web app, worker threads and the
periodic relay in one process), since only here may web and workers meet.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import click

from service.config import ConfigError, DatabaseSettings, Mode, Settings, load_settings
from service.logs import configure_logging

log = logging.getLogger(__name__)

S = TypeVar("S", bound=DatabaseSettings)


def _load(cls: type[S]) -> S:
    try:
        return load_settings(cls)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _settings() -> Settings:
    return _load(Settings)


@click.group()
def main() -> None:
    """Webhook-first ingestion of Strava activities."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations up to the newest schema."""
    from service.db import upgrade_schema

    settings = _load(DatabaseSettings)
    configure_logging()
    upgrade_schema(settings.database_url)
    click.echo("schema is up to date")


@main.command()
def keygen() -> None:
    """Print a new key for TOKEN_KEY."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@contextmanager
def _embedded_runtime(settings: Settings) -> Iterator[Any]:
    """Worker threads and the periodic relay beside the web app, in this process."""
    from service.db import check_schema
    from service.ingest.context import build_context
    from service.messaging import Dispatcher
    from workers.actors import declare_actors
    from workers.broker import setup_broker, start_embedded_worker

    broker = setup_broker(settings.broker_url)
    context = build_context(settings)  # one quota scheduler for the web app and the workers
    check_schema(context.engine)
    declare_actors(broker, context)
    worker = start_embedded_worker(broker, settings.worker_threads)
    stop = threading.Event()
    relay = threading.Thread(
        target=_relay_forever,
        args=(settings, Dispatcher(broker).send_event, stop),
        name="relay",
        daemon=True,
    )
    relay.start()
    try:
        yield broker, context.quota
    finally:
        stop.set()
        worker.stop()
        relay.join(timeout=5)
        context.close()


def _relay_forever(settings: Settings, send: Callable[[int], None], stop: threading.Event) -> None:
    from service.db import create_db_engine
    from service.ingest.inbox import relay

    engine = create_db_engine(settings.database_url)
    try:
        while not stop.wait(settings.relay_interval_seconds):
            try:
                relay(engine, send, older_than=timedelta(seconds=settings.relay_after_seconds))
            except Exception:
                log.exception("relay pass failed; trying again next interval")
    finally:
        engine.dispose()


def _require_schema(settings: Settings) -> None:
    """Fail with a plain message, not a traceback, when the database is not usable."""
    from sqlalchemy.exc import OperationalError

    from service.db import SchemaBehind, check_schema, create_db_engine

    engine = create_db_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaBehind as error:
        raise click.ClickException(str(error)) from None
    except OperationalError as error:
        raise click.ClickException(f"database unreachable: {error.orig}") from None
    finally:
        engine.dispose()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the web app (Procfile `web`); in embedded mode also the workers and the relay."""
    import uvicorn

    from service.web.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    _require_schema(settings)
    log.info("starting mode=%s host=%s port=%s", settings.mode.value, host, port)
    if settings.mode is Mode.EMBEDDED:
        with _embedded_runtime(settings) as (broker, quota):
            app = create_app(settings, broker=broker, quota=quota)
            uvicorn.run(app, host=host, port=port, log_config=None)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("dramatiq_args", nargs=-1, type=click.UNPROCESSED)
def worker(dramatiq_args: tuple[str, ...]) -> None:
    """Run the worker processes (Procfile `worker`); extra arguments go to dramatiq."""
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    settings = _settings()
    if settings.broker_url == "memory://":
        raise click.ClickException(
            "BROKER_URL is memory://: workers run inside `strava-ingest serve` in embedded mode"
        )
    _require_schema(settings)
    arguments = make_argument_parser().parse_args(["workers.main:broker", *dramatiq_args])  # type: ignore[no-untyped-call]
    sys.exit(dramatiq_main(arguments))  # type: ignore[no-untyped-call]


@main.command("relay")
@click.option("--every", type=float, default=None, help="Repeat every N seconds.")
def relay_command(every: float | None) -> None:
    """Re-send webhook events that were stored but never reached the broker."""
    from service.db import create_db_engine
    from service.ingest.inbox import relay
    from service.messaging import Dispatcher, build_broker

    settings = _settings()
    configure_logging(settings.log_level)
    if settings.broker_url == "memory://":
        raise click.ClickException("the relay needs a shared broker (BROKER_URL=redis://…)")
    engine = create_db_engine(settings.database_url)
    send = Dispatcher(build_broker(settings.broker_url)).send_event
    older_than = timedelta(seconds=settings.relay_after_seconds)
    if every is None:
        click.echo(f"re-sent {relay(engine, send, older_than=older_than)} events")
        return
    _relay_forever(
        settings.model_copy(update={"relay_interval_seconds": every}), send, threading.Event()
    )


@main.command()
def scheduler() -> None:
    """Periodic duties (Procfile `scheduler`): for now, the relay."""
    settings = _settings()
    relay_command.callback(every=settings.relay_interval_seconds)  # type: ignore[misc]


@main.group()
def subscription() -> None:
    """The app's one webhook subscription (strava-api.md §1.1)."""


@contextmanager
def _strava_client() -> Iterator[Any]:
    """A client for an operator's command: calls go through the quota at on-demand tier."""
    from service.strava.clients import sync_client
    from service.strava.quota import Tier, build_scheduler, using_tier

    settings = _settings()
    quota = build_scheduler(settings)
    try:
        with sync_client(settings, quota) as client, using_tier(Tier.ON_DEMAND):
            yield client, settings
    finally:
        quota.close()


def _strava_call(call: Callable[[], Any]) -> Any:
    from service.strava.errors import StravaError

    try:
        return call()
    except StravaError as error:
        raise click.ClickException(f"Strava refused: {error}") from None


@subscription.command("create")
@click.option("--callback-url", required=True, help="Public URL of the webhook endpoint.")
def subscription_create(callback_url: str) -> None:
    """Create it; Strava first validates the callback with a GET (the web app must be up)."""
    with _strava_client() as (client, settings):
        verify_token = settings.strava_verify_token.get_secret_value()
        result = _strava_call(lambda: client.create_subscription(callback_url, verify_token))
    click.echo(json.dumps(result.raw))


@subscription.command("view")
def subscription_view() -> None:
    """Show it (an empty list when there is none)."""
    with _strava_client() as (client, _):
        result = _strava_call(client.list_subscriptions)
    click.echo(json.dumps(result.raw))


@subscription.command("delete")
@click.option("--id", "subscription_id", type=int, default=None, help="Defaults to the current.")
def subscription_delete(subscription_id: int | None) -> None:
    """Delete it."""
    with _strava_client() as (client, _):
        if subscription_id is None:
            current = _strava_call(client.list_subscriptions).data
            if not current:
                raise click.ClickException("there is no subscription to delete")
            subscription_id = current[0].id
        _strava_call(lambda: client.delete_subscription(subscription_id))
    click.echo(f"deleted subscription {subscription_id}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--athletes", default=1, show_default=True, type=int)
@click.option("--activities", default=20, show_default=True, type=int, help="Per athlete.")
@click.option("--client-id", envvar="STRAVA_CLIENT_ID", type=int, required=True)
@click.option("--client-secret", envvar="STRAVA_CLIENT_SECRET", required=True)
def emulator(
    host: str,
    port: int,
    seed: int,
    athletes: int,
    activities: int,
    client_id: int,
    client_secret: str,
) -> None:
    """Run the Strava emulator (for demos, tests and benchmarks; no Strava is reachable)."""
    from service.strava.emulator import EmulatorConfig
    from service.strava.emulator.server import run

    configure_logging()
    run(
        EmulatorConfig(
            client_id=client_id,
            client_secret=client_secret,
            seed=seed,
            athletes=athletes,
            activities_per_athlete=activities,
        ),
        host=host,
        port=port,
    )


@main.command("quota")
@click.option("--json", "as_json", is_flag=True, help="Print what GET /quota returns.")
def quota_command(as_json: bool) -> None:
    """Show the Strava quota windows: used/limit per bucket and tier, time to reset."""
    from redis.exceptions import RedisError

    from service.strava.quota import build_scheduler
    from service.strava.quota.report import format_status

    settings = _settings()
    if settings.broker_url == "memory://":
        click.echo(
            "note: BROKER_URL is memory://, so the counters live inside `strava-ingest serve`; "
            "this shows limits only (GET /quota shows usage)",
            err=True,
        )
    quota = build_scheduler(settings)
    try:
        status = quota.status()
    except RedisError as error:
        raise click.ClickException(f"quota backend unreachable: {error}") from None
    finally:
        quota.close()
    click.echo(json.dumps(status.as_json(), indent=2) if as_json else format_status(status))


if __name__ == "__main__":
    main()
