import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from service.ingest.retry import Backoff, GiveUp, RetryLater, WaitForQuota, next_step
from service.strava.errors import BadRequest, NotFound, RateLimited, StravaError, Transient
from service.strava.quota import QuotaExceeded, Tier
from service.strava.ratelimit import Window

NOW = datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
NEXT_QUARTER = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
NEXT_DAY = datetime(2026, 11, 24, tzinfo=UTC)
POLICY = Backoff(base=timedelta(seconds=2), cap=timedelta(seconds=60), max_attempts=4)


def reset(window: Window) -> datetime:
    return NEXT_QUARTER if window == "short" else NEXT_DAY


def decide(error: BaseException, attempts: int = 1) -> object:
    return next_step(
        error,
        attempts=attempts,
        now=NOW,
        window_reset=reset,
        backoff=POLICY,
        rng=random.Random(7),
    )


def test_a_denied_reservation_waits_for_the_window_it_named() -> None:
    step = decide(QuotaExceeded(Tier.BACKFILL, "short", NEXT_QUARTER))

    assert isinstance(step, WaitForQuota)
    assert NEXT_QUARTER <= step.at <= NEXT_QUARTER + POLICY.spread


@pytest.mark.parametrize("tier", [Tier.WEBHOOK, Tier.ON_DEMAND])
def test_denied_real_time_work_comes_back_right_after_the_boundary(tier: Tier) -> None:
    # Backlog work is scattered over POLICY.spread; webhooks are few and someone waits.
    steps = [
        next_step(
            QuotaExceeded(tier, "short", NEXT_QUARTER),
            attempts=1,
            now=NOW,
            window_reset=reset,
            backoff=POLICY,
            rng=random.Random(seed),
        )
        for seed in range(50)
    ]

    assert all(isinstance(step, WaitForQuota) for step in steps)
    latest = max(step.at for step in steps if isinstance(step, WaitForQuota))
    assert (
        NEXT_QUARTER
        <= latest
        <= NEXT_QUARTER + POLICY.realtime_spread
        < NEXT_QUARTER + POLICY.spread
    )


@pytest.mark.parametrize(("window", "expected"), [("short", NEXT_QUARTER), ("daily", NEXT_DAY)])
def test_a_429_waits_until_its_window_resets(window: Window, expected: datetime) -> None:
    error = RateLimited("429", status_code=429)
    error.window = window  # what the 429's headers would have said

    step = decide(error)

    assert isinstance(step, WaitForQuota)
    assert expected <= step.at <= expected + POLICY.spread


@pytest.mark.parametrize(
    "error",
    [
        Transient("503", status_code=503),
        OperationalError("SELECT 1", {}, Exception("connection refused")),
    ],
)
def test_transient_faults_back_off_exponentially_within_bounds(error: BaseException) -> None:
    delays = []
    for attempts in (1, 2, 3):
        step = decide(error, attempts)
        assert isinstance(step, RetryLater)
        delays.append(step.at - NOW)

    assert timedelta(seconds=1) <= delays[0] <= timedelta(seconds=2)
    assert timedelta(seconds=4) <= delays[2] <= timedelta(seconds=8)


def test_backoff_never_exceeds_its_cap() -> None:
    step = decide(Transient("x", status_code=None), 3)
    policy = Backoff(base=timedelta(seconds=2), cap=timedelta(seconds=5), max_attempts=100)

    delay = policy.delay(30, random.Random(1))

    assert isinstance(step, RetryLater)
    assert delay <= timedelta(seconds=5)


def test_transient_faults_give_up_after_the_last_attempt() -> None:
    error = Transient("503", status_code=503)

    step = decide(error, attempts=POLICY.max_attempts)

    assert isinstance(step, GiveUp)


@pytest.mark.parametrize("kind", [BadRequest, NotFound])
def test_permanent_errors_fail_at_once_keeping_stravas_message(kind: type[StravaError]) -> None:
    error = kind("Record Not Found", status_code=404)

    step = decide(error)

    assert isinstance(step, GiveUp)
    assert "Record Not Found" in step.reason
