"""Watching a real backfill over Server-Sent Events, through real processes, in each mode.

Production: `strava-ingest worker` publishes progress to a Redis Stream and `serve`'s
listener fans it out; embedded: one `serve` process whose worker threads publish in memory.
The athlete connects through the emulator's authorize page, which starts the backfill:
pages of 25 over 200 activities, the recent weeks hydrated with their streams, the emulator
answering each call after 50 ms so that the stream has something to follow.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from e2e.processes import Service, connect
from e2e.sse import Comment, Event, id_key, read_stream
from launch import wait_until
from sqlmodel import Session, col, select
from support import ADMIN, CLIENT_ID, CLIENT_SECRET, READ, FakeStrava

from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.ingest.progress import STREAM_KEY
from service.models import Activity

pytestmark = pytest.mark.e2e

HISTORY = 200
HIGH = 1_000_000
DEADLINE = 90.0


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=HISTORY,
            max_stream_points=30,
            latency=0.05,
            limits=RateLimits(HIGH, HIGH, HIGH, HIGH),
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture
def service_settings() -> dict[str, str]:
    return {
        "SYNC_PAGE_SIZE": "25",
        "HYDRATE_RECENT_WEEKS": "12",
        "HYDRATE_OLDER": "on_demand",
        "QUOTA_LIMIT_SHORT": str(HIGH),
        "QUOTA_LIMIT_DAILY": str(HIGH),
        "QUOTA_READ_LIMIT_SHORT": str(HIGH),
        "QUOTA_READ_LIMIT_DAILY": str(HIGH),
        "SYNC_EVENTS_HEARTBEAT_SECONDS": "0.5",
    }


class Collector(threading.Thread):
    """Reads a stream in the background until it ends, or until `until` says so."""

    def __init__(self, url: str, headers: dict[str, str], until: Any = None) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.until = url, headers, until
        self.events: list[Event] = []
        self.comments = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for item in read_stream(self.url, self.headers):
                if isinstance(item, Comment):
                    self.comments += 1
                    continue
                self.events.append(item)
                if self.until is not None and self.until(item):
                    return
        except BaseException as error:  # re-raised by `result` in the test's thread
            self.error = error

    def result(self, timeout: float = DEADLINE) -> list[Event]:
        self.join(timeout)
        assert not self.is_alive(), f"{self.url} did not end"
        if self.error is not None:
            raise self.error
        return self.events


def events_url(service: Service, athlete_id: int) -> str:
    return f"{service.url}/athletes/{athlete_id}/sync/events"


def hydrated(service: Service, athlete_id: int) -> int:
    with Session(service.engine) as session:
        rows = session.exec(
            select(Activity.id).where(
                Activity.athlete_id == athlete_id,
                col(Activity.hydration_status) == "complete",
            )
        ).all()
    return len(rows)


def assert_in_order(events: list[Event]) -> None:
    """Ids rising, counters never falling, the end last."""
    ids = [id_key(e.id or "") for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for name in ("listed", "new", "hydrated"):
        counts = [e.state["counters"][name] for e in events]
        assert counts == sorted(counts), name
    assert [e.state["phase"] for e in events].index("done") == len(events) - 1


def test_the_stream_of_a_backfill_delivers_every_change_in_order_and_ends_with_it(
    service: Service,
) -> None:
    operator = Collector(f"{service.url}/sync/events", ADMIN)
    operator.start()
    wait_until(lambda: operator.comments > 0, timeout=10, what="the operator's heartbeat")

    athlete_id = connect(service.url)
    watcher = Collector(events_url(service, athlete_id), READ)
    watcher.start()
    watched = watcher.result()

    assert all(e.name == "sync" and e.id for e in watched)
    assert_in_order(watched)
    last = watched[-1].state
    assert last["job"]["status"] == "completed"
    # Each page after the first repeats the previous page's boundary activity.
    assert last["counters"]["listed"] == HISTORY + last["counters"]["pages"] - 2
    assert last["counters"]["new"] == HISTORY
    assert last["counters"]["waiting"] == 0
    assert last["counters"]["hydrated"] == hydrated(service, athlete_id) > 0
    assert "hydrating" in {e.state["phase"] for e in watched}
    shown = httpx.get(f"{service.url}/athletes/{athlete_id}/sync", headers=READ).json()
    assert shown["counters"] == last["counters"]
    # The operator, subscribed before the athlete connected, saw every change of it, and
    # the athlete's own stream every change from its first event on.
    everything = wait_until(
        lambda: _athlete_events_until_done(operator, athlete_id), timeout=10, what="the end"
    )
    assert isinstance(everything, list)
    assert_in_order(everything)
    assert everything[0].state["phase"] == "listing"
    first_live = id_key(watched[1].id or "") if len(watched) > 1 else None
    live = [e.id for e in everything if first_live and id_key(e.id or "") >= first_live]
    assert [e.id for e in watched[1:]] == live
    if service.env["BROKER_URL"].startswith("redis://"):
        assert [e.id for e in everything] == _published_ids(service, athlete_id)


def test_a_reconnect_with_the_last_event_id_misses_nothing(service: Service) -> None:
    athlete_id = connect(service.url)
    url = events_url(service, athlete_id)
    whole = Collector(url, READ)
    whole.start()
    wait_until(lambda: whole.events, timeout=10, what="the first event")
    partial = Collector(url, READ)
    partial.until = lambda _event: len(partial.events) >= 3
    partial.start()
    interrupted = partial.result()

    seen = whole.result()
    resume = Collector(url, {**READ, "last-event-id": interrupted[-1].id or ""})
    resume.start()
    resumed = resume.result()

    assert interrupted[-1].state["phase"] != "done"
    after = id_key(interrupted[-1].id or "")
    assert [(e.id, e.data) for e in resumed] == [
        (e.id, e.data) for e in seen if id_key(e.id or "") > after
    ]
    assert resumed[-1].state["phase"] == "done"


def _athlete_events_until_done(operator: Collector, athlete_id: int) -> list[Event] | None:
    mine = [e for e in list(operator.events) if e.state["athlete_id"] == athlete_id]
    return mine if mine and mine[-1].state["phase"] == "done" else None


def _published_ids(service: Service, athlete_id: int) -> list[str]:
    client = redis.Redis.from_url(service.env["BROKER_URL"])
    try:
        entries = client.xrange(STREAM_KEY)
    finally:
        client.close()
    return [
        entry_id.decode()
        for entry_id, fields in entries
        if int(fields[b"athlete_id"]) == athlete_id
    ]
