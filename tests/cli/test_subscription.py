"""`strava-ingest subscription create | view | delete` record what Strava answers in our
database, so the web app enforces the right subscription id. Create needs the web app up for
Strava's validation GET: a real `strava-ingest serve` answers it."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from support import VERIFY_TOKEN, WEBHOOK_SECRET, FakeStrava, service_env

from service.cli import main
from service.cli.subscription import with_path_secret
from service.emulator.state import Subscription
from service.ingest.subscription import save_subscription, stored_subscription_id

CALLBACK = "https://ingest.example.com/webhooks/strava"


def subscription(
    database_url: str,
    strava: FakeStrava,
    *args: str,
    configured: int | None = None,
    broker_url: str = "memory://",
) -> Result:
    env = service_env(database_url, strava, broker_url, SUBSCRIPTION_CACHE_SECONDS="0")
    if configured is not None:
        env["STRAVA_SUBSCRIPTION_ID"] = str(configured)
    return CliRunner().invoke(main, ["subscription", *args], env=env)


def at_strava(strava: FakeStrava, subscription_id: int) -> None:
    strava.emulator.set_subscription(
        Subscription(subscription_id, CALLBACK, VERIFY_TOKEN, time.time())
    )


def test_view_shows_strava_s_subscription_and_stores_its_id(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    at_strava(strava, 120475)

    result = subscription(database_url, strava, "view")

    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.stdout)
    assert (shown["id"], shown["callback_url"]) == (120475, CALLBACK)
    assert stored_subscription_id(engine) == 120475


def test_view_forgets_a_stored_id_when_strava_has_no_subscription(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    save_subscription(engine, 120475, CALLBACK)

    result = subscription(database_url, strava, "view")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert stored_subscription_id(engine) is None


def test_view_warns_when_the_configured_id_is_not_strava_s(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    at_strava(strava, 120475)

    result = subscription(database_url, strava, "view", configured=999)

    assert result.exit_code == 0, result.output
    assert "STRAVA_SUBSCRIPTION_ID=999 but Strava reports subscription 120475" in result.stderr


def test_delete_removes_the_subscription_at_strava_and_forgets_its_id(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    at_strava(strava, 120475)
    save_subscription(engine, 120475, CALLBACK)

    result = subscription(database_url, strava, "delete")

    assert result.exit_code == 0, result.output
    assert "deleted subscription 120475" in result.stdout
    assert strava.emulator.subscription is None
    assert stored_subscription_id(engine) is None


def test_delete_without_a_subscription_fails_with_a_message_and_forgets_a_stale_id(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    save_subscription(engine, 120475, CALLBACK)

    result = subscription(database_url, strava, "delete")

    assert result.exit_code == 1
    assert "there is no subscription to delete" in result.stderr
    assert stored_subscription_id(engine) is None


def test_create_registers_the_callback_with_the_secret_and_events_are_then_accepted(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str
) -> None:
    event = {
        "aspect_type": "create",
        "event_time": int(time.time()),
        "object_id": 1,
        "object_type": "activity",
        "owner_id": 2,
        "subscription_id": 1,
    }
    before = httpx.post(f"{web}/webhooks/strava/{WEBHOOK_SECRET}", json=event)

    result = subscription(
        database_url,
        strava,
        "create",
        "--callback-url",
        f"{web}/webhooks/strava",
        broker_url=redis_url,
    )

    assert result.exit_code == 0, result.output
    created = strava.emulator.subscription
    assert created is not None
    assert created["callback_url"] == f"{web}/webhooks/strava/{WEBHOOK_SECRET}"
    assert stored_subscription_id(engine) == created["id"]
    after = httpx.post(created["callback_url"], json={**event, "subscription_id": created["id"]})
    assert (before.status_code, after.status_code) == (503, 200)
    assert before.json()["reason"] == "no_subscription"


@pytest.mark.parametrize(
    ("given", "registered"),
    [
        (
            "https://x.example/webhooks/strava",
            f"https://x.example/webhooks/strava/{WEBHOOK_SECRET}",
        ),
        (
            "https://x.example/webhooks/strava/",
            f"https://x.example/webhooks/strava/{WEBHOOK_SECRET}",
        ),
        (f"https://x.example/hook/{WEBHOOK_SECRET}", f"https://x.example/hook/{WEBHOOK_SECRET}"),
        ("https://x.example/hook?a=1", f"https://x.example/hook/{WEBHOOK_SECRET}?a=1"),
    ],
)
def test_the_secret_is_appended_to_a_callback_url_once(given: str, registered: str) -> None:
    assert with_path_secret(given, WEBHOOK_SECRET) == registered
