"""What the commands share: settings that fail with a message, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from service.config import ConfigError, DatabaseSettings, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

S = TypeVar("S", bound=DatabaseSettings)


def load(cls: type[S]) -> S:
    try:
        return load_settings(cls)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def settings() -> Settings:
    return load(Settings)


def require_schema(settings: Settings) -> None:
    """Fail with a plain message when the database is unreachable or behind the code."""
    from sqlalchemy.exc import OperationalError

    from service.db import SchemaBehind, check_schema, create_db_engine

    engine = create_db_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaBehind as error:
        raise click.ClickException(str(error)) from None
    except OperationalError as error:
        raise click.ClickException(f"database unreachable: {error.orig}") from None
    finally:
        engine.dispose()


@contextmanager
def database() -> Iterator[tuple[Settings, Engine]]:
    """The settings and an engine on a database whose schema is current."""
    from service.db import create_db_engine

    loaded = settings()
    require_schema(loaded)
    engine = create_db_engine(loaded.database_url)
    try:
        yield loaded, engine
    finally:
        engine.dispose()
