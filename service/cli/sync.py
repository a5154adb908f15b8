"""`strava-ingest sync`: start, cancel and watch an athlete's sync job.

    strava-ingest sync ATHLETE [--full]    backfill (continued), else reconcile; --full: refresh
    strava-ingest sync cancel ATHLETE      stop the active job at its next page boundary
    strava-ingest sync status [ATHLETE]    jobs; a progress bar while the athlete's job runs
    strava-ingest sync log ATHLETE [--job ID] [--level warning]   a job's log, oldest first

With a Redis broker the job goes to the workers; in embedded mode (BROKER_URL=memory://)
the workers live inside `strava-ingest serve`, so this command runs the job itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.cli.common import database
from service.config import Settings
from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    LogLevel,
    SyncJob,
    SyncStatus,
    utcnow,
)


class _SyncGroup(click.Group):
    """`sync ATHLETE` and `sync cancel|status …`: an argument that is no subcommand starts
    a sync for that athlete."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group("sync", cls=_SyncGroup)
def sync_command() -> None:
    """Sync an athlete's activities: `sync ATHLETE [--full]`, `sync cancel`, `sync status`,
    `sync log`."""


@sync_command.command("start", hidden=True)
@click.argument("athlete_id", type=int)
@click.option("--full", is_flag=True, help="List everything again; remove what Strava dropped.")
@click.option("--wait/--no-wait", default=False, help="Show a progress bar until it ends.")
def start(athlete_id: int, full: bool, wait: bool) -> None:
    """Start (or join) the athlete's sync job."""
    from datetime import timedelta

    from service.ingest.sync_control import SyncRequest, UnknownAthlete, start_sync

    with database() as (settings, engine), _announcer(settings, engine) as publish:
        embedded = settings.broker_url == "memory://"
        try:
            started = start_sync(
                engine,
                athlete_id,
                SyncRequest.FULL if full else SyncRequest.INCREMENTAL,
                utcnow(),
                overlap=timedelta(days=settings.reconcile_overlap_days),
                send=None if embedded else lambda job_id: _send(settings, job_id),
                publish=publish,
            )
        except UnknownAthlete:
            raise click.ClickException(f"athlete {athlete_id} is not connected") from None
        job, created = started.job, started.created
        assert job.id is not None
        verb = "started" if created else "already active:"
        click.echo(f"{verb} job {job.id} ({job.kind}) for athlete {athlete_id}")
        if embedded:
            _run_here(settings, engine, job.id)
        elif wait:
            _watch(engine, job.id)
        _print_jobs([_get(engine, job.id)])


@contextmanager
def _announcer(settings: Settings, engine: Engine) -> Iterator[Callable[[int], object]]:
    """Publishes an athlete's sync state for the progress streams of the web processes
    (in embedded mode they are in `serve`'s process, out of this command's reach)."""
    from service.ingest.progress import build_progress_log
    from service.ingest.sync_status import announce_sync_state
    from service.strava.quota import build_scheduler

    progress = build_progress_log(settings)
    quota = build_scheduler(settings)
    try:
        yield lambda athlete_id: announce_sync_state(engine, quota, progress, athlete_id, utcnow)
    finally:
        quota.close()
        progress.close()


def _send(settings: Settings, job_id: int) -> None:
    from service.messaging import Dispatcher, build_broker

    broker = build_broker(settings.broker_url)
    try:
        Dispatcher(broker).send_sync(job_id)
    finally:
        broker.close()


def _run_here(settings: Settings, engine: Engine, job_id: int) -> None:
    """Embedded mode: run the job in this process, with a progress bar; hydrations are
    left `pending` for `strava-ingest serve` to pick up."""
    import os

    from service.ingest.context import build_context
    from service.ingest.sync import Continue, SyncOptions, Wait, run_job

    ctx = build_context(settings, engine=engine)
    options = SyncOptions.from_settings(settings)
    owner = f"cli:{os.getpid()}"
    try:
        with _bar(engine, job_id) as update:
            while True:
                outcome = run_job(
                    ctx, job_id, owner=owner, options=options, send_hydration=lambda *_: None
                )
                update()
                if isinstance(outcome, Wait):
                    # A foreground command may wait; workers never do (they re-send).
                    click.echo(f"\nwaiting for Strava quota until {outcome.at:%H:%M:%S} UTC")
                    time.sleep(max(0.0, (outcome.at - utcnow()).total_seconds()))
                elif not isinstance(outcome, Continue):
                    break
    finally:
        ctx.strava.close()
        ctx.quota.close()


@contextmanager
def _bar(engine: Engine, job_id: int) -> Iterator[Any]:
    """A progress bar over the athlete's activities: listed so far against what is stored
    (Strava does not say how many there are, so the total grows while a backfill runs)."""
    job = _get(engine, job_id)
    with click.progressbar(length=max(1, _stored(engine, job.athlete_id)), label="listing") as bar:

        def update() -> None:
            current = _get(engine, job_id)
            bar.length = max(bar.length or 1, _stored(engine, current.athlete_id), current.listed)
            bar.update(current.listed - bar.pos)

        yield update


def _watch(engine: Engine, job_id: int) -> None:
    with _bar(engine, job_id) as update:
        while _get(engine, job_id).status in ACTIVE_SYNC_STATUSES:
            update()
            time.sleep(0.5)
        update()


def _get(engine: Engine, job_id: int) -> SyncJob:
    with Session(engine) as session:
        return session.get_one(SyncJob, job_id)


