"""One PostgreSQL connection that a batching stage keeps between batches, and that the event
loop can cut when the server stops answering.

Why not the engine's pool: per batch, a checkout with its pre-ping is a second round trip, and
SQLAlchemy's statement handling was most of the inbox's CPU (docs/benchmarks/ingest.md). A
stage runs one batch at a time, so one connection suffices.

Why cuttable: Strava wants an answer within two seconds, and a server that accepts the
connection but never answers (hung, or a dead network path whose packets are still
acknowledged) would block psycopg's read forever; neither TCP keepalives nor a server-side
statement_timeout end that. `interrupt()` shuts the socket down from the event loop's thread,
which wakes the blocked read with an error; the connection is then discarded and the next batch
opens a new one. Connecting is bounded by CONNECT_TIMEOUT_SECONDS instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")

# libpq's minimum (it treats anything lower as 2).
CONNECT_TIMEOUT_SECONDS = 2


class HeldConnection:
    """A psycopg connection in autocommit mode to ``engine``'s database, opened on first use.

    ``run`` is called from one worker thread at a time; ``interrupt`` and ``close`` from any
    thread. Never used for SQLite (embedded mode keeps the engine's path).

    Parameters:
      engine: a PostgreSQL (psycopg) engine; only its URL is used.
      name: for the logs (which stage's connection).
    """

    def __init__(self, engine: Engine, name: str) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[Any, ...] = tuple(args)
        self._connect_kwargs: dict[str, Any] = {
            **kwargs,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "autocommit": True,
            "application_name": f"strava-ingest {name}",
        }
        self._name = name
        # Guards the fields below; held only for short state changes, never around I/O, so
        # that `interrupt` never blocks the event loop.
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._busy = False
        self._cut = False

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(connection)``; on any error the connection is discarded (a new one next
        time), and the error propagates."""
        connection = self._take()
        try:
            return work(connection)
        except BaseException:
            self._discard(connection)
            raise
        finally:
            with self._lock:
                self._busy = False

    def interrupt(self) -> bool:
        """Cut the connection if a ``run`` is using it; True when one was cut."""
        with self._lock:
            connection = self._connection
            if connection is None or not self._busy or self._cut:
                return False
            self._cut = True
            # A duplicate descriptor: shutting it down affects the shared socket (waking the
            # blocked read), and closing it leaves psycopg's own descriptor valid.
            with (
                contextlib.suppress(OSError, psycopg.Error),
                socket.socket(fileno=os.dup(connection.fileno())) as sock,
            ):
                sock.shutdown(socket.SHUT_RDWR)
        log.warning("database connection cut: no answer in time connection=%s", self._name)
        return True

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            connection = self._connection
            if connection is not None and (connection.closed or connection.broken or self._cut):
                stale, connection = connection, None
            else:
                stale = None
            self._connection = connection
            self._cut = False
            self._busy = connection is not None
        if stale is not None:
            stale.close()
        if connection is None:
            # Outside the lock: connecting may take up to CONNECT_TIMEOUT_SECONDS.
            connection = psycopg.connect(*self._connect_args, **self._connect_kwargs)
            with self._lock:
                self._connection = connection
                self._busy = True
        return connection

    def _discard(self, connection: psycopg.Connection[Any]) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None
        connection.close()
