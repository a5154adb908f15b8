"""Engine and session factory. SQLite (embedded) or PostgreSQL (production) is chosen here only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

log = logging.getLogger(__name__)


def database_reachable(engine: Engine) -> bool:
    """Whether the database answers a trivial query (a health check)."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        log.warning("database check failed error=%s", type(error).__name__)
        return False
    return True


def migrations_dir() -> Path:
    """The alembic scripts, found through the installed package `service.migrations` (the
    source tree's `migrations/` folder, mapped by setup.py), so a wheel install finds them
    in site-packages and an editable one in the checkout."""
    location = files("service.migrations")
    if not isinstance(location, Path):
        # A zipped install: alembic runs env.py and the versions from a real folder only.
        raise RuntimeError(f"the migrations are not in a folder: {location}")
    return location


class SchemaBehind(Exception):
    """The database schema is older than the code; the message says which command fixes it."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web threads write while workers read; busy_timeout queues writers instead
    # of failing at once; SQLite leaves foreign keys off unless asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(database_url: str, **kwargs: Any) -> Engine:
    if database_url.startswith("sqlite"):
        engine = sa.create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(database_url, connect_args={"connect_timeout": 5}, **kwargs)


def upsert_insert(engine: Engine, table: Any) -> Any:
    """An INSERT that takes ON CONFLICT clauses, in the engine's dialect (both PostgreSQL and
    SQLite have them, with the same API)."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    return insert(table)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_schema(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def drop_database(database_url: str) -> None:
    """Drop the PostgreSQL database ``database_url`` names, closing its connections. For the
    test suite and the benchmarks, which each own a database of their own."""
    _administer(database_url, create=False)


def recreate_database(database_url: str) -> None:
    """Drop the PostgreSQL database ``database_url`` names and create it empty (as
    ``drop_database``: tests and benchmarks only)."""
    _administer(database_url, create=True)


def _administer(database_url: str, *, create: bool) -> None:
    import psycopg

    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        if create:
            c.execute(f'CREATE DATABASE "{url.database}"')


def check_schema(engine: Engine) -> None:
    """Refuse to run on a schema that is behind the code."""
    url = engine.url.render_as_string(hide_password=False)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise SchemaBehind(
            f"database schema is at revision {current or 'none (empty database)'}, "
            f"the code needs {head}: run `strava-ingest db upgrade`"
        )