def _stored(engine: Engine, athlete_id: int) -> int:
    with Session(engine) as session:
        count = session.exec(
            select(sa.func.count()).select_from(Activity).where(Activity.athlete_id == athlete_id)
        ).one()
    return int(count)


@sync_command.command("cancel")
@click.argument("athlete_id", type=int)
def cancel(athlete_id: int) -> None:
    """Cancel the athlete's active job; a running one stops at its next page boundary.
    A later `sync ATHLETE` continues from where it stopped."""
    from service.ingest.sync_control import UnknownAthlete, cancel_sync

    with database() as (settings, engine), _announcer(settings, engine) as publish:
        try:
            job = cancel_sync(
                engine, athlete_id, "cancelled by an operator", utcnow(), publish=publish
            )
        except UnknownAthlete:
            raise click.ClickException(f"athlete {athlete_id} is not connected") from None
    if job is None:
        raise click.ClickException(f"athlete {athlete_id} has no active sync job")
    state = "cancelled" if job.status == SyncStatus.CANCELLED else "stops at its next page"
    click.echo(f"job {job.id}: {state}")


@sync_command.command("status")
@click.argument("athlete_id", type=int, required=False)
@click.option(
    "--watch/--once", default=True, help="With ATHLETE: a progress bar while the job runs."
)
def status(athlete_id: int | None, watch: bool) -> None:
    """Sync jobs: the athlete's latest, or the latest per athlete."""
    with database() as (_settings, engine):
        if athlete_id is not None:
            from service.ingest.sync import latest_job

            job = latest_job(engine, athlete_id)
            if job is None:
                raise click.ClickException(f"athlete {athlete_id} has no sync jobs")
            if watch and job.status in ACTIVE_SYNC_STATUSES and job.id is not None:
                _watch(engine, job.id)
                job = _get(engine, job.id)
            _print_jobs([job])
            click.echo(_hydration_line(engine, athlete_id))
            return
        with Session(engine) as session:
            latest = sa.select(sa.func.max(SyncJob.id)).group_by(col(SyncJob.athlete_id))
            jobs = session.exec(
                select(SyncJob).where(col(SyncJob.id).in_(latest)).order_by(col(SyncJob.id))
            ).all()
        _print_jobs(list(jobs))


@sync_command.command("log")
@click.argument("athlete_id", type=int)
@click.option("--job", "job_id", type=int, help="The job (default: the athlete's latest).")
@click.option(
    "--level",
    type=click.Choice([level.value for level in LogLevel]),
    help="Only entries at this level or above.",
)
def log_command(athlete_id: int, job_id: int | None, level: str | None) -> None:
    """Print a sync job's log, oldest entry first: what GET /athletes/{id}/sync/log answers."""
    import json

    from service.ingest.job_log import MAX_LIMIT, UnknownAthlete, UnknownJob, read_log

    with database() as (_settings, engine):
        after: int | None = None
        first = True
        while True:
            try:
                page = read_log(
                    engine,
                    athlete_id,
                    job_id=job_id,
                    level=LogLevel(level) if level else None,
                    after=after,
                    limit=MAX_LIMIT,
                )
            except UnknownAthlete:
                raise click.ClickException(f"athlete {athlete_id} is unknown") from None
            except UnknownJob:
                named = f"job {job_id}" if job_id is not None else "sync job"
                raise click.ClickException(f"athlete {athlete_id} has no {named}") from None
            if first:
                job = page.job
                click.echo(f"job {job.id} ({job.kind}, {job.status}) of athlete {athlete_id}")
                first = False
            for entry in page.entries:
                fields = json.dumps(entry.fields, sort_keys=True, separators=(",", ":"))
                click.echo(
                    f"{entry.id:>8} {entry.at:%Y-%m-%d %H:%M:%S} {entry.level:<7} "
                    f"{entry.message}  {fields}"
                )
            if not page.more:
                return
            # Read on from the same job, even if the athlete started another meanwhile.
            job_id, after = page.job.id, page.next_after


def _hydration_line(engine: Engine, athlete_id: int) -> str:
    """Where the athlete's hydrations stand, counted from the rows: a job only queues them,
    and they complete later in the hydration workers, at their own quota tier."""
    with Session(engine) as session:
        rows = session.execute(
            sa.select(col(Activity.hydration_status), sa.func.count())
            .where(col(Activity.athlete_id) == athlete_id)
            .group_by(col(Activity.hydration_status))
        )
        counts: dict[str, int] = {status: count for status, count in rows}
    order = ("complete", "partial", "pending", "failed", "not_available", "none")
    parts = [f"{counts.get(status, 0)} {status}" for status in order]
    return "hydration: " + ", ".join(parts)


def _print_jobs(jobs: list[SyncJob]) -> None:
    click.echo(
        f"{'job':>6} {'athlete':>10} {'kind':<12} {'status':<12} {'pages':>5} {'listed':>7} "
        f"{'new':>6} {'updated':>7} {'deleted':>7} {'queued':>7}  note"
    )
    for job in jobs:
        note = ""
        if job.status == SyncStatus.RATE_LIMITED and job.retry_after is not None:
            note = f"retry after {job.retry_after:%Y-%m-%d %H:%M:%S} UTC"
        elif job.last_error:
            note = job.last_error
        click.echo(
            f"{job.id:>6} {job.athlete_id:>10} {job.kind:<12} {job.status:<12} {job.pages:>5} "
            f"{job.listed:>7} {job.new:>6} {job.updated:>7} {job.deleted:>7} "
            f"{job.hydrations_queued:>7}  {note}"
        )
