"""The hooks put the scheduler in front of the Strava clients; calls say who they are for."""

from __future__ import annotations

import asyncio
import logging
import threading

import httpx
import pytest
from support import FakeClock

from service.strava.client import AsyncStravaClient, RequestInfo, StravaClient
from service.strava.errors import RateLimited
from service.strava.quota import (
    AsyncQuotaHooks,
    QuotaConfig,
    QuotaExceeded,
    QuotaHooks,
    Tier,
    TierNotSet,
    current_tier,
    using_prepaid,
    using_tier,
)
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.scheduler import window_index
from service.strava.ratelimit import EMPTY_SNAPSHOT, WindowPair

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z
READ = RequestInfo("list_activity_laps", "read", "GET")
TOKEN_CALL = RequestInfo("refresh_token", "oauth", "POST")
WRITE = RequestInfo("create_subscription", "write", "POST")
# The short window current at NOON, in which admission reserved the prepaid requests.
THIS_WINDOW = window_index(NOON, QuotaConfig().window_seconds)
HEADERS = {
    "X-Ratelimit-Limit": "300,3000",
    "X-Ratelimit-Usage": "40,400",
    "X-Readratelimit-Limit": "150,1500",
    "X-Readratelimit-Usage": "30,300",
}
RATE_LIMIT_EXCEEDED = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}


@pytest.fixture
def scheduler() -> MemoryQuotaScheduler:
    return MemoryQuotaScheduler(QuotaConfig(read_limit=WindowPair(10, 1000)), FakeClock(NOON))


def reads(scheduler: MemoryQuotaScheduler) -> int:
    return scheduler.status().window("read", "short").used


class CountingTransport(httpx.MockTransport):
    """Answers every request the same way and counts what reached it."""

    def __init__(
        self, status_code: int = 200, body: object = None, headers: dict[str, str] | None = None
    ) -> None:
        self.sent = 0

        def answer(request: httpx.Request) -> httpx.Response:
            self.sent += 1
            return httpx.Response(status_code, json=[] if body is None else body, headers=headers)

        super().__init__(answer)


def client(scheduler: MemoryQuotaScheduler, transport: httpx.BaseTransport) -> StravaClient:
    return StravaClient(
        api_url="https://strava.test/api/v3",
        oauth_url="https://strava.test/oauth",
        client_id=1,
        client_secret="secret",
        transport=transport,
        hooks=QuotaHooks(scheduler),
    )


# The tier of a call


def test_a_call_outside_using_tier_is_refused_before_anything_is_counted(
    scheduler: MemoryQuotaScheduler,
) -> None:
    with pytest.raises(TierNotSet, match="using_tier"):
        QuotaHooks(scheduler).before_request(READ)

    assert reads(scheduler) == 0


def test_a_token_call_needs_no_tier(scheduler: MemoryQuotaScheduler) -> None:
    QuotaHooks(scheduler).before_request(TOKEN_CALL)

    assert scheduler.status().window("overall", "short").used == 0


def test_a_call_inside_using_tier_is_charged_to_that_tier(scheduler: MemoryQuotaScheduler) -> None:
    with using_tier(Tier.BACKFILL):
        QuotaHooks(scheduler).before_request(READ)

    assert scheduler.status().window("read", "short").used_by_tier[Tier.BACKFILL] == 1


def test_using_tier_restores_the_outer_tier_on_exit() -> None:
    with using_tier(Tier.WEBHOOK):
        with using_tier(Tier.ON_DEMAND):
            assert current_tier() is Tier.ON_DEMAND
        assert current_tier() is Tier.WEBHOOK
    with pytest.raises(TierNotSet):
        current_tier()


def test_a_new_thread_starts_without_a_tier() -> None:
    seen: list[BaseException] = []

    def work() -> None:
        try:
            current_tier()
        except TierNotSet as error:
            seen.append(error)

    with using_tier(Tier.WEBHOOK):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    assert len(seen) == 1


def test_asyncio_tasks_each_keep_their_own_tier() -> None:
    async def charged_to(tier: Tier) -> Tier:
        with using_tier(tier):
            await asyncio.sleep(0)  # let the other task set its tier in between
            return current_tier()

    async def both() -> list[Tier]:
        return list(await asyncio.gather(charged_to(Tier.WEBHOOK), charged_to(Tier.BACKFILL)))

    assert asyncio.run(both()) == [Tier.WEBHOOK, Tier.BACKFILL]


