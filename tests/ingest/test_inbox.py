from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.ingest.events import WebhookEvent
from service.ingest.inbox import relay, store_event
from service.models import InboxEvent, InboxStatus, utcnow

EVENT = WebhookEvent(
    object_type="activity",
    object_id=16181809559,
    aspect_type="update",
    owner_id=134815,
    subscription_id=120475,
    event_time=1516126040,
    updates={"title": "Messy"},
)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    name = "engine" if request.param == "postgresql" else "sqlite_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


def test_a_retried_event_is_stored_once(any_engine: Engine) -> None:
    first = store_event(any_engine, EVENT)
    again = store_event(any_engine, EVENT)

    assert first.created
    assert not again.created
    assert again.id == first.id
    with Session(any_engine) as session:
        assert len(session.exec(select(InboxEvent)).all()) == 1


def test_events_differing_in_updates_are_distinct(any_engine: Engine) -> None:
    first = store_event(any_engine, EVENT)
    second = store_event(any_engine, EVENT.model_copy(update={"updates": {"title": "Tidy"}}))

    assert second.created
    assert second.id != first.id


def test_relay_resends_events_left_received_and_marks_them_enqueued(engine: Engine) -> None:
    stored = store_event(engine, EVENT)
    sent: list[int] = []

    count = relay(engine, sent.append, older_than=timedelta(0))

    assert count == 1
    assert sent == [stored.id]
    with Session(engine) as session:
        assert session.get_one(InboxEvent, stored.id).status == InboxStatus.ENQUEUED


def test_relay_keeps_events_when_the_broker_is_still_down(engine: Engine) -> None:
    stored = store_event(engine, EVENT)

    def broker_down(_: int) -> None:
        raise ConnectionError("broker down")

    assert relay(engine, broker_down, older_than=timedelta(0)) == 0
    with Session(engine) as session:
        assert session.get_one(InboxEvent, stored.id).status == InboxStatus.RECEIVED


def test_relay_resends_a_retry_whose_delayed_message_never_came(engine: Engine) -> None:
    stored = store_event(engine, EVENT)
    with Session(engine) as session:
        row = session.get_one(InboxEvent, stored.id)
        row.status = InboxStatus.RATE_LIMITED.value
        row.retry_after = utcnow() - timedelta(minutes=5)
        session.add(row)
        session.commit()
    sent: list[int] = []

    relay(engine, sent.append, older_than=timedelta(minutes=1))
    relay(engine, sent.append, older_than=timedelta(minutes=1))

    assert sent == [stored.id]
    with Session(engine) as session:
        assert session.get_one(InboxEvent, stored.id).retry_after is None


def test_relay_leaves_a_retry_that_is_not_yet_due(engine: Engine) -> None:
    stored = store_event(engine, EVENT)
    with Session(engine) as session:
        row = session.get_one(InboxEvent, stored.id)
        row.status = InboxStatus.RATE_LIMITED.value
        row.retry_after = utcnow() + timedelta(minutes=5)
        session.add(row)
        session.commit()
    sent: list[int] = []

    relay(engine, sent.append, older_than=timedelta(0))

    assert sent == []
