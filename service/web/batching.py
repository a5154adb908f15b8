"""Group commit of webhook events: many concurrent requests share one INSERT and one commit.

Strava wants a 200 within two seconds and we send it only once the event is committed
(docs/strava.md §1.3; persist before ack). One commit per request would cap throughput at the
database's commit rate, so requests put their validated event here and await a future. A single
task takes whatever is waiting (up to ``max_batch``) as soon as a commit lane is free, stores it
with one multi-row INSERT, commits, and resolves every future: no timer, so an idle service
answers at once and a busy one forms larger batches by itself while earlier commits are in
flight. On PostgreSQL two lanes (INGEST_COMMIT_LANES), each with a connection of its own, keep
one batch travelling while the loop answers the other's requests.

The hand-off to the broker is a second stage that runs concurrently with the commits: the
batch's messages are sent in one Redis pipeline (service/web/handoff.py), then one UPDATE marks
them enqueued. Requests do not wait for it: a broker failure leaves the rows `received`, and
the relay re-sends them (service/ingest/inbox.py).

A batch the database refuses for its data (psycopg's DataError or IntegrityError, a value the
driver cannot encode) is stored again one event at a time: the offending event's request gets
400, the others commit and get 200. Validation (service/ingest/events.py) refuses such values
before they get here; this keeps one that slips through from failing anyone else's request.
Any other database failure fails every request of the batch with 503 (nothing was committed,
Strava retries). So does a database that does not answer: each request waits at most ``deadline``
seconds (INGEST_DEADLINE_SECONDS, well within Strava's two), and a batch still unanswered then
has its connection cut (service/web/held_connection.py). An event committed after its request
was answered 503 is harmless: Strava's retry is recognised by its dedupe key.

On PostgreSQL everything runs on the event loop (psycopg's AsyncConnection, constant SQL:
service/ingest/inbox.py `store_events_pg`; redis.asyncio for the hand-off), because threads
woken under load wait for the GIL longer than PostgreSQL takes to commit. SQLite (embedded mode)
uses the engine in a thread, one batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import dramatiq
import psycopg
import sqlalchemy.exc
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from service.ingest.events import UNSTORABLE, WebhookEvent
from service.ingest.inbox import (
    StoredEvent,
    mark_enqueued,
    mark_enqueued_pg,
    store_events,
    store_events_pg,
)
from service.models import InboxStatus
from service.web.errors import InvalidRequest, Unavailable, WebError
from service.web.handoff import Handoff
from service.web.held_connection import HeldConnection
from service.web.metrics import WebhookCounters

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")

# How often the deadlines are checked: a request is answered at most this much after its own.
WATCHDOG_TICK_SECONDS = 0.1


@dataclass(frozen=True)
class _Waiting:
    event: WebhookEvent
    future: asyncio.Future[StoredEvent]


@dataclass(frozen=True)
class _Stage(Generic[A, T]):
    """A database step of the pipeline and how to cut it short (False: nothing to cut)."""

    run: Callable[[A], Awaitable[T]]
    interrupt: Callable[[], bool]


_Lane = _Stage[Sequence[WebhookEvent], list[StoredEvent]]


def _pg_lane(held: HeldConnection) -> _Lane:
    return _Stage(lambda events: held.run(lambda c: store_events_pg(c, events)), held.interrupt)


def _no_cut() -> bool:
    return False


class InboxBatcher:
    """Stores webhook events in shared transactions and hands them to the broker.

    Parameters:
      engine: the inbox's database.
      broker: where ``process_event`` messages go.
      counters: where batches and hand-off failures are counted.
      max_batch: at most this many events per INSERT (INGEST_BATCH_MAX).
      deadline: seconds a request waits for its commit before 503 (INGEST_DEADLINE_SECONDS).
      commit_lanes: batches committing at once on PostgreSQL, each on its own connection
        (INGEST_COMMIT_LANES); SQLite, which serialises writes anyway, always uses one.
    """

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        counters: WebhookCounters,
        *,
        max_batch: int = 256,
        deadline: float = 1.5,
        commit_lanes: int = 2,
    ) -> None:
        self._counters = counters
        self._max_batch = max_batch
        self._deadline = deadline
        self._handoff = Handoff(broker)
        self._lanes: asyncio.Queue[_Lane] = asyncio.Queue()
        self._held: list[HeldConnection] = []
        if engine.dialect.name == "postgresql":
            for number in range(1, commit_lanes + 1):
                held = HeldConnection(engine, f"inbox-commit-{number}")
                self._held.append(held)
                self._lanes.put_nowait(_pg_lane(held))
            marks = HeldConnection(engine, "inbox-handoff")
            self._held.append(marks)
            self._mark: _Stage[list[int], None] = _Stage(
                lambda ids: marks.run(lambda c: mark_enqueued_pg(c, ids)), marks.interrupt
            )
        else:
            # SQLite is in-process: nothing to cut (its busy_timeout bounds a lock wait).
            self._lanes.put_nowait(
                _Lane(lambda events: run_in_threadpool(store_events, engine, events), _no_cut)
            )
            self._mark = _Stage(lambda ids: run_in_threadpool(mark_enqueued, engine, ids), _no_cut)
        self._waiting: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._handoffs: asyncio.Queue[list[int] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._commits: set[asyncio.Task[None]] = set()
        self._closed = False
        # Ids handed to the second stage and not finished yet: a retry arriving meanwhile
        # finds its row still `received` but must not be sent twice.
        self._in_handoff: set[int] = set()
        # Every request's future with its deadline, in arrival order (so in deadline order):
        # one deque append per request instead of a timer per request.
        self._pending: deque[tuple[float, asyncio.Future[StoredEvent]]] = deque()

    def start(self) -> None:
        """Start the two stages; call from the running event loop (the app's lifespan)."""
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="inbox-commit"),
            asyncio.create_task(self._handoff_loop(), name="inbox-handoff"),
            asyncio.create_task(self._watchdog(), name="inbox-watchdog"),
        ]

    async def store(self, event: WebhookEvent) -> StoredEvent:
        """Return once the event is committed (raises Unavailable when the database fails)."""
        if self._closed:
            raise Unavailable("shutting down", reason="shutting_down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredEvent] = loop.create_future()
        # The watchdog fails it after `deadline`; the commit loop then skips it (done).
        self._pending.append((loop.time() + self._deadline, future))
        self._waiting.put_nowait(_Waiting(event, future))
        return await future

    async def aclose(self) -> None:
        """Finish what is waiting (commits and hand-offs), then stop."""
        self._closed = True
        if not self._tasks:
            return
        self._waiting.put_nowait(None)
        commit_task, handoff_task, watchdog_task = self._tasks
        await commit_task
        self._handoffs.put_nowait(None)
        await handoff_task
        watchdog_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog_task
        self._tasks = []
        for held in self._held:
            await held.close()
        await self._handoff.aclose()

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            await asyncio.sleep(WATCHDOG_TICK_SECONDS)
            now = loop.time()
            while pending and (pending[0][1].done() or pending[0][0] <= now):
                _, future = pending.popleft()
                if not future.done():
                    future.set_exception(
                        Unavailable("database did not answer in time", reason="database_timeout")
                    )

    async def _commit_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._waiting.get()
            if first is None:
                break
            # Waiting for a free lane first lets the batch grow meanwhile.
            lane = await self._lanes.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._waiting.empty():
                item = self._waiting.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            task = asyncio.create_task(self._commit(batch, lane))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)
        if self._commits:
            await asyncio.wait(self._commits)

    async def _commit(self, batch: list[_Waiting], lane: _Lane) -> None:
        try:
            outcomes = await self._store(batch, lane)
        finally:
            self._lanes.put_nowait(lane)
        stored: list[StoredEvent] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, StoredEvent):
                stored.append(outcome)
            if item.future.done():  # the client may have gone away, or its deadline passed
                continue
            if isinstance(outcome, StoredEvent):
                item.future.set_result(outcome)
            else:
                item.future.set_exception(outcome)
        if not stored:
            return
        self._counters.count_batch(len(stored))
        # Duplicates still `received` are sent again: their first hand-off may have failed.
        to_send = [
            inbox_id
            for inbox_id in dict.fromkeys(
                s.id for s in stored if s.status == InboxStatus.RECEIVED.value
            )
            if inbox_id not in self._in_handoff
        ]
        if to_send:
            self._in_handoff.update(to_send)
            self._handoffs.put_nowait(to_send)

    async def _store(self, batch: list[_Waiting], lane: _Lane) -> list[StoredEvent | WebError]:
        """Each event's row, or the error its request gets. A batch the database refuses for
        its data (a value validation let through) is stored again one event at a time, so
        that only the offending event is refused (400) and the others commit."""
        try:
            stored = await self._bounded(lane.run([item.event for item in batch]), lane.interrupt)
        except Exception as error:
            if not is_data_error(error):
                _log_unavailable(len(batch), error)
                # A fresh exception per request: one instance raised in many tasks would
                # collect their tracebacks.
                return [_unavailable() for _ in batch]
            log.warning(
                "inbox batch refused for its data, storing its events one by one events=%d "
                "error=%s",
                len(batch),
                type(error).__name__,
            )
        else:
            return list(stored)
        outcomes: list[StoredEvent | WebError] = []
        for position, item in enumerate(batch):
            if item.future.done():
                outcomes.append(_unavailable())  # answered already; not tried again
                continue
            try:
                [one] = await self._bounded(lane.run([item.event]), lane.interrupt)
            except Exception as error:
                if not is_data_error(error):
                    _log_unavailable(len(batch) - position, error)
                    outcomes.extend(_unavailable() for _ in batch[position:])
                    break
                log.warning(
                    "webhook event refused by the database reason=%s error=%s object_id=%s "
                    "owner_id=%s",
                    UNSTORABLE,
                    type(error).__name__,
                    item.event.object_id,
                    item.event.owner_id,
                )
                outcomes.append(
                    InvalidRequest(
                        "the event holds a value the database cannot store", reason=UNSTORABLE
                    )
                )
                continue
            outcomes.append(one)
        return outcomes

    async def _bounded(self, work: Awaitable[T], interrupt: Callable[[], bool]) -> T:
        """Await ``work`` (a database step), cutting its connection whenever it goes
        unanswered past the requests' deadline: they were answered 503 by the watchdog already
        (one tick later, so that they are told `database_timeout`), but the stage must not stay
        stuck behind a server that never answers."""
        task = asyncio.ensure_future(work)
        while True:
            done, _ = await asyncio.wait({task}, timeout=self._deadline + 2 * WATCHDOG_TICK_SECONDS)
            if done:
                return task.result()
            interrupt()

    async def _handoff_loop(self) -> None:
        while True:
            ids = await self._handoffs.get()
            if ids is None:
                return
            while not self._handoffs.empty():
                more = self._handoffs.get_nowait()
                if more is None:
                    self._handoffs.put_nowait(None)
                    break
                ids.extend(more)
            if await self._send(ids):
                await self._mark_enqueued(ids)
            else:
                self._counters.handoff_failures += 1
            self._in_handoff.difference_update(ids)

    async def _send(self, ids: list[int]) -> bool:
        try:
            await self._handoff.send(ids)
        except Exception as error:
            # Committed already, so Strava had its 200; the relay re-sends them.
            log.warning(
                "broker unavailable, events left for the relay events=%d first_event_id=%s "
                "error=%s",
                len(ids),
                ids[0],
                type(error).__name__,
            )
            return False
        return True

    async def _mark_enqueued(self, ids: list[int]) -> None:
        try:
            await self._bounded(self._mark.run(ids), self._mark.interrupt)
        except Exception as error:
            # Enqueued but not recorded: the relay may send them again, which processing
            # tolerates.
            log.warning(
                "could not mark events enqueued events=%d error=%s", len(ids), type(error).__name__
            )


