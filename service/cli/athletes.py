"""`strava-ingest athletes`: what `GET /athletes` and `GET /athletes/{id}` answer, for the
operator at a terminal (service/ingest/athlete_status.py computes both).

    strava-ingest athletes [--status S ...] [--json]   every athlete, a table (or a JSON array)
    strava-ingest athletes show ID [--json]            one athlete
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
from sqlalchemy.engine import Engine

from service.cli.common import database
from service.ingest.athlete_status import (
    MAX_PAGE_SIZE,
    AthleteState,
    UnknownAthlete,
    athlete_page,
    athlete_state,
)
from service.models import AthleteStatus

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