# Through the client


def test_the_client_sends_nothing_when_the_budget_is_spent(
    scheduler: MemoryQuotaScheduler,
) -> None:
    transport = CountingTransport()
    with client(scheduler, transport) as strava, using_tier(Tier.WEBHOOK):
        for _ in range(9):  # floor(10 x 0.95)
            strava.list_activity_laps("token", 1)

        with pytest.raises(QuotaExceeded):
            strava.list_activity_laps("token", 1)

    assert transport.sent == 9


def test_the_client_reconciles_with_the_response_headers(
    scheduler: MemoryQuotaScheduler,
) -> None:
    with client(scheduler, CountingTransport(headers=HEADERS)) as strava, using_tier(Tier.RECENT):
        strava.list_activity_laps("token", 1)

    status = scheduler.status()
    assert status.window("read", "short").used == 30
    assert status.window("read", "short").limit == 150
    assert status.window("overall", "daily").used == 400
    assert status.window("overall", "daily").limit == 3000


def test_an_answer_that_crosses_a_boundary_leaves_the_new_window_alone() -> None:
    clock = FakeClock(NOON + 900 - 0.01)
    scheduler = MemoryQuotaScheduler(QuotaConfig(read_limit=WindowPair(100, 1000)), clock)

    def answer(request: httpx.Request) -> httpx.Response:
        clock.now = NOON + 900 + 0.05  # Strava counted it in the old window; we read it later
        return httpx.Response(200, json=[], headers=HEADERS)

    with (
        client(scheduler, httpx.MockTransport(answer)) as strava,
        using_tier(Tier.BACKFILL),
    ):
        strava.list_activity_laps("token", 1)

    assert reads(scheduler) == 0
    assert scheduler.status().window("read", "daily").used == 300


def test_a_429_from_strava_holds_every_call_until_the_window_resets(
    scheduler: MemoryQuotaScheduler,
) -> None:
    transport = CountingTransport(status_code=429, body=RATE_LIMIT_EXCEEDED)
    with client(scheduler, transport) as strava, using_tier(Tier.ON_DEMAND):
        with pytest.raises(RateLimited):
            strava.list_activity_laps("token", 1)

        with pytest.raises(QuotaExceeded) as denied:
            strava.list_activity_laps("token", 1)

    assert transport.sent == 1
    assert denied.value.retry_at == scheduler.retry_at("short")
    assert scheduler.status().throttled == 1


