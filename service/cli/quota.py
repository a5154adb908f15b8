"""`strava-ingest quota`: the Strava quota windows as the scheduler sees them."""

from __future__ import annotations

import json

import click

from service.cli.common import settings as load_settings


@click.command("quota")
@click.option("--json", "as_json", is_flag=True, help="Print what GET /quota returns.")
def quota_command(as_json: bool) -> None:
    """Show the Strava quota windows: used/limit per bucket and tier, time to reset."""
    from redis.exceptions import RedisError

    from service.strava.quota import build_scheduler
    from service.strava.quota.report import format_status

    settings = load_settings()
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
