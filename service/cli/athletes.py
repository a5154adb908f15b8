"""`strava-ingest athletes`: what `GET /athletes` and `GET /athletes/{id}` answer, for the
operator at a terminal (service/ingest/athlete_status.py computes both).

    strava-ingest athletes [--status S ...] [--json]   every athlete, a table (or a JSON array)
    strava-ingest athletes show ID [--json]            one athlete
    strava-ingest athletes purge ID --yes [--revoke]   delete the athlete's data, as a
                                                       deauthorization does
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
from sqlalchemy.engine import Engine

from service.cli.common import database
from service.config import Settings
from service.ingest.athlete_status import (
    MAX_PAGE_SIZE,
    AthleteState,
    UnknownAthlete,
    athlete_page,
    athlete_state,
)
from service.ingest.purge import PurgeScope
from service.models import AthleteStatus, utcnow

# The columns of the table: header, and the cell of an athlete.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ID", "id"),
    ("STATUS", "status"),
    ("CONNECTED", "connected"),
    ("SCOPES", "scopes"),
    ("ACTIVITIES", "total"),
    ("COMPLETE", "complete"),
    ("PARTIAL", "partial"),
    ("PENDING", "pending"),
    ("NONE", "none"),
    ("N/A", "not_available"),
    ("FAILED", "failed"),
    ("SYNC JOB", "job"),
    ("REASON", "reason"),
)


@click.group("athletes", invoke_without_command=True)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in AthleteStatus]),
    help="Only athletes in this status (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON array, as GET /athletes pages.")
@click.pass_context
def athletes_command(ctx: click.Context, statuses: tuple[str, ...], as_json: bool) -> None:
    """Athletes: status, scopes, activities by hydration status, the active or last sync job.
    `athletes show ID` shows one."""
    if ctx.invoked_subcommand is not None:
        return
    with database() as (_, engine):
        states = list(_every_athlete(engine, [AthleteStatus(s) for s in statuses]))
    if as_json:
        click.echo(json.dumps([state.model_dump(mode="json") for state in states], indent=2))
        return
    if not states:
        click.echo("no athletes")
        return
    click.echo(table(states))


@athletes_command.command("show")
@click.argument("athlete_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The same JSON as GET /athletes/{id}.")
def show(athlete_id: int, as_json: bool) -> None:
    """One athlete's state."""
    with database() as (_, engine):
        try:
            state = athlete_state(engine, athlete_id)
        except UnknownAthlete as error:
            raise click.ClickException(str(error)) from None
    click.echo(state.model_dump_json(indent=2) if as_json else details(state))


@athletes_command.command("purge")
@click.argument("athlete_id", type=int)
@click.option("--yes", is_flag=True, help="Delete: without it, only say what would go.")
@click.option(
    "--revoke",
    is_flag=True,
    help="First revoke the athlete's grant at Strava; nothing is deleted unless Strava "
    "confirms it is gone.",
)
def purge(athlete_id: int, yes: bool, revoke: bool) -> None:
    """Delete the athlete's data as a deauthorization does (tokens, activities, streams,
    pending fetches, event payloads, profile), keeping the athlete as a tombstone: when
    they ask for it, or after they revoked access in a way no event told us of."""
    from service.ingest.purge import purge_athlete, purge_scope

    with database() as (settings, engine):
        scope = purge_scope(engine, athlete_id)
        if scope is None:
            raise click.ClickException(f"athlete {athlete_id} is unknown")
        if not yes:
            click.echo(describe_scope(athlete_id, scope))
            raise click.ClickException("nothing deleted: add --yes to purge")
        if revoke:
            _revoke_and_purge(settings, engine, athlete_id)
        elif not purge_athlete(engine, athlete_id, utcnow()):
            raise click.ClickException(f"athlete {athlete_id} is unknown")
        click.echo(f"athlete {athlete_id} purged: {scope.activities} activities deleted")