def test_a_failed_reconcile_is_logged_and_the_response_still_returned(
    scheduler: MemoryQuotaScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise ConnectionError("backend down")

    scheduler.observe = broken  # type: ignore[method-assign, assignment]
    with client(scheduler, CountingTransport()) as strava, using_tier(Tier.WEBHOOK):
        result = strava.list_activity_laps("token", 1)

    assert result.data == []
    assert "quota reconcile failed operation=list_activity_laps" in caplog.text
    assert any(record.levelno == logging.ERROR for record in caplog.records)


def test_the_async_client_reserves_and_reconciles_too(scheduler: MemoryQuotaScheduler) -> None:
    transport_calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal transport_calls
        transport_calls += 1
        return httpx.Response(200, json=[], headers=HEADERS)

    async def run() -> None:
        async with AsyncStravaClient(
            api_url="https://strava.test/api/v3",
            oauth_url="https://strava.test/oauth",
            client_id=1,
            client_secret="secret",
            transport=httpx.MockTransport(answer),
            hooks=AsyncQuotaHooks(scheduler),
        ) as strava:
            with pytest.raises(TierNotSet):
                await strava.list_activity_laps("token", 1)
            with using_tier(Tier.ON_DEMAND):
                await strava.list_activity_laps("token", 1)

    asyncio.run(run())

    assert transport_calls == 1
    assert scheduler.status().window("read", "short").used_by_tier[Tier.ON_DEMAND] == 1
    assert reads(scheduler) == 30


def test_a_response_that_never_arrived_changes_nothing(scheduler: MemoryQuotaScheduler) -> None:
    hooks = QuotaHooks(scheduler)
    with using_tier(Tier.WEBHOOK):
        hooks.before_request(READ)

    hooks.after_response(READ, None, EMPTY_SNAPSHOT)

    assert reads(scheduler) == 1


# Work admitted prepaid (service/strava/quota/admission.py)


def test_prepaid_reads_are_not_reserved_again_until_the_prepaid_ones_are_spent(
    scheduler: MemoryQuotaScheduler,
) -> None:
    transport = CountingTransport()
    with (
        client(scheduler, transport) as strava,
        using_tier(Tier.BACKFILL),
        using_prepaid(THIS_WINDOW, 2),
    ):
        strava.list_activity_laps("token", 1)
        strava.list_activity_laps("token", 1)
        assert reads(scheduler) == 0

        strava.list_activity_laps("token", 1)

    assert transport.sent == 3
    assert scheduler.status().window("read", "short").used_by_tier[Tier.BACKFILL] == 1


def test_a_call_after_the_prepaid_work_ends_reserves(scheduler: MemoryQuotaScheduler) -> None:
    with client(scheduler, CountingTransport()) as strava, using_tier(Tier.BACKFILL):
        with using_prepaid(THIS_WINDOW, 5):
            strava.list_activity_laps("token", 1)
        strava.list_activity_laps("token", 1)

    assert reads(scheduler) == 1


def test_a_write_is_never_prepaid(scheduler: MemoryQuotaScheduler) -> None:
    with using_tier(Tier.BACKFILL), using_prepaid(THIS_WINDOW, 2):
        QuotaHooks(scheduler).before_request(WRITE)

    assert scheduler.status().window("overall", "short").used == 1


def test_requests_prepaid_in_a_window_that_has_passed_reserve_again(
    scheduler: MemoryQuotaScheduler,
) -> None:
    transport = CountingTransport()
    with (
        client(scheduler, transport) as strava,
        using_tier(Tier.BACKFILL),
        using_prepaid(THIS_WINDOW - 1, 2),
    ):
        strava.list_activity_laps("token", 1)

    assert transport.sent == 1
    assert reads(scheduler) == 1


def test_a_prepaid_call_beyond_the_budget_still_goes_out(scheduler: MemoryQuotaScheduler) -> None:
    # Admission counted it when the budget still had room: it is not refused a second time.
    transport = CountingTransport()
    with client(scheduler, transport) as strava, using_tier(Tier.WEBHOOK):
        for _ in range(9):  # floor(10 x 0.95)
            strava.list_activity_laps("token", 1)
        with using_prepaid(THIS_WINDOW, 1):
            strava.list_activity_laps("token", 1)
        with pytest.raises(QuotaExceeded):
            strava.list_activity_laps("token", 1)

    assert transport.sent == 10


def test_the_async_client_spends_prepaid_requests_too(scheduler: MemoryQuotaScheduler) -> None:
    transport = CountingTransport()

    async def run() -> None:
        async with AsyncStravaClient(
            api_url="https://strava.test/api/v3",
            oauth_url="https://strava.test/oauth",
            client_id=1,
            client_secret="secret",
            transport=transport,
            hooks=AsyncQuotaHooks(scheduler),
        ) as strava:
            with using_tier(Tier.RECENT), using_prepaid(THIS_WINDOW, 1):
                await strava.list_activity_laps("token", 1)
                assert reads(scheduler) == 0
                await strava.list_activity_laps("token", 1)

    asyncio.run(run())

    assert transport.sent == 2
    assert scheduler.status().window("read", "short").used_by_tier[Tier.RECENT] == 1


def test_two_asyncio_tasks_each_spend_only_their_own_prepaid_requests(
    scheduler: MemoryQuotaScheduler,
) -> None:
    hooks = AsyncQuotaHooks(scheduler)

    async def prepaid_reads(calls: int) -> None:
        with using_tier(Tier.BACKFILL), using_prepaid(THIS_WINDOW, 1):
            for _ in range(calls):
                await hooks.before_request(READ)
                await asyncio.sleep(0)  # let the other task call in between

    async def both() -> None:
        await asyncio.gather(prepaid_reads(1), prepaid_reads(3))

    asyncio.run(both())

    # One prepaid each: the second task's two more calls reserve, the first's none.
    assert reads(scheduler) == 2
