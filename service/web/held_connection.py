"""One PostgreSQL connection that a batching stage keeps between batches, used on the event loop,
and that the loop can cut when the server stops answering.

Why not the engine's pool: per batch, a checkout with its pre-ping is a second round trip, and
SQLAlchemy's statement handling was most of the inbox's CPU (docs/benchmarks/ingest.md). A
stage runs one batch at a time on a connection, so one connection per stage suffices.

Why on the event loop (psycopg's AsyncConnection) rather than a worker thread: the loop is busy
under load, so a thread waking up with the server's answer waited for the GIL about 2 ms per
hop, twice per batch, and that wait, not PostgreSQL, set the pace of the commits
(docs/benchmarks/ingest.md).

Why cuttable: Strava wants an answer within two seconds, and a server that accepts the
connection but never answers (hung, or a dead network path whose packets are still
acknowledged) would leave the query waiting forever; neither TCP keepalives nor a server-side
statement_timeout end that. Cancelling the coroutine does not help either: psycopg then sends a
cancel request and waits for the server again, up to five seconds each. `interrupt()` instead
shuts the socket down, which makes the pending read fail at once; the connection is then
discarded and the next batch opens a new one. Connecting is bounded by CONNECT_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")

# libpq's minimum (it treats anything lower as 2).
CONNECT_TIMEOUT_SECONDS = 2


class HeldConnection:
    """A psycopg AsyncConnection in autocommit mode to ``engine``'s database, opened on first
    use. Used from one event loop, one ``run`` at a time. Never used for SQLite (embedded mode
    keeps the engine's path).

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
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._busy = False
        self._cut = False

    async def run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``await work(connection)``; on any error the connection is discarded (a new one
        next time), and the error propagates."""
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            await self.close()
            connection = await psycopg.AsyncConnection.connect(
                *self._connect_args, **self._connect_kwargs
            )
            self._connection = connection
        self._busy = True
        self._cut = False
        try:
            return await work(connection)
        except BaseException:
            await self.close()
            raise
        finally:
            self._busy = False

    def interrupt(self) -> bool:
        """Cut the connection if a ``run`` is using it; True when one was cut."""
        connection = self._connection
        if connection is None or not self._busy or self._cut:
            return False
        self._cut = True
        # A duplicate descriptor: shutting it down affects the shared socket (failing the
        # pending read), and closing it leaves psycopg's own descriptor valid until `close`.
        with (
            contextlib.suppress(OSError, psycopg.Error),
            socket.socket(fileno=os.dup(connection.fileno())) as sock,
        ):
            sock.shutdown(socket.SHUT_RDWR)
        log.warning("database connection cut: no answer in time connection=%s", self._name)
        return True

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()
