"""`strava-ingest subscription view | delete` record what Strava answers in our database, so
the web app enforces the right subscription id (create is covered end to end in
tests/e2e/test_event_flow.py: it needs the web app up for Strava's validation GET)."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from support import VERIFY_TOKEN, FakeStrava, service_env

from service.cli import main
from service.emulator.state import Subscription
from service.ingest.subscription import save_subscription, stored_subscription_id

CALLBACK = "https://ingest.example.com/webhooks/strava"


def subscription(
    database_url: str, strava: FakeStrava, *args: str, configured: int | None = None
) -> Result:
    env = service_env(database_url, strava)
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
