"""`strava-ingest subscription create | view | delete | check`: the app's one webhook
subscription (docs/strava.md §1.1), and whether Strava still pushes to us (§1.5).

Each command also records what Strava answered in our database (service/ingest/subscription.py):
the web app answers 403 to events naming any other subscription id (docs/strava.md §1.8), and
503 to every event while it knows none.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from service.cli.common import settings as load_settings
from service.ingest.subscription_health import with_path_secret
from service.strava.errors import StravaError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from service.config import Settings
    from service.ingest.subscription_health import Finding


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
@click.option(
    "--replace",
    is_flag=True,
    help="Delete the subscription Strava already has for this app, then create this one.",
)
def subscription_create(callback_url: str, replace: bool) -> None:
    """Create it and store its id. Strava first validates the callback with a GET (the web
    app must be up): that GET is tried here first, so a callback that would fail it costs
    no call to Strava and deletes nothing."""
    from service.ingest.subscription import clear_subscription, save_subscription
    from service.ingest.subscription_health import Level, check_handshake, shown

    with _strava_client() as (client, settings), _database(settings) as engine:
        secret = settings.webhook_secret
        if secret is not None:
            callback_url = with_path_secret(callback_url, secret.get_secret_value())
        verify_token = settings.strava_verify_token.get_secret_value()
        where = shown(callback_url, settings.webhook_path)
        handshake = check_handshake(callback_url, verify_token, settings.webhook_path)
        if handshake.level is not Level.OK:
            raise click.ClickException(
                f"the callback would fail Strava's handshake: {handshake.detail}. Start "
                f"`strava-ingest serve` where {where} reaches it, then try again "
                "(nothing was asked of Strava)"
            )
        if replace:
            for existing in _strava_call(client.list_subscriptions).data:
                _strava_call(functools.partial(client.delete_subscription, existing.id))
                clear_subscription(engine)
                click.echo(f"deleted subscription {existing.id}", err=True)
        try:
            result = client.create_subscription(callback_url, verify_token)
        except StravaError as error:
            if not _already_exists(error):
                raise click.ClickException(f"Strava refused: {error}") from None
            listed = _strava_call(client.list_subscriptions).data
            current = (
                f"subscription {listed[0].id} calling "
                f"{shown(listed[0].callback_url, settings.webhook_path)}"
                if listed
                else "a subscription"
            )
            raise click.ClickException(
                f"Strava already has {current}; an app has only one (docs/strava.md §1.1). "
                "`strava-ingest subscription create --replace --callback-url …` deletes it "
                "and creates this one; `subscription view` stores its id as it is"
            ) from None
        save_subscription(engine, result.data.id, result.data.callback_url or callback_url)
    _warn_if_configured_elsewhere(settings, result.data.id)
    click.echo(json.dumps(result.raw))


def _already_exists(error: StravaError) -> bool:
    # Strava's answer to a second create (docs/strava.md §1.1).
    fault = error.fault
    return (
        error.status_code == 400
        and fault is not None
        and any(e.code == "already exists" for e in fault.errors)
    )


@subscription.command("check")
@click.option(
    "--callback-url",
    help="The callback Strava should call. Default: PUBLIC_URL{WEBHOOK_PATH}/{WEBHOOK_SECRET}, "
    "else the one `subscription create` stored.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def subscription_check(callback_url: str | None, as_json: bool) -> None:
    """Is Strava pushing to us? Strava lists our subscription, with our callback (secret
    segment included) and the id we accept; the callback answers Strava's handshake; an
    event arrived within SUBSCRIPTION_SILENCE_ALERT while athletes are connected.
    Exit code: 0 ok, 1 warning, 2 error (for a cron job or a probe)."""
    from service.ingest.subscription_health import Level, worst

    try:
        with _strava_client() as (client, settings), _database(settings) as engine:
            findings = _check(client, settings, engine, callback_url)
    except click.ClickException as error:
        # Not even checked (settings, database): an error for the probe, not a warning.
        raise CheckImpossible(error.message) from None
    level = worst(findings)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": level.name.lower(),
                    "checks": [
                        {"check": f.check, "status": f.level.name.lower(), "detail": f.detail}
                        for f in findings
                    ],
                }
            )
        )
    else:
        for finding in findings:
            click.echo(f"{finding.level.name.lower():<8} {finding.check:<16} {finding.detail}")
    if level is not Level.OK:
        raise SystemExit(int(level))


def _check(
    client: Any, settings: Settings, engine: Engine, callback_url: str | None
) -> list[Finding]:
    from service.ingest.subscription_health import (
        Finding,
        Level,
        accepted_subscription_id,
        check_handshake,
        check_listed,
        check_silence,
        expected_callback,
    )
    from service.models import utcnow
    from service.strava.quota.scheduler import QuotaError

    expected = callback_url
    if expected is not None and settings.webhook_secret is not None:
        expected = with_path_secret(expected, settings.webhook_secret.get_secret_value())
    expected = expected or expected_callback(settings, engine)
    path = settings.webhook_path
    listed = []
    try:
        listed = client.list_subscriptions().data
    except (StravaError, QuotaError) as error:
        findings = [Finding("listed", Level.ERROR, f"Strava could not be asked: {error}")]
    else:
        findings = check_listed(listed, expected, accepted_subscription_id(settings, engine), path)
    # The callback Strava would call; ours when it lists none.
    target = listed[0].callback_url if listed and listed[0].callback_url else expected
    if target is not None:
        verify_token = settings.strava_verify_token.get_secret_value()
        findings.append(check_handshake(target, verify_token, path))
    findings.append(check_silence(engine, utcnow(), settings.subscription_silence_alert))
    return findings


class CheckImpossible(click.ClickException):
    """The check could not run (settings, database): exit 2, as for an error found."""

    exit_code = 2


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


def _warn_if_configured_elsewhere(settings: Settings, subscription_id: int) -> None:
    # STRAVA_SUBSCRIPTION_ID wins over the stored id, so a stale one would reject every event.
    configured = settings.strava_subscription_id
    if configured is not None and configured != subscription_id:
        click.echo(
            f"warning: STRAVA_SUBSCRIPTION_ID={configured} but Strava reports subscription "
            f"{subscription_id}; events will be rejected until the setting is fixed",
            err=True,
        )
