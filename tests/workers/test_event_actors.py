"""Event semantics through the real actors: Redis broker, two dramatiq workers in this
process (standing in for two worker processes), PostgreSQL and the emulator."""

from collections.abc import Callable
from typing import Any

import pytest
from launch import wait_until
from sqlmodel import Session, col, select
from support import FakeStrava, Workers

from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.ingest.lifecycle import replay
from service.models import Activity, ActivityStream, InboxEvent, utcnow

DEADLINE = 20.0
T = 1_700_000_000
FETCH = "GET /activities/{id}"


@pytest.fixture
def workers(start_workers: Callable[..., Workers]) -> Workers:
    """Two workers, as two processes would be, with a short coalescing window."""
    return start_workers(2, event_coalesce_seconds=1.0)


def push(workers: Workers, activity_id: int, aspect: str, event_time: int, **updates: Any) -> int:
    event = WebhookEvent(
        object_type="activity",
        object_id=activity_id,
        aspect_type=aspect,
        owner_id=workers.athlete_id,
        subscription_id=1,
        event_time=event_time,
        updates=updates,
    )
    inbox_id = store_event(workers.ctx.engine, event).id
    workers.dispatcher.send_event(inbox_id)
    return inbox_id


def statuses(workers: Workers, ids: list[int]) -> list[str]:
    with Session(workers.ctx.engine) as session:
        rows = session.exec(select(InboxEvent).where(col(InboxEvent.id).in_(ids))).all()
    return [r.status for r in sorted(rows, key=lambda r: r.id or 0)]


def all_finished(workers: Workers, ids: list[int]) -> None:
    wait_until(
        lambda: all(s in ("processed", "ignored") for s in statuses(workers, ids)),
        timeout=DEADLINE,
        what=f"events {ids} to finish",
    )


def activity(workers: Workers, activity_id: int) -> Activity | None:
    with Session(workers.ctx.engine) as session:
        return session.get(Activity, activity_id)


def hydrated(workers: Workers, strava: FakeStrava) -> int:
    """An activity fully hydrated (detail and streams), with Strava's call counts reset."""
    created = strava.emulator.create_activity(workers.athlete_id)
    all_finished(workers, [push(workers, created["id"], "create", T)])
    wait_until(
        lambda: (a := activity(workers, created["id"])) and a.hydration_status == "complete",
        timeout=DEADLINE,
        what="the activity's streams",
    )
    strava.emulator.reset_calls()
    return int(created["id"])


def test_a_burst_of_create_three_updates_and_delete_ends_deleted_with_at_most_one_fetch(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    strava.emulator.delete_activity(created["id"])

    burst = [
        push(workers, created["id"], "create", T),
        push(workers, created["id"], "update", T + 1, title="a"),
        push(workers, created["id"], "update", T + 2, type="Walk"),
        push(workers, created["id"], "update", T + 3, private="true"),
        push(workers, created["id"], "delete", T + 4),
    ]

    all_finished(workers, burst)
    assert activity(workers, created["id"]) is None
    # One, unless the delete arrived while the create's fetch was in flight: then the delete
    # confirms with a fetch of its own (docs/events.md).
    assert 1 <= strava.emulator.calls[FETCH] <= 2


def test_a_burst_of_create_and_updates_costs_one_fetch_and_ends_in_the_last_state(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    burst = [push(workers, created["id"], "create", T)]
    for n, title in enumerate(["one", "two", "three"], start=1):
        strava.emulator.update_activity(created["id"], title=title)
        burst.append(push(workers, created["id"], "update", T + n, title=title))

    all_finished(workers, burst)
    # The event is done once the detail is stored; the streams follow as their own hydration.
    row = wait_until(
        lambda: (a := activity(workers, created["id"])) and a.hydration_status == "complete" and a,
        timeout=DEADLINE,
        what="the activity's streams",
    )

    assert strava.emulator.calls[FETCH] == 1
    assert isinstance(row, Activity)
    assert row.name == "three"


def test_a_title_only_update_costs_zero_strava_calls(workers: Workers, strava: FakeStrava) -> None:
    activity_id = hydrated(workers, strava)

    all_finished(workers, [push(workers, activity_id, "update", T + 1, title="Messy")])

    assert sum(strava.emulator.calls.values()) == 0
    row = activity(workers, activity_id)
    assert row is not None
    assert row.name == "Messy"


def test_an_older_update_delivered_after_a_newer_one_does_not_win(
    workers: Workers, strava: FakeStrava
) -> None:
    activity_id = hydrated(workers, strava)
    newer = push(workers, activity_id, "update", T + 20, title="new")
    all_finished(workers, [newer])

    older = push(workers, activity_id, "update", T + 10, title="old")

    all_finished(workers, [older])
    row = activity(workers, activity_id)
    assert row is not None
    assert row.name == "new"
    assert sum(strava.emulator.calls.values()) == 0


def test_a_create_delivered_after_its_confirmed_delete_leaves_nothing_and_costs_nothing(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    strava.emulator.delete_activity(created["id"])
    delete = push(workers, created["id"], "delete", T + 5)
    all_finished(workers, [delete])
    assert strava.emulator.calls[FETCH] == 1  # the delete's confirmation

    create = push(workers, created["id"], "create", T)

    all_finished(workers, [create])
    assert statuses(workers, [create]) == ["ignored"]
    assert activity(workers, created["id"]) is None
    assert strava.emulator.calls[FETCH] == 1


def test_an_event_of_an_unknown_owner_is_ignored_and_costs_nothing(
    workers: Workers, strava: FakeStrava
) -> None:
    event = WebhookEvent(
        object_type="activity",
        object_id=16181809559,
        aspect_type="create",
        owner_id=999_999,
        subscription_id=1,
        event_time=T,
    )
    inbox_id = store_event(workers.ctx.engine, event).id
    workers.dispatcher.send_event(inbox_id)

    all_finished(workers, [inbox_id])
    assert statuses(workers, [inbox_id]) == ["ignored"]
    assert sum(strava.emulator.calls.values()) == 0


def test_a_failing_event_ends_dead_and_is_replayed_to_success(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    strava.emulator.fail_next(2, status=503)
    inbox_id = push(workers, created["id"], "create", T)
    wait_until(
        lambda: statuses(workers, [inbox_id]) == ["failed"], timeout=DEADLINE, what="a dead event"
    )

    replayed = replay(workers.ctx.engine, workers.dispatcher.send_event, now=utcnow())

    assert replayed == 1
    all_finished(workers, [inbox_id])
    wait_until(
        lambda: (a := activity(workers, created["id"])) and a.hydration_status == "complete",
        timeout=DEADLINE,
        what="the replayed activity, streams included",
    )
    assert strava.emulator.calls[FETCH] == 3


def test_a_webhook_create_ends_complete_with_the_streams_the_default_policy_wants(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)

    all_finished(workers, [push(workers, created["id"], "create", T)])

    wait_until(
        lambda: (
            (row := activity(workers, created["id"])) is not None
            and row.hydration_status == "complete"
        ),
        timeout=DEADLINE,
        what="the activity complete",
    )
    with Session(workers.ctx.engine) as session:
        streams = session.exec(
            select(ActivityStream).where(col(ActivityStream.activity_id) == created["id"])
        ).all()
    assert streams
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[FETCH + "/streams"]) == (1, 1)
