import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from launch import wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient
from support import WEBHOOK_SECRET

from service.config import Settings
from service.db import create_db_engine
from service.messaging import EVENTS_QUEUE, PROCESS_EVENT, build_broker
from service.models import InboxEvent, InboxStatus
from service.web.app import create_app

# Production mode: the callback carries WEBHOOK_SECRET (tests/web/test_trust.py covers why).
WEBHOOK = f"/webhooks/strava/{WEBHOOK_SECRET}"
# The official update example (docs/strava.md §1.4), with an int64-sized activity id.
EVENT: dict[str, Any] = {
    "aspect_type": "update",
    "event_time": 1516126040,
    "object_id": 16181809559,
    "object_type": "activity",
    "owner_id": 134815,
    "subscription_id": 120475,
    "updates": {"title": "Messy"},
}
HANDSHAKE = {
    "hub.mode": "subscribe",
    "hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3",
    "hub.verify_token": "test-verify-token",
}
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
# The hand-off to the broker follows the 200 (service/web/batching.py).
DEADLINE = 10.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    return make_settings(broker_url=redis_url, strava_subscription_id=EVENT["subscription_id"])


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def inbox_rows(engine: Engine) -> list[InboxEvent]:
    with Session(engine) as session:
        return list(session.exec(select(InboxEvent)).all())


def queued_messages(redis_client: redis.Redis) -> list[dramatiq.Message[Any]]:
    # dramatiq's RedisBroker keeps message ids in the list "<namespace>:<queue>" and the
    # encoded messages in the hash "<namespace>:<queue>.msgs".
    queue = f"dramatiq:{EVENTS_QUEUE}"
    messages = []
    for message_id in redis_client.lrange(queue, 0, -1):
        encoded = redis_client.hget(f"{queue}.msgs", message_id)
        assert isinstance(encoded, bytes)
        messages.append(dramatiq.Message.decode(encoded))
    return messages


def enqueued_rows(engine: Engine, count: int) -> list[InboxEvent]:
    """The inbox rows, once `count` of them are marked enqueued (within DEADLINE)."""

    def ready() -> list[InboxEvent] | None:
        rows = inbox_rows(engine)
        done = [row for row in rows if row.status == InboxStatus.ENQUEUED]
        return rows if len(done) >= count else None

    rows = wait_until(ready, timeout=DEADLINE, what=f"{count} enqueued inbox rows")
    assert isinstance(rows, list)
    return rows


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in EVENT.items() if key != field}


def test_the_handshake_echoes_the_challenge(client: TestClient) -> None:
    response = client.get(WEBHOOK, params=HANDSHAKE)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3"}


def test_a_handshake_with_a_wrong_verify_token_is_forbidden(client: TestClient) -> None:
    response = client.get(WEBHOOK, params={**HANDSHAKE, "hub.verify_token": "guess"})

    assert response.status_code == 403
    assert "verify_token" in response.json()["error"]


@pytest.mark.parametrize("parameter", ["hub.mode", "hub.challenge", "hub.verify_token"])
def test_a_handshake_missing_a_parameter_is_rejected_naming_it(
    client: TestClient, parameter: str
) -> None:
    params = {name: value for name, value in HANDSHAKE.items() if name != parameter}

    response = client.get(WEBHOOK, params=params)

    assert response.status_code == 400
    assert parameter in response.json()["error"]
    assert response.json()["missing"] == [parameter]


def test_a_handshake_with_a_mode_other_than_subscribe_is_rejected(client: TestClient) -> None:
    response = client.get(WEBHOOK, params={**HANDSHAKE, "hub.mode": "unsubscribe"})

    assert response.status_code == 400
    assert "hub.mode" in response.json()["error"]


