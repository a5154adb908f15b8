"""Admission from a queue: work the quota cannot take now gets a ticket for the window and the
place in it where it should fit, and the broker delivers it then.

Refusing such work and re-sending it for the next window hands a large backlog to the workers
once per window per unit, thousands of refusals to complete a few hundred hydrations. A
ticket is handed out instead, from the tier's capacity (``QuotaScheduler.tier_capacity``):
the rest of this window's room, then a window's room at a time, never more in a UTC day than
the tier's daily allowance. Places in this window are for now; in a later window the tickets
are spread evenly over most of it.

A ticket is a forecast, not a reservation: nothing is held in the scheduler's counters, so
real-time work (which never takes a ticket) always goes ahead of queued work. When its window
comes and the room went to real-time work, the unit is refused once and takes the next free
place. The book of each tier is a cursor (the window being handed out and how many places of
it and of its day are taken), so it stays a few bytes however long the backlog. Queued tiers
share the budget (a tier's share counts every tier's usage), so a tier's places come after
those of the queued tiers above it.

``issue`` holds the policy, a pure function; a backend (``MemoryAdmission`` for one process,
``RedisAdmission`` for many) keeps the books and applies ``issue`` atomically.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis

from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.scheduler import (
    BUCKETS,
    QuotaConfig,
    QuotaScheduler,
    TierCapacity,
    window_index,
)
from service.strava.quota.tiers import REALTIME_TIERS, TIERS_BY_PRIORITY, Tier

# Tickets are spread over this fraction of their window, so the last of them still runs
# (and its retries still land) before the window ends.
SPREAD = 0.9

# The tiers whose work waits in a queue, highest first; real-time work never does.
QUEUED_TIERS: tuple[Tier, ...] = tuple(t for t in TIERS_BY_PRIORITY if t not in REALTIME_TIERS)

# How long a tier's outlook is reused (seconds; also at most a tenth of a window).
OUTLOOK_SECONDS = 1.0

# A book outlives its last ticket's window by this much: a cursor nobody uses expires.
BOOK_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class Ticket:
    """A place for one unit of work.

    Parameters:
        at: when the broker should hand the work to a worker (aware UTC).
        window: the index of the short window the place is in (``window_index``).
        position: the place within that window, from 0.
    """

    at: datetime
    window: int
    position: int

    def delay_ms(self, now: datetime) -> int:
        """The broker's delay (milliseconds) to deliver this ticket's work, from ``now``."""
        return max(0, int((self.at - now).total_seconds() * 1000))


@dataclass(frozen=True)
class TicketBook:
    """One tier's cursor: the window being handed out and the places taken in it and its day.

    Parameters:
        window: index of the short window the next ticket goes to (if it has room).
        taken: tickets handed out for that window.
        room: places that window has for the tier.
        day: index of the UTC day of ``window``.
        day_taken: tickets handed out for that day.
        day_room: places that day has for the tier.
    """

    window: int
    taken: int
    room: float
    day: int
    day_taken: int
    day_room: float


@dataclass(frozen=True)
class Outlook:
    """What ``issue`` needs to know of the tier's budget now."""

    capacity: TierCapacity
    per_day: int


def outlook(scheduler: QuotaScheduler, tier: Tier) -> Outlook:
    """The tier's capacity and its allowance of a whole UTC day, read from the scheduler."""
    capacity = scheduler.tier_capacity(tier)
    status = scheduler.status()
    per_day = min(status.window(bucket, "daily").allowed[tier] for bucket in BUCKETS)
    return Outlook(capacity, per_day)


