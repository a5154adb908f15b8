"""`strava-ingest db …` and `keygen`: the schema and the token key."""

from __future__ import annotations

import click

from service.cli.common import load
from service.config import DatabaseSettings
from service.logs import configure_logging


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def upgrade() -> None:
    """Apply the migrations up to the newest schema."""
    from service.db import upgrade_schema

    settings = load(DatabaseSettings)
    configure_logging(settings.log_level, settings.log_format_in_effect)
    upgrade_schema(settings.database_url)
    click.echo("schema is up to date")


@click.command()
def keygen() -> None:
    """Print a new key for TOKEN_KEY."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())
