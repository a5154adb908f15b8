"""`strava-ingest subscription create | view | delete`: the app's one webhook subscription
(docs/strava.md §1.1).

Each command also records what Strava answered in our database (service/ingest/subscription.py):
the web app answers 403 to events naming any other subscription id (docs/strava.md §1.8), and
503 to every event while it knows none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click

from service.cli.common import settings as load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from service.config import Settings


@click.group()
def subscription() -> None:
    """The app's one webhook subscription."""


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    from service.cli.common import require_schema
    from service.db import create_db_engine

    require_schema(settings)
    engine = create_db_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _strava_client() -> Iterator[Any]:
    """A client for an operator's command: calls go through the quota at on-demand tier."""
    from service.strava.metered import metered_client
    from service.strava.quota import Tier, build_scheduler, using_tier

    settings = load_settings()
    quota = build_scheduler(settings)
    try:
        with metered_client(settings, quota) as client, using_tier(Tier.ON_DEMAND):
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
@click.option(
    "--callback-url",
    required=True,
    help="Public URL of the webhook endpoint: https://HOST{WEBHOOK_PATH}; /{WEBHOOK_SECRET} "
    "is appended when that is set and the URL does not end with it.",
)
def subscription_create(callback_url: str) -> None:
    """Create it and store its id; Strava first validates the callback with a GET (the web
    app must be up)."""
    from service.ingest.subscription import save_subscription

    with _strava_client() as (client, settings), _database(settings) as engine:
        secret = settings.webhook_secret
        if secret is not None:
            callback_url = with_path_secret(callback_url, secret.get_secret_value())
        verify_token = settings.strava_verify_token.get_secret_value()
        result = _strava_call(lambda: client.create_subscription(callback_url, verify_token))
        save_subscription(engine, result.data.id, result.data.callback_url or callback_url)
    _warn_if_configured_elsewhere(settings, result.data.id)
    click.echo(json.dumps(result.raw))


@subscription.command("view")
def subscription_view() -> None:
    """Show it (an empty list when there is none) and store what Strava reports."""
    from service.ingest.subscription import clear_subscription, save_subscription

    with _strava_client() as (client, settings), _database(settings) as engine:
        result = _strava_call(client.list_subscriptions)
        if result.data:
            current = result.data[0]
            save_subscription(engine, current.id, current.callback_url)
            _warn_if_configured_elsewhere(settings, current.id)
        else:
            clear_subscription(engine)
    click.echo(json.dumps(result.raw))


@subscription.command("delete")
@click.option("--id", "subscription_id", type=int, default=None, help="Defaults to the current.")
def subscription_delete(subscription_id: int | None) -> None:
    """Delete it, and forget its id."""
    from service.ingest.subscription import clear_subscription

    with _strava_client() as (client, settings), _database(settings) as engine:
        if subscription_id is None:
            current = _strava_call(client.list_subscriptions).data
            if not current:
                clear_subscription(engine)
                raise click.ClickException("there is no subscription to delete")
            subscription_id = current[0].id
        _strava_call(lambda: client.delete_subscription(subscription_id))
        clear_subscription(engine)
    click.echo(f"deleted subscription {subscription_id}")


def with_path_secret(callback_url: str, secret: str) -> str:
    """``callback_url`` with ``secret`` as its last path segment (unless it is already)."""
    parts = urlsplit(callback_url)
    segments = parts.path.rstrip("/").split("/")
    if segments[-1] == secret:
        return callback_url
    return urlunsplit(parts._replace(path="/".join([*segments, secret])))


def _warn_if_configured_elsewhere(settings: Settings, subscription_id: int) -> None:
    # STRAVA_SUBSCRIPTION_ID wins over the stored id, so a stale one would reject every event.
    configured = settings.strava_subscription_id
    if configured is not None and configured != subscription_id:
        click.echo(
            f"warning: STRAVA_SUBSCRIPTION_ID={configured} but Strava reports subscription "
            f"{subscription_id}; events will be rejected until the setting is fixed",
            err=True,
        )