def issue(
    config: QuotaConfig,
    book: TicketBook | None,
    seen: Outlook,
    count: int,
    now: float,
    ahead: Sequence[TicketBook | None] = (),
    cost: int = 1,
    refused: bool = False,
) -> tuple[TicketBook, list[Ticket]]:
    """Hand out ``count`` tickets from ``book`` (``None``: none handed out yet), each for a
    unit of work that makes ``cost`` requests (a hydration with its streams makes two).

    ``ahead`` are the books of the queued tiers above this one: a tier's share counts every
    tier's usage, so their tickets take this tier's room first, and a window up to which they
    have handed out places is full for it too.

    ``refused``: the scheduler has just refused this work, so the current window is full for
    the tier whatever the book forecast: its places start with the next window.

    A book whose window has passed starts again at the current one, with its room now and
    the day's room now: every ticket of earlier windows has been delivered by then. When the
    tier gets nothing in a window or a day the ticket falls back to the next window's start,
    as a plain refusal would.
    """
    length, day_length = config.window_seconds, config.day_seconds
    current = window_index(now, length)
    capacity = seen.capacity
    if book is None or book.window < current:
        book = TicketBook(
            window=current,
            taken=0,
            room=float(capacity.room_now),
            day=window_index(now, day_length),
            day_taken=0,
            day_room=float(capacity.daily_room),
        )
    if capacity.per_window < 1 or seen.per_day < 1:
        then = datetime.fromtimestamp((current + 1) * length, UTC)
        return book, [Ticket(then, current + 1, 0) for _ in range(count)]
    live = [other for other in ahead if other is not None and other.window >= current]
    window, taken, room = book.window, book.taken, book.room
    day, day_taken, day_room = book.day, book.day_taken, book.day_room

    def move_to(target: int, carry: float = 0.0) -> None:
        nonlocal window, taken, room, day, day_taken, day_room
        window, taken, room = target, 0, capacity.per_window + carry
        target_day = window_index(target * length, day_length)
        if target_day != day:
            day, day_taken, day_room = target_day, 0, float(seen.per_day)

    if refused and window == current:
        move_to(current + 1)
    tickets: list[Ticket] = []
    for _ in range(count):
        while True:
            furthest = max((other.window for other in live), default=window)
            if furthest > window:
                move_to(furthest)
            in_window = taken + sum(o.taken for o in live if o.window == window)
            in_day = day_taken + sum(o.day_taken for o in live if o.day == day)
            if in_window + cost <= room and in_day + cost <= day_room:
                break
            # The forecast's room per window is fractional (a day's room spread over its
            # windows): the part of a place a full window could not give goes to the next one,
            # so over many windows the tier gets ``per_window`` a window, not its floor.
            move_to(window + 1, max(0.0, room - in_window) if in_window + cost > room else 0.0)
        # This window's room is what could be reserved now: work that fits it goes at once,
        # so a small import is not paced over a quarter hour nobody else needs.
        spread = SPREAD * length * in_window / room
        at = now if window == current else window * length + spread
        tickets.append(Ticket(datetime.fromtimestamp(at, UTC), window, taken))
        taken += cost
        day_taken += cost
    return TicketBook(window, taken, room, day, day_taken, day_room), tickets


class Admission(ABC):
    """Hands out tickets for work of a tier that waits for quota.

    The tier's outlook (two reads of the scheduler's counters) is kept for a moment
    (``OUTLOOK_SECONDS``, at most a tenth of a window): a listing page queues 200 units in
    a burst, and a capacity a fraction of a window old is as good a forecast.

    Parameters:
        scheduler: the quota scheduler whose capacity the tickets follow.
    """

    def __init__(self, scheduler: QuotaScheduler) -> None:
        self.scheduler = scheduler
        self._outlooks: dict[Tier, tuple[float, int, Outlook]] = {}
        self._outlooks_lock = threading.Lock()

    def _outlook(self, tier: Tier, now: float) -> Outlook:
        length = self.scheduler.config.window_seconds
        fresh_for = min(OUTLOOK_SECONDS, length / 10)
        window = window_index(now, length)
        with self._outlooks_lock:
            kept = self._outlooks.get(tier)
        if kept is not None and kept[1] == window and 0 <= now - kept[0] < fresh_for:
            return kept[2]
        seen = outlook(self.scheduler, tier)
        with self._outlooks_lock:
            self._outlooks[tier] = (now, window, seen)
        return seen

    def admit(
        self, tier: Tier, count: int = 1, cost: int = 1, *, refused: bool = False
    ) -> list[Ticket]:
        """``count`` tickets for work of ``tier``, in order, each unit making ``cost``
        requests. Real-time work is never queued: its tickets are for now, and the
        scheduler's reservation decides."""
        now = self.scheduler.now()
        if tier in REALTIME_TIERS:
            moment = datetime.fromtimestamp(now, UTC)
            index = window_index(now, self.scheduler.config.window_seconds)
            return [Ticket(moment, index, 0) for _ in range(count)]
        return self._issue(tier, self._outlook(tier, now), count, now, cost, refused)

    @staticmethod
    def _ahead(tier: Tier) -> tuple[Tier, ...]:
        return QUEUED_TIERS[: QUEUED_TIERS.index(tier)]

    def next_place(self, tier: Tier, cost: int = 1, *, refused: bool = False) -> datetime:
        """When one more unit of ``tier`` work should be delivered (``refused``: the
        scheduler has just refused it, see ``issue``)."""
        return self.admit(tier, cost=cost, refused=refused)[0].at

    @abstractmethod
    def _issue(
        self, tier: Tier, seen: Outlook, count: int, now: float, cost: int, refused: bool
    ) -> list[Ticket]:
        """Atomically apply ``issue`` to the tier's book and keep the new book."""

    @abstractmethod
    def book(self, tier: Tier) -> TicketBook | None:
        """The tier's book as kept (for the report and tests)."""