def _revoke_and_purge(settings: Settings, engine: Engine, athlete_id: int) -> None:
    """The product's disconnect (service/ingest/disconnect.py): revoke, then purge."""
    from service.ingest.context import build_context
    from service.ingest.disconnect import disconnect_athlete
    from service.ingest.purge import purge_athlete
    from service.strava.errors import StravaError
    from service.strava.quota import QuotaExceeded

    if athlete_state(engine, athlete_id).status == AthleteStatus.DEAUTHORIZED:
        # No grant left to revoke; the purge runs again, as a repeated deauthorization does.
        click.echo(f"athlete {athlete_id}: already deauthorized, nothing to revoke")
        purge_athlete(engine, athlete_id, utcnow())
        return
    ctx = build_context(settings, engine)
    try:
        disconnect_athlete(ctx, athlete_id)
    except QuotaExceeded as error:
        raise click.ClickException(
            f"nothing deleted: Strava's quota is spent ({error}); try again later"
        ) from None
    except StravaError as error:
        raise click.ClickException(
            f"nothing deleted: Strava did not confirm the revoke ({error})"
        ) from None
    finally:
        ctx.close()
    click.echo(f"athlete {athlete_id}: grant revoked at Strava")


def describe_scope(athlete_id: int, scope: PurgeScope) -> str:
    """What a purge would delete, a line per kind."""
    return "\n".join(
        [
            f"a purge of athlete {athlete_id} would delete:",
            f"  activities        {scope.activities}",
            f"  streams           {scope.streams}",
            f"  pending fetches   {scope.pending_fetches}",
            f"  tombstones        {scope.tombstones}",
            f"  event payloads    {scope.event_payloads}",
            f"  tokens            {'yes' if scope.tokens else 'none stored'}",
            f"  profile           {'yes' if scope.profile else 'none stored'}",
            f"and cancel {scope.active_sync_jobs} active sync job(s); "
            "the athlete stays as a deauthorized tombstone",
        ]
    )


def _every_athlete(engine: Engine, statuses: list[AthleteStatus]) -> Iterator[AthleteState]:
    after_id: int | None = None
    while True:
        page = athlete_page(engine, after_id=after_id, limit=MAX_PAGE_SIZE, statuses=statuses)
        yield from page.athletes
        if page.after_id is None:
            return
        after_id = page.after_id


def _cells(state: AthleteState) -> dict[str, str]:
    counts = state.activities
    job = state.sync_job
    return {
        "id": str(state.id),
        "status": state.status.value,
        "connected": state.connected_at.strftime("%Y-%m-%d %H:%M"),
        "scopes": ",".join(state.scopes) or "-",
        "total": str(counts.total),
        "complete": str(counts.complete),
        "partial": str(counts.partial),
        "pending": str(counts.pending),
        "none": str(counts.none),
        "not_available": str(counts.not_available),
        "failed": str(counts.failed),
        "job": f"{job.id} {job.kind} {job.status}" if job else "-",
        "reason": state.status_reason or "",
    }


def table(states: list[AthleteState]) -> str:
    """The athletes as an aligned table, one line each, under a header."""
    rows = [[header for header, _ in _COLUMNS]]
    for state in states:
        cells = _cells(state)
        rows.append([cells[key] for _, key in _COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def details(state: AthleteState) -> str:
    """One athlete, a field per line."""
    counts = state.activities
    job = state.sync_job
    lines = [
        f"athlete {state.id}",
        f"  status        {state.status.value}",
    ]
    if state.status_reason:
        lines.append(f"  reason        {state.status_reason}")
    lines += [
        f"  scopes        {','.join(state.scopes) or '-'}",
        f"  connected at  {state.connected_at.isoformat()}",
    ]
    if state.deauthorized_at is not None:
        lines.append(f"  deauthorized  {state.deauthorized_at.isoformat()}")
    lines.append(
        f"  activities    {counts.total} "
        f"({counts.complete} complete, {counts.partial} partial, {counts.pending} pending, "
        f"{counts.none} summary only, {counts.not_available} not available, "
        f"{counts.failed} failed)"
    )
    if job is None:
        lines.append("  sync job      none")
    else:
        lines.append(f"  sync job      {job.id} {job.kind} {job.status}")
        lines.append(f"    created     {job.created_at.isoformat()}")
        for label, at in (("started", job.started_at), ("finished", job.finished_at)):
            if at is not None:
                lines.append(f"    {label:<11} {at.isoformat()}")
    return "\n".join(lines)
