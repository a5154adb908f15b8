"""The broker goes down during a burst of events: Strava still gets its 200s, and every event
is processed once the broker is back, through the relay (README, "persist before ack").

The web process and the scheduler (the relay) reach Redis through a TCP proxy that the test
cuts and restores; the worker talks to Redis directly, so only the hand-off is interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.processes import connect, scheduler, subscribe, web, worker
from launch import wait_until
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select
from support import FakeStrava, LoopbackProxy, service_env

from service.models import Activity, HydrationStatus, InboxEvent, InboxStatus

pytestmark = pytest.mark.e2e

DEADLINE = 45.0
BURST = 12


@pytest.fixture
def proxy(redis_url: str) -> Iterator[LoopbackProxy]:
    parsed = make_url(redis_url)
    severing = LoopbackProxy((parsed.host or "127.0.0.1", parsed.port or 6379))
    yield severing
    severing.close()


def test_a_burst_during_a_broker_outage_is_processed_after_it_returns(
    strava: FakeStrava,
    engine: Engine,
    database_url: str,
    redis_url: str,
    proxy: LoopbackProxy,
    tmp_path: Path,
) -> None:
    db_number = make_url(redis_url).database or "0"
    # The burst is one athlete's: past their per-window budget of webhook calls the rest
    # would wait at `recent`, which a burst early in a quarter hour holds back until the
    # next one. What is tested here is the hand-off, so the budget covers the burst.
    env = service_env(
        database_url,
        strava,
        redis_url,
        RELAY_AFTER_SECONDS="1",
        RELAY_INTERVAL_SECONDS="0.5",
        WEBHOOK_FETCHES_PER_ATHLETE_PER_WINDOW=str(2 * BURST),
    )
    through_proxy = {**env, "BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{db_number}"}
    with (
        worker(env, tmp_path, redis_url),
        web(through_proxy, tmp_path) as url,
        scheduler(through_proxy, tmp_path, redis_url),
    ):
        athlete_id = connect(url)
        subscribe(url, env)
        proxy.sever()

        created = [strava.emulator.create_activity(athlete_id)["id"] for _ in range(BURST)]
        assert strava.emulator.wait_for_deliveries(timeout=DEADLINE)
        acknowledged = [d for d in strava.emulator.deliveries if d.status == 200]
        with Session(engine) as session:
            waiting = session.exec(select(InboxEvent.status)).all()
        proxy.restore()

        def all_hydrated() -> bool:
            with Session(engine) as session:
                done = session.exec(
                    select(Activity.id)
                    .where(col(Activity.id).in_(created))
                    .where(col(Activity.hydration_status) == HydrationStatus.COMPLETE)
                ).all()
            return len(done) == BURST

        wait_until(all_hydrated, timeout=DEADLINE, what=f"{BURST} hydrated activities")

    assert len(acknowledged) == BURST
    assert waiting == [InboxStatus.RECEIVED.value] * BURST
