"""`strava-ingest quota`: the Strava quota windows as the scheduler sees them."""

from __future__ import annotations

import json

import click

from service.cli.common import settings as load_settings


@click.command("quota")
@click.option("--json", "as_json", is_flag=True, help="Print what GET /quota returns.")
def quota_command(as_json: bool) -> None:
    """Show the Strava quota windows (used/limit per bucket and tier, time to reset) and the
    work waiting per tier with when it should finish."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from service.db import create_db_engine
    from service.ingest.backlog import backlog, quota_now
    from service.ingest.policy import HydrationPolicy
    from service.strava.quota import build_scheduler
    from service.strava.quota.report import format_backlog, format_status, report_json

    settings = load_settings()
    if settings.broker_url == "memory://":
        click.echo(
            "note: BROKER_URL is memory://, so the counters live inside `strava-ingest serve`; "
            "this shows limits only (GET /quota shows usage)",
            err=True,
        )
    quota = build_scheduler(settings)
    engine = create_db_engine(settings.database_url)
    try:
        status = quota.status()
        try:
            waiting = backlog(
                quota, engine, HydrationPolicy.from_settings(settings), quota_now(quota)
            )
        except SQLAlchemyError as error:
            # The windows are still worth showing when only the database is out of reach.
            click.echo(f"note: no backlog, the database is unreachable: {error}", err=True)
            waiting = ()
    except RedisError as error:
        raise click.ClickException(f"quota backend unreachable: {error}") from None
    finally:
        quota.close()
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report_json(status, waiting), indent=2))
    else:
        click.echo(format_status(status) + "\n" + format_backlog(waiting))