def test_an_event_is_stored_enqueued_on_redis_and_acknowledged(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 200
    [row] = enqueued_rows(engine, 1)
    assert (row.object_id, row.owner_id, row.updates) == (16181809559, 134815, {"title": "Messy"})
    assert response.json() == {"status": "received", "event_id": row.id}
    [message] = queued_messages(redis_client)
    assert message.actor_name == PROCESS_EVENT
    assert list(message.args) == [row.id]


def test_a_retried_event_is_stored_and_enqueued_once(
    client: TestClient, engine: Engine, redis_client: redis.Redis
) -> None:
    first = client.post(WEBHOOK, json=EVENT)
    again = client.post(WEBHOOK, json=EVENT)

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["event_id"] == again.json()["event_id"]
    assert len(enqueued_rows(engine, 1)) == 1
    assert len(queued_messages(redis_client)) == 1


def test_malformed_json_is_rejected_and_nothing_stored(client: TestClient, engine: Engine) -> None:
    response = client.post(
        WEBHOOK, content=b'{"object_id": 1,', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert inbox_rows(engine) == []


@pytest.mark.parametrize("body", [[EVENT], "event", 42, None])
def test_json_that_is_not_an_object_is_rejected_and_nothing_stored(
    client: TestClient, engine: Engine, body: Any
) -> None:
    response = client.post(WEBHOOK, content=json.dumps(body))

    assert response.status_code == 400
    assert "object" in response.json()["error"]
    assert inbox_rows(engine) == []


@pytest.mark.parametrize(
    "field",
    ["object_type", "object_id", "aspect_type", "owner_id", "subscription_id", "event_time"],
)
def test_an_event_missing_a_field_is_rejected_naming_it(
    client: TestClient, engine: Engine, field: str
) -> None:
    response = client.post(WEBHOOK, json=without(field))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid event"
    assert list(response.json()["fields"]) == [field]
    assert inbox_rows(engine) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("object_id", "16181809559"),
        ("object_id", -1),
        ("owner_id", 2**63),
        ("event_time", 1516126040.5),
        ("subscription_id", None),
        ("object_type", ""),
        ("aspect_type", "x" * 33),
        ("updates", "title"),
    ],
)
def test_an_event_with_an_invalid_field_is_rejected_naming_it(
    client: TestClient, engine: Engine, field: str, value: Any
) -> None:
    response = client.post(WEBHOOK, json={**EVENT, field: value})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert inbox_rows(engine) == []


def test_a_rejection_is_logged_with_its_reason_but_not_the_body(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    client.post(WEBHOOK, json={**without("event_time"), "updates": {"title": "secret plans"}})

    assert "reason=invalid_event" in caplog.text
    assert "owner_id=134815" in caplog.text
    assert "secret plans" not in caplog.text


def test_an_oversized_body_is_rejected(client: TestClient, engine: Engine) -> None:
    response = client.post(WEBHOOK, json={**EVENT, "padding": "x" * 100_000})

    assert response.status_code == 413
    assert "error" in response.json()
    assert inbox_rows(engine) == []


def test_an_event_is_answered_503_when_the_database_is_down(settings: Settings) -> None:
    down = create_db_engine(UNREACHABLE_DATABASE)
    app = create_app(settings, engine=down, check_schema=False)

    with TestClient(app) as client:
        response = client.post(WEBHOOK, json=EVENT)

    down.dispose()
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable", "reason": "database_unavailable"}


def test_an_event_is_acknowledged_and_left_received_when_the_broker_is_down(
    settings: Settings, engine: Engine
) -> None:
    app = create_app(settings, engine=engine, broker=build_broker(UNREACHABLE_REDIS))

    with TestClient(app) as client:
        response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 200
    [row] = inbox_rows(engine)
    assert row.status == InboxStatus.RECEIVED


def test_a_retry_of_an_event_the_broker_missed_is_enqueued(
    settings: Settings, engine: Engine, client: TestClient, redis_client: redis.Redis
) -> None:
    with TestClient(
        create_app(settings, engine=engine, broker=build_broker(UNREACHABLE_REDIS))
    ) as broker_down:
        broker_down.post(WEBHOOK, json=EVENT)

    response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 200
    assert len(enqueued_rows(engine, 1)) == 1
    assert len(queued_messages(redis_client)) == 1


def test_an_unknown_route_answers_404_json(client: TestClient) -> None:
    response = client.get("/nowhere")

    assert response.status_code == 404
    assert "error" in response.json()
