"""Puts the quota scheduler in front of the Strava clients, through their ``hooks=`` seam.

The tier of a call is not a client argument: it is set by whoever starts the work (an actor,
a web handler) with ``using_tier`` and travels in a context variable, so domain code that
calls Strava does not need to pass it along. Each thread starts without a tier and each
asyncio task gets a copy of its creator's, so concurrent work never borrows another's tier.
Work admitted from the queue (admission.py) had its requests reserved when it was admitted;
``using_prepaid`` says so, and its calls spend that reservation instead of reserving again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from service.strava.client import AsyncRequestHooks, RequestHooks, RequestInfo
from service.strava.quota.scheduler import QuotaScheduler, TierNotSet, window_index
from service.strava.quota.tiers import Tier
from service.strava.ratelimit import RateLimitSnapshot

log = logging.getLogger(__name__)

_tier: ContextVar[Tier | None] = ContextVar("strava_quota_tier", default=None)
# When this context's request went out, by the scheduler's clock: tells ``observe`` which
# window the usage in its answer was counted in (each thread and task has its own).
_sent_at: ContextVar[float | None] = ContextVar("strava_quota_sent_at", default=None)


@dataclass
class _Prepaid:
    window: int
    requests: int


_prepaid: ContextVar[_Prepaid | None] = ContextVar("strava_quota_prepaid", default=None)


@contextmanager
def using_tier(tier: Tier) -> Iterator[None]:
    """Strava calls made inside are charged to ``tier``; the previous tier is restored after."""
    token = _tier.set(tier)
    try:
        yield
    finally:
        _tier.reset(token)


@contextmanager
def using_prepaid(window: int, requests: int) -> Iterator[None]:
    """The first ``requests`` read calls made inside, while short window ``window`` lasts,
    were reserved when the work was admitted: they do not reserve again. Calls beyond them,
    or made once the window has passed (the reservation was counted there), reserve as usual.
    """
    token = _prepaid.set(_Prepaid(window, requests))
    try:
        yield
    finally:
        _prepaid.reset(token)


def _reserve(scheduler: QuotaScheduler, request: RequestInfo, now: float) -> None:
    prepaid = _prepaid.get()
    if (
        prepaid is not None
        and request.kind == "read"
        and prepaid.requests > 0
        and prepaid.window == window_index(now, scheduler.config.window_seconds)
    ):
        prepaid.requests -= 1
        return
    scheduler.reserve(_tier_for(request), request.kind)


def current_tier() -> Tier:
    """The tier set by the innermost ``using_tier``; raises TierNotSet outside of one.

    There is deliberately no default: silently charging unmarked work to the highest tier
    would let a backfill starve webhooks.
    """
    tier = _tier.get()
    if tier is None:
        raise TierNotSet(
            "a Strava call was made outside `using_tier(...)`; "
            "wrap the work in `with using_tier(Tier.X):` to say who it is for"
        )
    return tier


def _tier_for(request: RequestInfo) -> Tier:
    # Token calls are not counted (docs/strava.md §2.2), so they need not say who they are for:
    # an OAuth callback or a token refresh must never fail for want of a tier.
    if request.kind == "oauth":
        return _tier.get() or Tier.ON_DEMAND
    return current_tier()


class QuotaHooks(RequestHooks):
    """``RequestHooks`` for ``StravaClient``: reserve before sending, reconcile after.

    A failure to reconcile is logged, not raised: the response has arrived and spent its
    quota either way, and the caller should still get it.

    Parameters:
        scheduler: the shared ``QuotaScheduler``.
    """

    def __init__(self, scheduler: QuotaScheduler) -> None:
        self.scheduler = scheduler

    def before_request(self, request: RequestInfo) -> None:
        now = self.scheduler.now()
        _sent_at.set(now)
        _reserve(self.scheduler, request, now)

    def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None:
        try:
            self.scheduler.observe(request.kind, status_code, rate_limit, _sent_at.get())
        except Exception:
            log.exception(
                "quota reconcile failed operation=%s status=%s", request.operation, status_code
            )


class AsyncQuotaHooks(AsyncRequestHooks):
    """``AsyncRequestHooks`` for ``AsyncStravaClient``.

    The scheduler is synchronous (a Redis round trip), so it runs in a worker thread rather
    than blocking the event loop; the tier is read here first, in the caller's context.

    Parameters:
        scheduler: the shared ``QuotaScheduler``.
    """

    def __init__(self, scheduler: QuotaScheduler) -> None:
        self.scheduler = scheduler

    async def before_request(self, request: RequestInfo) -> None:
        now = self.scheduler.now()
        _sent_at.set(now)
        await asyncio.to_thread(_reserve, self.scheduler, request, now)

    async def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None:
        try:
            await asyncio.to_thread(
                self.scheduler.observe, request.kind, status_code, rate_limit, _sent_at.get()
            )
        except Exception:
            log.exception(
                "quota reconcile failed operation=%s status=%s", request.operation, status_code
            )