# What a database (or the driver, encoding the parameters) says about the data it was given, as
# opposed to its being unreachable or slow. The inbox's insert never conflicts on its dedupe
# key (ON CONFLICT DO NOTHING), so an integrity error, too, is about the data.
_DATA_ERRORS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
    UnicodeError,
    OverflowError,
)


def is_data_error(error: BaseException) -> bool:
    """Whether ``error`` means the database refused the data (never that it is down)."""
    if isinstance(error, _DATA_ERRORS):
        return True
    # SQLAlchemy wraps what the driver raised while binding parameters.
    if isinstance(error, sqlalchemy.exc.StatementError) and not isinstance(
        error, sqlalchemy.exc.DBAPIError
    ):
        return isinstance(error.orig, _DATA_ERRORS)
    return False


def _unavailable() -> Unavailable:
    return Unavailable("database unavailable", reason="database_unavailable")


def _log_unavailable(events: int, error: Exception) -> None:
    if isinstance(error, sqlalchemy.exc.DBAPIError | sqlalchemy.exc.TimeoutError | psycopg.Error):
        # str(error) would include the statement's parameters (event fields): log only the
        # driver's own message.
        orig = error if isinstance(error, psycopg.Error) else getattr(error, "orig", None)
        log.error(
            "database unavailable, batch not stored events=%d error=%s detail=%r",
            events,
            type(error).__name__,
            " ".join(str(orig).split()) if orig is not None else "",
        )
    else:
        log.error("inbox batch failed events=%d", events, exc_info=error)
