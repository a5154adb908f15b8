"""On-demand hydration is queued once per activity however many readers ask at once, and
only for an activity hydration can still complete, of a connected athlete."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from activity_support import BASE, hydrated_activity, stored_activity, stored_athlete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.ingest import on_demand
from service.models import Activity, AthleteStatus, utcnow

ATHLETE = 601


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest) -> Engine:
    name = "engine" if request.param == "postgresql" else "sqlite_engine"
    engine: Engine = request.getfixturevalue(name)
    stored_athlete(engine, ATHLETE)
    return engine


class Queue:
    """Records what would be sent to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def __call__(self, activity_id: int, tier: str) -> None:
        with self.lock:
            self.sent.append((activity_id, tier))


def row(engine: Engine, activity_id: int) -> Activity:
    with Session(engine) as session:
        return session.get_one(Activity, activity_id)


def test_ten_concurrent_readers_queue_one_hydration_at_on_demand(db: Engine) -> None:
    activity_id = stored_activity(db, ATHLETE, BASE)
    queue = Queue()
    start = threading.Barrier(10)
    queued: list[bool] = []

    def read() -> None:
        start.wait()
        reading = on_demand.read_activity(db, queue, activity_id, utcnow())
        assert reading is not None
        queued.append(reading.queued)

    readers = [threading.Thread(target=read) for _ in range(10)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()

    assert queue.sent == [(activity_id, "on_demand")]
    assert sorted(queued) == [False] * 9 + [True]
    assert row(db, activity_id).hydration_status == "pending"


def test_a_claim_stands_for_its_lease_then_a_reader_may_queue_again(db: Engine) -> None:
    activity_id = stored_activity(db, ATHLETE, BASE)
    now = utcnow()
    assert on_demand.claim(db, activity_id, now)
    assert not on_demand.claim(db, activity_id, now + on_demand.ON_DEMAND_LEASE)
    assert on_demand.claim(db, activity_id, now + on_demand.ON_DEMAND_LEASE + timedelta(seconds=1))


def test_a_hydration_waiting_for_quota_keeps_its_claim_past_the_lease(db: Engine) -> None:
    now = utcnow()
    later = now + on_demand.ON_DEMAND_LEASE * 3
    activity_id = stored_activity(db, ATHLETE, BASE, retry_after=later)
    assert on_demand.claim(db, activity_id, now)
    assert not on_demand.claim(db, activity_id, later - timedelta(seconds=1))
    assert on_demand.claim(db, activity_id, later + on_demand.ON_DEMAND_LEASE)


def test_a_claim_whose_message_was_refused_is_given_back(db: Engine) -> None:
    activity_id = stored_activity(db, ATHLETE, BASE)

    def refuse(activity_id: int, tier: str) -> None:
        raise ConnectionError("broker down")

    now = utcnow()
    with pytest.raises(ConnectionError):
        on_demand.request_hydration(db, refuse, activity_id, now)
    assert row(db, activity_id).on_demand_requested_at is None
    assert on_demand.request_hydration(db, Queue(), activity_id, now)


@pytest.mark.parametrize(
    "columns",
    [
        {"hydration_status": "failed", "last_hydrate_error": "GiveUp"},
        {"hydration_status": "not_available", "last_hydrate_error": "NotFound"},
        {
            "hydration_status": "partial",
            "hydration_missing": ["streams"],
            "raw_detail": {"id": 1},
            "last_hydrate_error": "streams: NotFound",
        },
    ],
    ids=["failed", "not_available", "streams_refused"],
)
def test_nothing_is_queued_for_what_hydration_cannot_complete(
    db: Engine, columns: dict[str, Any]
) -> None:
    activity_id = stored_activity(db, ATHLETE, BASE, **columns)
    queue = Queue()
    reading = on_demand.read_activity(db, queue, activity_id, utcnow())
    assert reading is not None
    assert not reading.queued
    assert on_demand.reader_status(reading.stored) == columns["hydration_status"]
    assert queue.sent == []


def test_nothing_is_queued_for_a_complete_activity(db: Engine) -> None:
    activity_id = hydrated_activity(db, ATHLETE, BASE)
    queue = Queue()
    reading = on_demand.read_activity(db, queue, activity_id, utcnow())
    assert reading is not None
    assert (reading.queued, on_demand.reader_status(reading.stored)) == (False, "complete")
    assert reading.stored.stream_types == ["heartrate"]
    assert queue.sent == []


@pytest.mark.parametrize("status", [AthleteStatus.NEEDS_REAUTH, AthleteStatus.DEAUTHORIZED])
def test_nothing_is_queued_for_an_athlete_who_is_not_connected(
    db: Engine, status: AthleteStatus
) -> None:
    athlete = stored_athlete(db, ATHLETE + 1, status)
    activity_id = stored_activity(db, athlete, BASE)
    queue = Queue()
    reading = on_demand.read_activity(db, queue, activity_id, utcnow())
    assert reading is not None
    assert not reading.queued
    assert on_demand.reader_status(reading.stored) == "none"
    assert queue.sent == []


def test_an_activity_we_do_not_store_is_none_and_costs_nothing(db: Engine) -> None:
    queue = Queue()
    assert on_demand.read_activity(db, queue, 123456789, utcnow()) is None
    assert queue.sent == []


def test_a_partial_activity_reports_pending_and_misses_its_streams(db: Engine) -> None:
    activity_id = stored_activity(
        db,
        ATHLETE,
        BASE,
        hydration_status="partial",
        hydration_missing=["streams"],
        raw_detail={"id": 1},
    )
    queue = Queue()
    reading = on_demand.read_activity(db, queue, activity_id, utcnow())
    assert reading is not None
    assert reading.queued
    assert on_demand.reader_status(reading.stored) == "pending"
    assert on_demand.missing_parts(reading.stored.row) == ["streams"]
    # A partial row stays partial while its streams are fetched: its detail is stored.
    assert row(db, activity_id).hydration_status == "partial"
