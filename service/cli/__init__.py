"""The `strava-ingest` command. Thin: each module parses, wires dependencies and calls
domain code; this one assembles the command groups."""

from __future__ import annotations

import click

from service.cli import athletes, db, emulator, events, health, keys, quota, run, subscription, sync


@click.group()
# From the installed distribution's metadata, so it is the version pip installed.
@click.version_option(package_name="strava-ingest", prog_name="strava-ingest")
def main() -> None:
    """Webhook-first ingestion of Strava activities."""


for command in (
    db.db,
    db.keygen,
    keys.keys,
    run.serve,
    run.worker,
    run.scheduler,
    run.relay,
    health.health,
    subscription.subscription,
    quota.quota_command,
    emulator.emulator,
    events.events,
    sync.sync_command,
    athletes.athletes_command,
):
    main.add_command(command)
