"""A flood of forged creates for one athlete, through the real actors (Redis broker, two
dramatiq workers, PostgreSQL, the emulator): it cannot spend the real-time budget everyone
shares, and the athlete is flagged."""

from collections.abc import Callable

from launch import wait_until
from sqlmodel import Session, col, func, select
from support import FakeClock, FakeStrava, Workers

from service.ingest.athletes import connect_athlete
from service.ingest.budget import quota_window
from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.models import Activity, Athlete, InboxEvent, InboxStatus, utcnow
from service.strava.schemas import TokenResponse

DEADLINE = 60.0
T = 1_700_000_000
FETCH = "GET /activities/{id}"
FLOOD = 110
WINDOW = 900


def push(workers: Workers, owner_id: int, activity_id: int) -> int:
    event = WebhookEvent(
        object_type="activity",
        object_id=activity_id,
        aspect_type="create",
        owner_id=owner_id,
        subscription_id=1,
        event_time=T,
    )
    inbox_id = store_event(workers.ctx.engine, event).id
    workers.dispatcher.send_event(inbox_id)
    return inbox_id


def statuses(workers: Workers, owner_id: int) -> dict[str, int]:
    with Session(workers.ctx.engine) as session:
        rows = session.exec(
            select(InboxEvent.status, func.count())
            .where(col(InboxEvent.owner_id) == owner_id)
            .group_by(col(InboxEvent.status))
        ).all()
    return {status: n for status, n in rows}


def test_a_flood_of_forged_creates_for_one_athlete_never_delays_another_athletes_create(
    start_workers: Callable[..., Workers], strava: FakeStrava
) -> None:
    # The quota windows stand still, in the middle of one: everything below happens in it.
    frozen = FakeClock((utcnow().timestamp() // WINDOW) * WINDOW + WINDOW / 2)
    workers = start_workers(
        2,
        quota_clock=frozen,
        quota_window_seconds=WINDOW,
        event_coalesce_seconds=0,
        hydrate_streams="none",
    )
    window = quota_window(workers.ctx)
    flooded = workers.athlete_id
    other = strava.emulator.add_athlete()
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(other))
    connect_athlete(
        workers.ctx.engine, workers.ctx.cipher, token, "read,activity:read_all", utcnow()
    )
    real = strava.emulator.create_activity(flooded)["id"]
    # Made-up ids beyond Strava's: each create costs a fetch, and Strava answers 404.
    for n in range(FLOOD - 1):
        push(workers, flooded, 90_000_000_000 + n)
    push(workers, flooded, real)
    wait_until(
        lambda: (
            sum(
                n
                for s, n in statuses(workers, flooded).items()
                if s in ("processed", "rate_limited")
            )
            == FLOOD
        ),
        timeout=DEADLINE,
        what="the flood to be fetched or to wait for quota",
    )

    genuine = strava.emulator.create_activity(other)
    inbox_id = push(workers, other, genuine["id"])

    wait_until(
        lambda: statuses(workers, other) == {"processed": 1},
        timeout=DEADLINE,
        what="the other athlete's create",
    )
    assert quota_window(workers.ctx) == window
    with Session(workers.ctx.engine) as session:
        event = session.get_one(InboxEvent, inbox_id)
        assert (event.attempts, event.last_error) == (1, None)
        assert session.get(Activity, genuine["id"]) is not None
        flagged = session.get_one(Athlete, flooded)
        assert session.get_one(Athlete, other).flagged_at is None
    # The excess waits at a lower tier for a later window: nothing is dropped or failed.
    waiting = statuses(workers, flooded)
    assert waiting.get(InboxStatus.RATE_LIMITED.value, 0) > 0
    assert InboxStatus.FAILED.value not in waiting
    # The excess at `recent` stays within Strava's read window less the margin (100 x 0.95);
    # the genuine create fits beside it.
    assert strava.emulator.calls[FETCH] <= 95
    assert flagged.flagged_at is not None
    assert flagged.forged_creates >= 5
    assert "404" in (flagged.flag_reason or "")
