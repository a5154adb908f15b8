"""`strava-ingest subscription create | view | delete`: the app's one webhook subscription
(strava-api.md §1.1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from service.cli.common import settings as load_settings


@click.group()
def subscription() -> None:
    """The app's one webhook subscription."""


@contextmanager
def _strava_client() -> Iterator[Any]:
    """A client for an operator's command: calls go through the quota at on-demand tier."""
    from service.strava.clients import sync_client
    from service.strava.quota import Tier, build_scheduler, using_tier

    settings = load_settings()
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
