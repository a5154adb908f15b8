"""`strava-ingest emulator`: the Strava emulator as a process of its own."""

from __future__ import annotations

import click

from service.logs import configure_logging


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--athletes", default=1, show_default=True, type=int)
@click.option("--activities", default=20, show_default=True, type=int, help="Per athlete.")
@click.option("--client-id", envvar="STRAVA_CLIENT_ID", type=int, required=True)
@click.option("--client-secret", envvar="STRAVA_CLIENT_SECRET", required=True)
def emulator(
    host: str,
    port: int,
    seed: int,
    athletes: int,
    activities: int,
    client_id: int,
    client_secret: str,
) -> None:
    """Run the Strava emulator (for demos, tests and benchmarks; no Strava is reachable)."""
    from service.emulator import EmulatorConfig
    from service.emulator.server import run

    configure_logging()
    run(
        EmulatorConfig(
            client_id=client_id,
            client_secret=client_secret,
            seed=seed,
            athletes=athletes,
            activities_per_athlete=activities,
        ),
        host=host,
        port=port,
    )
