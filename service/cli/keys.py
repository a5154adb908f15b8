"""`strava-ingest keys …`: the TOKEN_KEY the stored tokens are encrypted with."""

from __future__ import annotations

import click

from service.cli.common import database
from service.logs import configure_logging


@click.group()
def keys() -> None:
    """TOKEN_KEY rotation."""


@keys.command("rotate")
@click.option(
    "--batch-size",
    default=100,
    show_default=True,
    type=click.IntRange(min=1, max=10_000),
    help="Athletes per transaction; an interrupted run loses at most one batch.",
)
def rotate(batch_size: int) -> None:
    """Re-encrypt every stored token with the first key of TOKEN_KEY.

    Run it after prepending a new key and restarting the service; then the old keys can be
    dropped. A second run re-encrypts nothing. Exits 1 when a token decrypts with no key.
    """
    from service.ingest.crypto import TokenCipher
    from service.ingest.reencrypt import ReencryptCounts, reencrypt_batches

    with database() as (settings, engine):
        configure_logging(settings.log_level, settings.log_format_in_effect)
        cipher = TokenCipher(settings.token_key.get_secret_value())
        totals = ReencryptCounts()
        for batch in reencrypt_batches(engine, cipher, batch_size):
            totals.add(batch)
    click.echo(
        f"re-encrypted {totals.rotated} tokens, {totals.current} already under the first key, "
        f"{totals.undecryptable} undecryptable"
    )
    if totals.undecryptable_athletes:
        athletes = ", ".join(str(athlete_id) for athlete_id in totals.undecryptable_athletes)
        raise click.ClickException(
            f"tokens of athletes {athletes} decrypt with no key of TOKEN_KEY: add the key they "
            "were encrypted with, or have these athletes connect again"
        )
