"""`strava-ingest subscription check` exits 0 (ok), 1 (warning) or 2 (error), so a cron job
or a probe can run it; and `subscription create` asks Strava nothing until our callback
answers the handshake, says clearly when Strava already has a subscription, and replaces
it with --replace. A real production `serve` answers the handshakes; the emulator is Strava."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from launch import free_port
from sqlalchemy.engine import Engine
from support import VERIFY_TOKEN, WEBHOOK_SECRET, FakeStrava, inbox_row, service_env

from service.cli import main
from service.emulator.state import Subscription
from service.ingest.subscription import save_subscription, stored_subscription_id
from service.models import InboxStatus, utcnow

SUBSCRIPTION = 120475

pytestmark = pytest.mark.e2e


def run(
    database_url: str, strava: FakeStrava, redis_url: str, web: str, *args: str, **env: str
) -> Result:
    environment = service_env(
        database_url, strava, redis_url, SUBSCRIPTION_CACHE_SECONDS="0", PUBLIC_URL=web, **env
    )
    return CliRunner().invoke(main, ["subscription", *args], env=environment)


def at_strava(strava: FakeStrava, callback_url: str, subscription_id: int = SUBSCRIPTION) -> None:
    strava.emulator.set_subscription(
        Subscription(subscription_id, callback_url, VERIFY_TOKEN, time.time())
    )


def ours(web: str) -> str:
    return f"{web}/webhooks/strava/{WEBHOOK_SECRET}"


def statuses(result: Result) -> dict[str, str]:
    report = json.loads(result.stdout)
    return {c["check"]: c["status"] for c in report["checks"]}


def details(result: Result) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in json.loads(result.stdout)["checks"]}


@pytest.fixture
def healthy(engine: Engine, strava: FakeStrava, web: str, athlete_id: int) -> int:
    """Strava lists our subscription, its id is stored, an athlete is connected, and an
    event arrived a minute ago."""
    at_strava(strava, ours(web))
    save_subscription(engine, SUBSCRIPTION, ours(web))
    inbox_row(engine, InboxStatus.PROCESSED, received_at=utcnow() - timedelta(minutes=1))
    return athlete_id


def test_a_healthy_subscription_checks_ok_and_exits_0(
    database_url: str, strava: FakeStrava, redis_url: str, web: str, healthy: int
) -> None:
    result = run(database_url, strava, redis_url, web, "check", "--json")

    assert result.exit_code == 0, result.output
    assert statuses(result) == {
        "listed": "ok",
        "callback": "ok",
        "subscription_id": "ok",
        "handshake": "ok",
        "last_event": "ok",
    }
    assert json.loads(result.stdout)["status"] == "ok"
    assert WEBHOOK_SECRET not in result.output


def test_a_subscription_strava_no_longer_lists_is_an_error_exit_2(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str, healthy: int
) -> None:
    strava.emulator.set_subscription(None)

    result = run(database_url, strava, redis_url, web, "check")

    assert result.exit_code == 2, result.output
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()}
    assert lines == {"listed": "error", "handshake": "ok", "last_event": "ok"}
    assert "Strava lists no push subscription" in result.stdout


@pytest.mark.parametrize(
    ("strava_calls", "says"),
    [
        ("http://127.0.0.1:{closed}/webhooks/strava/" + WEBHOOK_SECRET, "not our"),
        ("{web}/webhooks/strava/an-old-secret-segment-42", "another secret segment"),
    ],
)
def test_a_callback_other_than_ours_is_an_error_exit_2(
    database_url: str,
    strava: FakeStrava,
    redis_url: str,
    web: str,
    healthy: int,
    strava_calls: str,
    says: str,
) -> None:
    at_strava(strava, strava_calls.format(web=web, closed=free_port()))

    result = run(database_url, strava, redis_url, web, "check", "--json")

    assert result.exit_code == 2, result.output
    found = statuses(result)
    assert (found["listed"], found["callback"]) == ("ok", "error")
    # Strava's callback is where events go: it does not answer the handshake as ours would.
    assert found["handshake"] == "error"
    assert says in details(result)["callback"]
    assert "an-old-secret-segment-42" not in result.output
    assert WEBHOOK_SECRET not in result.output


def test_an_id_the_web_app_does_not_accept_is_an_error_exit_2(
    database_url: str, strava: FakeStrava, redis_url: str, web: str, healthy: int
) -> None:
    result = run(
        database_url, strava, redis_url, web, "check", "--json", STRAVA_SUBSCRIPTION_ID="999"
    )

    assert result.exit_code == 2, result.output
    assert statuses(result)["subscription_id"] == "error"
    assert "accepts only 999" in details(result)["subscription_id"]


def test_silence_while_athletes_are_connected_is_a_warning_exit_1(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str, healthy: int
) -> None:
    inbox_row(engine, InboxStatus.PROCESSED, received_at=utcnow() - timedelta(hours=7))

    silent = run(database_url, strava, redis_url, web, "check", "--json")
    tolerant = run(database_url, strava, redis_url, web, "check", SUBSCRIPTION_SILENCE_ALERT="PT8H")

    assert silent.exit_code == 1, silent.output
    assert statuses(silent)["last_event"] == "warning"
    assert "while 1 athlete is connected" in details(silent)["last_event"]
    assert json.loads(silent.stdout)["status"] == "warning"
    assert tolerant.exit_code == 0, tolerant.output


def test_create_asks_strava_nothing_while_the_callback_does_not_answer(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/webhooks/strava"

    result = run(database_url, strava, redis_url, web, "create", "--callback-url", nowhere)

    assert result.exit_code == 1
    assert "would fail Strava's handshake" in result.stderr
    assert "nothing was asked of Strava" in result.stderr
    assert strava.emulator.calls["POST /push_subscriptions"] == 0
    assert WEBHOOK_SECRET not in result.output


def test_create_says_when_strava_already_has_a_subscription_and_keeps_it(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str
) -> None:
    at_strava(strava, ours(web))

    result = run(
        database_url, strava, redis_url, web, "create", "--callback-url", f"{web}/webhooks/strava"
    )

    assert result.exit_code == 1
    assert f"Strava already has subscription {SUBSCRIPTION} calling" in result.stderr
    assert "--replace" in result.stderr
    kept = strava.emulator.subscription
    assert kept is not None
    assert kept["id"] == SUBSCRIPTION


def test_create_with_replace_deletes_the_existing_subscription_and_creates_ours(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, web: str
) -> None:
    at_strava(strava, f"http://127.0.0.1:{free_port()}/old/callback")
    save_subscription(engine, SUBSCRIPTION, "http://old")

    result = run(
        database_url,
        strava,
        redis_url,
        web,
        "create",
        "--replace",
        "--callback-url",
        f"{web}/webhooks/strava",
    )

    assert result.exit_code == 0, result.output
    created = strava.emulator.subscription
    assert created is not None
    assert created["id"] != SUBSCRIPTION
    assert created["callback_url"] == ours(web)
    assert stored_subscription_id(engine) == created["id"]
    assert f"deleted subscription {SUBSCRIPTION}" in result.stderr
    assert strava.emulator.calls["DELETE /push_subscriptions/{id}"] == 1


def test_a_check_that_cannot_reach_the_database_is_an_error_exit_2(
    strava: FakeStrava, redis_url: str
) -> None:
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/x"

    result = run(unreachable, strava, redis_url, "https://ingest.example.com", "check")

    assert result.exit_code == 2
    assert "database unreachable" in result.stderr


def test_strava_refusing_the_view_is_an_error_exit_2(
    database_url: str, strava: FakeStrava, redis_url: str, web: str, healthy: int
) -> None:
    result = run(
        database_url, strava, redis_url, web, "check", "--json", STRAVA_CLIENT_SECRET="wrong"
    )

    assert result.exit_code == 2, result.output
    assert statuses(result)["listed"] == "error"
    assert "Strava could not be asked" in details(result)["listed"]
    assert "wrong" not in result.output