class MemoryAdmission(Admission):
    """Books in a dict behind one lock: embedded mode, one process."""

    def __init__(self, scheduler: QuotaScheduler) -> None:
        super().__init__(scheduler)
        self._lock = threading.Lock()
        self._books: dict[Tier, TicketBook] = {}

    def _issue(
        self, tier: Tier, seen: Outlook, count: int, now: float, cost: int, refused: bool
    ) -> list[Ticket]:
        with self._lock:
            ahead = [self._books.get(other) for other in self._ahead(tier)]
            book, tickets = issue(
                self.scheduler.config,
                self._books.get(tier),
                seen,
                count,
                now,
                ahead,
                cost,
                refused,
            )
            self._books[tier] = book
            return tickets

    def book(self, tier: Tier) -> TicketBook | None:
        with self._lock:
            return self._books.get(tier)


class RedisAdmission(Admission):
    """Books in Redis, one small hash per tier (``{prefix}tickets:{tier}``), shared by every
    process. An update is optimistic: WATCH the book, compute ``issue``, write it in MULTI;
    a concurrent writer makes EXEC fail and the update is computed again.

    Parameters:
        client: the Redis client.
        scheduler: the quota scheduler whose capacity the tickets follow.
        prefix: the key namespace (the scheduler's).
    """

    def __init__(self, client: redis.Redis, scheduler: QuotaScheduler, prefix: str) -> None:
        super().__init__(scheduler)
        self._client = client
        self._prefix = prefix

    def _key(self, tier: Tier) -> str:
        return f"{self._prefix}tickets:{tier.value}"

    def _issue(
        self, tier: Tier, seen: Outlook, count: int, now: float, cost: int, refused: bool
    ) -> list[Ticket]:
        key = self._key(tier)
        others = [self._key(other) for other in self._ahead(tier)]
        with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, *others)  # type: ignore[no-untyped-call]
                    ahead = [_book(pipe.hgetall(other)) for other in others]
                    mine = _book(pipe.hgetall(key))
                    config = self.scheduler.config
                    book, tickets = issue(config, mine, seen, count, now, ahead, cost, refused)
                    last = tickets[-1].window if tickets else book.window
                    ends = (last + 1) * self.scheduler.config.window_seconds
                    pipe.multi()
                    pipe.hset(key, mapping={name: repr(v) for name, v in asdict(book).items()})
                    pipe.expire(key, max(1, int(ends - now)) + BOOK_GRACE_SECONDS)
                    pipe.execute()
                    return tickets
                except redis.WatchError:
                    continue

    def book(self, tier: Tier) -> TicketBook | None:
        return _book(self._client.hgetall(self._key(tier)))


def _book(fields: Mapping[bytes | str, bytes | str]) -> TicketBook | None:
    if not fields:
        return None
    values = {_text(name): float(value) for name, value in fields.items()}
    return TicketBook(
        window=int(values["window"]),
        taken=int(values["taken"]),
        room=values["room"],
        day=int(values["day"]),
        day_taken=int(values["day_taken"]),
        day_room=values["day_room"],
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def build_admission(scheduler: QuotaScheduler) -> Admission:
    """The admission for ``scheduler``'s backend: Redis books beside its counters, or memory."""
    if isinstance(scheduler, RedisQuotaScheduler):
        return RedisAdmission(scheduler.client, scheduler, scheduler.prefix)
    return MemoryAdmission(scheduler)
