"""Events no genuine Strava delivery holds are refused at the door, in both modes: an event
time from the future (it would outrank every later event of its activity), and values the
database cannot store (one would fail the group commit of everyone else's events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.testclient import TestClient
from support import ADMIN, SUBSCRIPTION_ID, WEBHOOK_SECRET, Deployed

from service.config import Settings
from service.models import InboxEvent
from service.web.app import create_app

EVENT: dict[str, Any] = {
    "aspect_type": "update",
    "event_time": 1516126040,
    "object_id": 16181809559,
    "object_type": "activity",
    "owner_id": 134815,
    "subscription_id": SUBSCRIPTION_ID,
    "updates": {"title": "Messy"},
}
# Raw JSON for one field, as an attacker writes it: json.loads reads every one of these.
POISON: dict[str, tuple[str, str]] = {
    "nul_in_title": ("updates", '{"title": "Mor\\u0000ning"}'),
    "lone_surrogate_in_title": ("updates", '{"title": "\\ud800"}'),
    "nan": ("updates", '{"distance": NaN}'),
    "infinity": ("updates", '{"elapsed": [1, {"deep": -Infinity}]}'),
    "float_overflow": ("updates", '{"watts": 1e999}'),
    "int_beyond_64_bits": ("updates", '{"a": [{"b": 18446744073709551616}]}'),
    "negative_int_beyond_64_bits": ("updates", '{"a": -9223372036854775809}'),
    "nul_in_key": ("updates", '{"ti\\u0000tle": "x"}'),
    "surrogate_in_key": ("updates", '{"\\udc00": "x"}'),
    "nul_in_object_type": ("object_type", '"activ\\u0000ity"'),
    "surrogate_in_aspect_type": ("aspect_type", '"upd\\udfffate"'),
}


def body(replace: dict[str, str] | None = None, **fields: Any) -> bytes:
    """EVENT with `fields` changed, and `replace` fields given as raw JSON text."""
    parts = {name: json.dumps(value) for name, value in {**EVENT, **fields}.items()}
    parts.update(replace or {})
    return ("{" + ", ".join(f'"{name}": {raw}' for name, raw in parts.items()) + "}").encode()


def post(deployed: Deployed, content: bytes) -> httpx.Response:
    return deployed.client.post(
        deployed.webhook, content=content, headers={"content-type": "application/json"}
    )


def stored_object_ids(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return sorted(session.exec(select(InboxEvent.object_id)).all())


# Event time


@pytest.mark.parametrize(
    "event_time",
    [lambda: 2**63 - 1, lambda: 4_102_444_800, lambda: int(time.time()) + 301 + 60],
    ids=["int64_max", "year_2100", "skew_plus_a_minute"],
)
def test_an_event_time_from_the_future_is_refused_naming_the_field(
    deployed: Deployed, event_time: Callable[[], int]
) -> None:
    response = post(deployed, body(event_time=event_time()))

    assert response.status_code == 400
    assert response.json()["reason"] == "event_time_future"
    assert response.json()["field"] == "event_time"
    assert "event_time" in response.json()["error"]
    assert stored_object_ids(deployed.engine) == []


def test_an_event_time_within_the_clock_skew_is_accepted(deployed: Deployed) -> None:
    response = post(deployed, body(event_time=int(time.time()) + 200))

    assert response.status_code == 200


@pytest.mark.parametrize(("event_time", "reason"), [(0, "event_time_past"), (-1, "invalid_event")])
def test_an_absurdly_old_or_negative_event_time_is_refused(
    deployed: Deployed, event_time: int, reason: str
) -> None:
    response = post(deployed, body(event_time=event_time))

    assert response.status_code == 400
    assert response.json()["reason"] == reason
    assert "event_time" in json.dumps(response.json())


def test_the_clock_skew_is_a_setting(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    settings = make_settings(strava_subscription_id=SUBSCRIPTION_ID, webhook_clock_skew_seconds=0)
    with TestClient(create_app(settings, engine=engine)) as client:
        ahead = client.post(
            f"/webhooks/strava/{WEBHOOK_SECRET}", json={**EVENT, "event_time": time.time() // 1 + 5}
        )

    assert ahead.status_code == 400


# Values the database cannot store


@pytest.mark.parametrize("poison", sorted(POISON))
def test_a_value_the_database_cannot_store_is_refused_naming_the_field(
    deployed: Deployed, poison: str
) -> None:
    field, raw = POISON[poison]

    response = post(deployed, body({field: raw}))

    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "unstorable_value"
    assert list(response.json()["fields"]) == [field]
    assert stored_object_ids(deployed.engine) == []
    counts = deployed.client.get("/stats/webhooks", headers=ADMIN).json()["rejected"]
    assert counts == {"unstorable_value": 1}


def test_a_refusal_logs_request_values_escaped_so_they_cannot_start_a_log_line(
    deployed: Deployed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")

    post(deployed, body({"updates": '{"title\\n": "\\u0000"}', "object_id": '"1\\nforged"'}))

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("service")]
    assert any("reason=unstorable_value" in message for message in ours)
    assert any("1\\nforged" in message for message in ours)  # escaped, on the same line
    assert not [message for message in ours if "\n" in message]


def test_a_concurrent_burst_with_poisoned_events_among_good_ones_stores_every_good_one(
    make_settings: Callable[..., Settings], engine: Engine, redis_url: str
) -> None:
    # Production mode, as in the attack: PostgreSQL, Redis, group commits of concurrent events.
    settings = make_settings(broker_url=redis_url, strava_subscription_id=SUBSCRIPTION_ID)
    app = create_app(settings, engine=engine)
    good = [body(object_id=1000 + number) for number in range(40)]
    bad = [body({field: raw}, object_id=9000 + n) for n, (field, raw) in enumerate(POISON.values())]
    # Poisoned events spread among the good ones, all sent at once.
    bodies = [*good]
    for position, poisoned in enumerate(bad):
        bodies.insert(position * 4 + 1, poisoned)

    async def burst() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            f"/webhooks/strava/{WEBHOOK_SECRET}",
                            content=content,
                            headers={"content-type": "application/json"},
                        )
                        for content in bodies
                    )
                )

    responses = dict(zip(bodies, asyncio.run(burst()), strict=True))

    assert [responses[content].status_code for content in good] == [200] * len(good)
    assert {responses[content].status_code for content in bad} == {400}
    with Session(engine) as session:
        stored = session.exec(
            select(InboxEvent.object_id).where(col(InboxEvent.object_id) < 9000)
        ).all()
    assert sorted(stored) == list(range(1000, 1040))
    assert stored_object_ids(engine) == list(range(1000, 1040))
