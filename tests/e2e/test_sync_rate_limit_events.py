"""A sync that runs out of Strava's quota, watched and cancelled through the API, in each mode.

The emulator allows 5 read requests per quarter hour (and the service is told so): the
backfill's listing spends the `recent` tier's share within a few pages and waits for the
next quarter hour. The state says so in words, the stream keeps the connection alive with
heartbeats while nothing changes, and a cancel ends the job and the stream at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from e2e.processes import Service, connect
from e2e.sse import Comment, Event, read_stream
from launch import wait_until
from support import CLIENT_ID, CLIENT_SECRET, READ, FakeStrava

from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer

pytestmark = pytest.mark.e2e

READS_PER_WINDOW = 5


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=300,
            max_stream_points=30,
            limits=RateLimits(
                overall_short=2 * READS_PER_WINDOW,
                overall_daily=100,
                read_short=READS_PER_WINDOW,
                read_daily=100,
            ),
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture
def service_settings() -> dict[str, str]:
    return {
        "SYNC_PAGE_SIZE": "20",
        "QUOTA_LIMIT_SHORT": str(2 * READS_PER_WINDOW),
        "QUOTA_LIMIT_DAILY": "100",
        "QUOTA_READ_LIMIT_SHORT": str(READS_PER_WINDOW),
        "QUOTA_READ_LIMIT_DAILY": "100",
        "SYNC_EVENTS_HEARTBEAT_SECONDS": "0.3",
    }


def rate_limited(service: Service, athlete_id: int) -> dict[str, object] | None:
    state: dict[str, object] = httpx.get(
        f"{service.url}/athletes/{athlete_id}/sync", headers=READ
    ).json()
    return state if state["rate_limited"] else None


def test_a_sync_waiting_for_quota_says_until_when_and_a_cancel_ends_its_stream(
    service: Service,
) -> None:
    athlete_id = connect(service.url)

    state = wait_until(lambda: rate_limited(service, athlete_id), timeout=60, what="quota")

    assert isinstance(state, dict)
    retry_after = datetime.fromisoformat(str(state["retry_after"]))
    assert state["phase"] == "listing"
    assert state["message"] == (
        f"waiting for Strava's rate limit, resuming at {retry_after:%H:%M} UTC"
    )
    # The next quarter hour, scattered over its first seconds.
    assert retry_after.minute % 15 == 0
    assert retry_after.second < 15
    assert isinstance(state["estimate"], dict)
    assert re.fullmatch(r"[\d,]+ of [\d,]+ hydrated; .*", str(state["estimate"]["sentence"]))

    stream = read_stream(f"{service.url}/athletes/{athlete_id}/sync/events", READ, timeout=10)
    first = next(stream)
    assert isinstance(first, Event)
    assert first.state["rate_limited"] is True
    # Hydrations refused quota may still report in; then nothing changes: heartbeats.
    quiet = next(item for item in stream if isinstance(item, Comment))
    assert quiet.text == "ping" or quiet.text.startswith("ping")

    cancelled = httpx.post(f"{service.url}/athletes/{athlete_id}/sync/cancel", headers=READ)

    assert cancelled.status_code == 200
    rest = [item for item in stream if isinstance(item, Event)]
    assert rest[-1].state["job"]["status"] == "cancelled"
    assert rest[-1].state["phase"] == "done"
    assert rest[-1].state["rate_limited"] is False
