"""The scheduler's watch of the push subscription: a warning when no event arrived for
SUBSCRIPTION_SILENCE_ALERT while athletes are connected, an error when Strava no longer lists
our subscription; one look a duty of the scheduler. Strava is the emulator, over HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from support import (
    VERIFY_TOKEN,
    WEBHOOK_SECRET,
    FakeStrava,
    connect_emulator_athlete,
    inbox_row,
)

from service.cli.run import DutyDeps, periodic_duties
from service.config import Settings
from service.emulator.state import Subscription
from service.ingest.subscription import save_subscription
from service.ingest.subscription_health import Level, shown, stored_findings, watch
from service.messaging import Dispatcher, build_broker
from service.models import InboxStatus, utcnow
from service.strava.client import StravaClient
from service.strava.metered import metered_client
from service.strava.quota import QuotaConfig, Tier, using_tier
from service.strava.quota.memory import MemoryQuotaScheduler

PUBLIC = "https://ingest.example.com"
OURS = f"{PUBLIC}/webhooks/strava/{WEBHOOK_SECRET}"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], strava: FakeStrava) -> Settings:
    return make_settings(**strava.urls, public_url=PUBLIC)


@pytest.fixture
def quota(settings: Settings) -> MemoryQuotaScheduler:
    return MemoryQuotaScheduler(QuotaConfig.from_settings(settings))


@pytest.fixture
def client(settings: Settings, quota: MemoryQuotaScheduler) -> Iterator[StravaClient]:
    with metered_client(settings, quota) as c:
        yield c


@pytest.fixture
def subscribed(engine: Engine, strava: FakeStrava) -> None:
    strava.emulator.set_subscription(Subscription(120475, OURS, VERIFY_TOKEN, time.time()))
    save_subscription(engine, 120475, OURS)


def watched(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.ingest.subscription_health"]


def look(settings: Settings, engine: Engine, client: StravaClient) -> dict[str, Level]:
    with using_tier(Tier.WEBHOOK):
        found = watch(settings, engine, lambda: client.list_subscriptions().data, utcnow())
    return {f.check: f.level for f in found}


def test_silence_while_an_athlete_is_connected_logs_a_warning(
    engine: Engine,
    strava: FakeStrava,
    settings: Settings,
    client: StravaClient,
    subscribed: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect_emulator_athlete(engine, strava)
    inbox_row(engine, InboxStatus.PROCESSED, received_at=utcnow() - timedelta(hours=6, minutes=1))

    with caplog.at_level(logging.INFO, logger="service.ingest.subscription_health"):
        found = look(settings, engine, client)

    assert found == {
        "last_event": Level.WARNING,
        "listed": Level.OK,
        "callback": Level.OK,
        "subscription_id": Level.OK,
    }
    [warning] = watched(caplog)
    assert warning.levelno == logging.WARNING
    assert "no event received for longer than 6.0 h" in warning.getMessage()


def test_silence_without_connected_athletes_is_no_alarm(
    engine: Engine,
    settings: Settings,
    client: StravaClient,
    subscribed: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="service.ingest.subscription_health"):
        found = look(settings, engine, client)

    assert found["last_event"] == Level.OK
    assert watched(caplog) == []


def test_a_subscription_strava_no_longer_lists_logs_an_error(
    engine: Engine,
    settings: Settings,
    client: StravaClient,
    subscribed: None,
    strava: FakeStrava,
    caplog: pytest.LogCaptureFixture,
) -> None:
    strava.emulator.set_subscription(None)

    with caplog.at_level(logging.INFO, logger="service.ingest.subscription_health"):
        found = look(settings, engine, client)

    assert found == {"last_event": Level.OK, "listed": Level.ERROR}
    [error] = watched(caplog)
    assert error.levelno == logging.ERROR
    assert "Strava lists no push subscription" in error.getMessage()


def test_without_public_url_the_scheduler_compares_with_the_stored_callback(
    engine: Engine,
    make_settings: Callable[..., Settings],
    strava: FakeStrava,
    client: StravaClient,
    subscribed: None,
) -> None:
    # A scheduler process need not have PUBLIC_URL: what `subscription create` stored stands in.
    without = make_settings(**strava.urls, public_url=None)
    strava.emulator.set_subscription(
        Subscription(120475, f"{PUBLIC}/elsewhere", VERIFY_TOKEN, time.time())
    )

    assert look(without, engine, client)["callback"] == Level.ERROR


def test_the_watch_is_a_duty_of_the_scheduler_that_asks_strava(
    engine: Engine,
    settings: Settings,
    quota: MemoryQuotaScheduler,
    client: StravaClient,
    strava: FakeStrava,
    subscribed: None,
) -> None:
    broker = build_broker("memory://")
    deps = DutyDeps(settings, engine, Dispatcher(broker), client, quota)
    duty = next(d for d in periodic_duties(deps) if d.name == "subscription-watch")

    duty.run()

    assert duty.every == settings.subscription_check_interval_seconds == 3600
    assert strava.emulator.calls["GET /push_subscriptions"] == 1


def test_the_stored_subscription_is_checked_without_asking_strava(
    engine: Engine, strava: FakeStrava, settings: Settings, subscribed: None
) -> None:
    connect_emulator_athlete(engine, strava)
    inbox_row(engine, InboxStatus.PROCESSED, received_at=utcnow() - timedelta(minutes=5))
    calls = sum(strava.emulator.calls.values())

    found = stored_findings(settings, engine, utcnow())

    assert {f.check: f.level for f in found} == {
        "listed": Level.OK,
        "callback": Level.OK,
        "subscription_id": Level.OK,
        "last_event": Level.OK,
    }
    assert "subscription 120475, as Strava listed it on" in found[0].detail
    assert sum(strava.emulator.calls.values()) == calls


def test_a_stored_subscription_of_another_callback_or_none_at_all_is_an_error(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(public_url=PUBLIC, strava_subscription_id=None)
    nothing = stored_findings(settings, engine, utcnow())
    save_subscription(engine, 120475, f"{PUBLIC}/webhooks/strava/another-secret-segment")

    other = {f.check: f for f in stored_findings(settings, engine, utcnow())}

    assert [(f.check, f.level) for f in nothing] == [
        ("listed", Level.ERROR),
        ("last_event", Level.OK),
    ]
    assert "no subscription stored" in nothing[0].detail
    assert other["callback"].level is Level.ERROR
    assert "another secret segment" in other["callback"].detail
    assert other["subscription_id"].level is Level.OK


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        (OURS, f"{PUBLIC}/webhooks/strava/***"),
        (f"{PUBLIC}/webhooks/strava", f"{PUBLIC}/webhooks/strava"),
        (f"{PUBLIC}/other/{WEBHOOK_SECRET}?a=1", f"{PUBLIC}/other/***?a=1"),
        (f"{PUBLIC}/hooks/short", f"{PUBLIC}/hooks/short"),
        (None, "(none)"),
    ],
)
def test_a_callback_is_shown_without_its_secret_segment(url: str | None, printed: str) -> None:
    assert shown(url, "/webhooks/strava") == printed
