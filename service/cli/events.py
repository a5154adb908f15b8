"""`strava-ingest events failed | replay | prune`: the webhook inbox's dead events and its
retention (service/ingest/lifecycle.py)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from service.cli.common import database
from service.ingest.lifecycle import REPLAYABLE
from service.models import InboxStatus, utcnow

if TYPE_CHECKING:
    pass

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    if match := _DURATION.match(value.strip()):
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a duration like 30m, 2h, 7d or an ISO 8601 time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)


def _since_option(value: str | None) -> datetime | None:
    return None if value is None else parse_since(value, utcnow())


@click.group()
def events() -> None:
    """The webhook inbox: dead events, replay, retention."""


_SINCE = click.option(
    "--since", help="Only events received since then: 30m, 2h, 7d, or an ISO 8601 time."
)


@events.command("failed")
@_SINCE
@click.option(
    "--status",
    type=click.Choice([s.value for s in InboxStatus]),
    default=InboxStatus.FAILED.value,
    show_default=True,
    help="List events in this status instead.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed(since: str | None, status: str, as_json: bool) -> None:
    """List dead events (failed after every retry), oldest first, with their last error;
    with --status, events in that status with their reason (e.g. `unconfirmed`)."""
    from service.ingest.lifecycle import events_with_status

    with database() as (_, engine):
        rows = events_with_status(engine, InboxStatus(status), since=_since_option(since))
    for row in rows:
        fields = {
            "id": row.id,
            "received_at": row.received_at.isoformat(),
            "owner_id": row.owner_id,
            "object": f"{row.object_type}/{row.object_id}",
            "aspect_type": row.aspect_type,
            "event_time": row.event_time,
            "attempts": row.attempts,
            "reason": row.reason,
            "last_error": row.last_error,
        }
        if as_json:
            click.echo(json.dumps(fields))
        else:
            click.echo(
                f"{row.id}\t{fields['received_at']}\t{fields['object']}\t{row.aspect_type}\t"
                f"owner={row.owner_id}\tattempts={row.attempts}\t"
                f"{(row.reason or row.last_error or '')[:200]}"
            )
    if not as_json:
        click.echo(f"{len(rows)} {status} events", err=True)


@events.command("replay")
@_SINCE
@click.option(
    "--status",
    type=click.Choice([s.value for s in REPLAYABLE]),
    default=InboxStatus.FAILED.value,
    show_default=True,
    help="Re-drive events in this status.",
)
def replay(since: str | None, status: str) -> None:
    """Re-drive events: reset them (a fresh retry budget) and send them to the workers."""
    from service.ingest.lifecycle import replay as replay_events
    from service.ingest.lifecycle import reset_for_replay

    with database() as (settings, engine):
        if settings.broker_url == "memory://":
            # The workers live inside `strava-ingest serve`; its relay re-sends `received` rows.
            ids = reset_for_replay(
                engine, InboxStatus(status), since=_since_option(since), now=utcnow()
            )
            click.echo(f"reset {len(ids)} events; the relay of `strava-ingest serve` sends them")
            return
        from service.messaging import Dispatcher, build_broker

        broker = build_broker(settings.broker_url)
        try:
            sent = replay_events(
                engine,
                Dispatcher(broker).send_event,
                InboxStatus(status),
                since=_since_option(since),
                now=utcnow(),
            )
        finally:
            broker.close()
    click.echo(f"replayed {sent} events")


@events.command("prune")
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Default: INBOX_RETENTION_DAYS.",
)
def prune(older_than_days: float | None) -> None:
    """Delete processed and ignored events finished longer ago than the retention."""
    from service.ingest.lifecycle import prune as prune_events

    with database() as (settings, engine):
        days = older_than_days if older_than_days is not None else settings.inbox_retention_days
        deleted = prune_events(
            engine,
            older_than=timedelta(days=days),
            now=utcnow(),
            unknown_owner_older_than=timedelta(hours=settings.unknown_owner_retention_hours),
        )
    click.echo(f"pruned {deleted} events")


@events.command("counts")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def counts(as_json: bool) -> None:
    """Inbox rows by status (`unconfirmed`: destructive events Strava did not confirm), and
    athletes flagged for creates Strava answered 404 for."""
    from service.ingest.lifecycle import counts_by_status, flagged_athletes

    with database() as (_, engine):
        by_status = counts_by_status(engine)
        flagged = [
            {
                "athlete_id": a.id,
                "forged_creates": a.forged_creates,
                "flagged_at": a.flagged_at.isoformat() if a.flagged_at else None,
                "reason": a.flag_reason,
            }
            for a in flagged_athletes(engine)
        ]
    if as_json:
        click.echo(json.dumps({"statuses": by_status, "flagged_athletes": flagged}))
        return
    for status in InboxStatus:
        click.echo(f"{status.value}\t{by_status.get(status.value, 0)}")
    for athlete in flagged:
        click.echo(
            f"flagged athlete {athlete['athlete_id']}\tforged_creates="
            f"{athlete['forged_creates']}\t{athlete['flagged_at']}\t{athlete['reason']}"
        )
