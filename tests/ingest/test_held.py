"""Hydrations that wait in their rows for quota: the release admits `recent` ones before
`backfill` ones, the longest waiting first, takes only what the quota admits and sends each
once, prepaid with the requests reserved for it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import TIER_SHARES, FakeClock

from service.ingest.held import release, wait_for_place
from service.ingest.policy import HydrationPolicy
from service.models import Activity, Athlete
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.admission import Admitted, admit_now
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.scheduler import window_index
from service.strava.ratelimit import WindowPair

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# Recent activities fetch their streams too (two requests), older ones the detail only.
POLICY = HydrationPolicy(recent=timedelta(weeks=12), streams="recent")
WINDOW = 7_000_000
# Activities by id: 1-3 started long ago (backfill), 10-11 lately (recent), 20 has no start.
STARTS = {1: 400, 2: 500, 3: 450, 10: 2, 11: 30, 20: None}

Sent = tuple[int, str, int | None, tuple[int, int] | None]


@dataclass
class Quota:
    """Admits up to `room[tier]` units at each call, as the quota would; records the calls."""

    room: dict[Tier, int] = field(default_factory=dict)
    calls: list[tuple[Tier, int, int]] = field(default_factory=list)

    def __call__(self, tier: Tier, count: int, cost: int) -> Admitted:
        self.calls.append((tier, count, cost))
        return Admitted(WINDOW, (cost,) * min(count, self.room.get(tier, count)))


@dataclass
class Broker:
    """Records what is sent; fails at the send numbered `fail_at` (from 1), if given."""

    fail_at: int | None = None
    sent: list[Sent] = field(default_factory=list)

    def __call__(
        self, activity_id: int, tier: str, delay_ms: int | None, prepaid: tuple[int, int] | None
    ) -> None:
        if self.fail_at is not None and len(self.sent) + 1 == self.fail_at:
            raise ConnectionError("broker down")
        self.sent.append((activity_id, tier, delay_ms, prepaid))


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.flush()
        for activity_id, days in STARTS.items():
            start = None if days is None else NOW - timedelta(days=days)
            session.add(
                Activity(id=activity_id, athlete_id=7, start_date=start, hydration_status="pending")
            )
        session.commit()


def waiting_since(engine: Engine, *ids: int) -> list[datetime | None]:
    with Session(engine) as session:
        return [session.get_one(Activity, i).hydration_held_until for i in ids]


def queue(engine: Engine, *ids: int) -> None:
    """Each one starts waiting a minute after the one before."""
    for position, activity_id in enumerate(ids):
        wait_for_place(
            engine, [activity_id], NOW - timedelta(hours=1) + timedelta(minutes=position)
        )


def test_recent_hydrations_go_first_and_the_longest_waiting_first_within_a_tier(
    engine: Engine,
) -> None:
    seed(engine)
    queue(engine, 3, 11, 20, 1, 10, 2)
    quota, broker = Quota(), Broker()

    sent = release(engine, POLICY, NOW, quota, broker)

    assert sent == 6
    assert [message[0] for message in broker.sent] == [11, 10, 3, 20, 1, 2]
    assert quota.calls == [(Tier.RECENT, 2, 2), (Tier.BACKFILL, 4, 1)]
    assert waiting_since(engine, *STARTS) == [None] * len(STARTS)


def test_only_the_admitted_hydrations_are_sent_each_prepaid_with_its_requests(
    engine: Engine,
) -> None:
    seed(engine)
    queue(engine, 1, 2, 3, 10, 11)
    places = waiting_since(engine, 2, 3, 11)

    sent = release(engine, POLICY, NOW, Quota({Tier.RECENT: 1, Tier.BACKFILL: 1}), Broker())
    broker = Broker()
    release(engine, POLICY, NOW, Quota({Tier.RECENT: 0, Tier.BACKFILL: 1}), broker)

    assert sent == 2
    assert broker.sent == [(2, "backfill", None, (WINDOW, 1))]
    # Those not admitted keep their place in the queue.
    assert waiting_since(engine, 1, 2, 10) == [None, None, None]
    assert waiting_since(engine, 3, 11) == [places[1], places[2]]


def test_a_unit_admitted_with_fewer_requests_than_it_costs_is_sent_with_those(
    engine: Engine,
) -> None:
    seed(engine)
    queue(engine, 10, 11)
    broker = Broker()

    release(engine, POLICY, NOW, lambda tier, count, cost: Admitted(WINDOW, (2, 1)), broker)

    assert broker.sent == [
        (10, "recent", None, (WINDOW, 2)),
        (11, "recent", None, (WINDOW, 1)),
    ]


def test_a_second_release_sends_nothing_twice(engine: Engine) -> None:
    seed(engine)
    queue(engine, 1, 10)
    broker = Broker()

    first = release(engine, POLICY, NOW, Quota(), broker)
    again = release(engine, POLICY, NOW, Quota(), broker)

    assert (first, again) == (2, 0)
    assert sorted(message[0] for message in broker.sent) == [1, 10]


def test_a_row_hydrated_meanwhile_is_not_admitted(engine: Engine) -> None:
    seed(engine)
    queue(engine, 1, 2)
    with Session(engine) as session:
        session.get_one(Activity, 1).hydration_status = "complete"  # a reader's, on demand
        session.commit()
    quota, broker = Quota(), Broker()

    release(engine, POLICY, NOW, quota, broker)

    assert quota.calls == [(Tier.BACKFILL, 1, 1)]
    assert [message[0] for message in broker.sent] == [2]


def test_rows_a_failing_broker_did_not_take_wait_again_and_go_at_the_next_release(
    engine: Engine,
) -> None:
    seed(engine)
    queue(engine, 1, 2, 3)
    broker = Broker(fail_at=2)

    with pytest.raises(ConnectionError):
        release(engine, POLICY, NOW, Quota(), broker)

    assert [message[0] for message in broker.sent] == [1]
    assert waiting_since(engine, 1, 2, 3) == [None, NOW, NOW]
    broker.fail_at = None
    assert release(engine, POLICY, NOW, Quota(), broker) == 2
    assert [message[0] for message in broker.sent] == [1, 2, 3]


def test_the_quota_reserves_what_it_admits_and_the_rest_waits(engine: Engine) -> None:
    seed(engine)
    queue(engine, 1, 2, 3, 10)
    # Five reads a window: recent may fill floor(5 x 0.95 x 0.85) = 4, backfill 3. At the last
    # tick of the window the whole room is admitted: the recent hydration's two requests, then
    # one of backfill's.
    clock = FakeClock(NOW.timestamp() + 900 - 1.5)
    config = QuotaConfig(read_limit=WindowPair(5, 1000), shares=TIER_SHARES)
    scheduler = MemoryQuotaScheduler(config, clock)
    broker = Broker()

    sent = release(engine, POLICY, NOW, functools.partial(admit_now, scheduler), broker)

    window = window_index(clock.now, 900)
    assert sent == 2
    assert broker.sent == [
        (10, "recent", None, (window, 2)),
        (1, "backfill", None, (window, 1)),
    ]
    used = scheduler.status().window("read", "short").used_by_tier
    assert (used[Tier.RECENT], used[Tier.BACKFILL]) == (2, 1)
    assert None not in waiting_since(engine, 2, 3)
