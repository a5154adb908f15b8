"""What a webhook request must show before its event is stored (docs/strava.md §1.8).

Strava documents no signature on events, so trust rests on what we can check cheaply and
without calling Strava: a secret path segment, a body that looks like Strava's (JSON, small,
every value storable), the optional ``X-Strava-Signature`` when a signing secret is configured,
an event time that is not in the future, and the subscription id the event names. Events whose
owner we do not know are still stored; processing marks them ``ignored`` without an API call
(events only point at data, we always refetch).

Decisions, and why:
- Secret path segment: required in production mode (start-up fails without WEBHOOK_SECRET
  unless WEBHOOK_SECRET_OPTOUT says a proxy in front authenticates). The path without it, or
  with a wrong one, is answered exactly like an unknown path (Starlette's 404, whatever the
  method), so that a prober learns nothing; the log and the counter name the reason. It is
  the only check that needs no knowledge from Strava, and it keeps every later check (the
  subscription id, which is small and guessable) out of a prober's reach.
- Content type: Strava sends ``application/json`` (the emulator and every recorded delivery
  do). A charset parameter is accepted when it is UTF-8 (RFC 8259 allows nothing else) and
  other parameters are ignored. A *missing* header is accepted, because the official page
  does not promise the header and the body is parsed and validated anyway. Any other type is
  refused with 415: it is not Strava.
- Size: an event is a few hundred bytes (§1.4); MAX_EVENT_BYTES leaves room for long titles.
  A declared Content-Length over it is refused before reading; a chunked body is counted
  while streaming and refused as soon as it passes the limit, so nothing unbounded is
  buffered.
- Event time: event times order the events of one activity (a newer one wins), so an event
  time from the future would outrank every genuine later event. One more than
  WEBHOOK_CLOCK_SKEW_SECONDS ahead of our clock, or before Strava existed, is
  refused with 400.
- No subscription id known yet (none configured, none stored by `subscription create`): the
  event is refused with 503, which Strava retries (§1.3). Accepting it would accept events
  naming any subscription, from anyone who found the callback. Strava only sends events once
  a subscription exists, and `subscription create` stores the id as soon as Strava confirms
  it, so the window is short; the retries of an event refused inside it arrive after it.
  Set STRAVA_SUBSCRIPTION_ID to have no window at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from service.ingest.subscription import stored_subscription_id
from service.web.errors import (
    ContentTooLarge,
    Forbidden,
    InvalidRequest,
    Unavailable,
    UnknownRoute,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# Strava's events are a few hundred bytes (docs/strava.md §1.4); anything far bigger is not one.
MAX_EVENT_BYTES = 8 * 1024
# The window of the signature scheme seen in public code (docs/strava.md §1.8).
SIGNATURE_TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "x-strava-signature"


def check_path_secret(given: str | None, expected: str | None) -> None:
    """Refuse a request whose secret path segment is missing or wrong (when one is set)."""
    if expected is None:
        return
    # Constant time, so the secret cannot be found byte by byte from response times.
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise UnknownRoute("Not Found", reason="path_secret")


# Strava began in 2009: no genuine event is older than 2009-01-01.
EARLIEST_EVENT_TIME = 1_230_768_000


def check_event_time(event_time: int, now: float, skew: float) -> None:
    """Refuse an event time more than ``skew`` seconds ahead of ``now``, or absurdly old."""
    if event_time > now + skew:
        raise InvalidRequest(
            f"event_time is more than {skew:g} seconds in the future",
            reason="event_time_future",
            field="event_time",
        )
    if event_time < EARLIEST_EVENT_TIME:
        raise InvalidRequest(
            "event_time is before 2009-01-01", reason="event_time_past", field="event_time"
        )


def check_content_type(header: str | None) -> None:
    """Accept ``application/json`` (UTF-8) or no header at all; see the module docstring."""
    if header is None or not header.strip():
        return
    media_type, *parameters = (part.strip() for part in header.split(";"))
    if media_type.lower() != "application/json":
        raise UnsupportedMediaType("content type must be application/json", reason="content_type")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("charset must be utf-8", reason="content_type")


def check_content_length(header: str | None, limit: int = MAX_EVENT_BYTES) -> None:
    """Refuse a declared body size over the limit before reading any of it."""
    if header is None:
        return
    if not header.isascii() or not header.isdigit():
        raise InvalidRequest("Content-Length must be a number of bytes", reason="content_length")
    if int(header) > limit:
        raise ContentTooLarge(f"an event body is at most {limit} bytes", reason="too_large")


async def read_body(request: Request, limit: int = MAX_EVENT_BYTES) -> bytes:
    """The body, refused as soon as it grows past ``limit`` (never read whole)."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ContentTooLarge(f"an event body is at most {limit} bytes", reason="too_large")
    except ClientDisconnect:
        # E.g. cut off by the request deadline (service/web/http_protocol.py) while trickling:
        # counted and logged like any rejection, rather than a server error.
        raise InvalidRequest(
            "the connection closed before the body was complete", reason="incomplete_body"
        ) from None
    return bytes(body)


_SIGNATURE_ITEM = re.compile(r"^(t|v1)=([0-9A-Za-z]+)$")


def verify_signature(secret: bytes, header: str | None, body: bytes, now: float) -> None:
    """Check ``X-Strava-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 over ``"<t>.<body>"``
    within ±SIGNATURE_TOLERANCE_SECONDS of ``now`` (docs/strava.md §1.8, CONTESTED: only
    called when a signing secret is configured). Several ``v1`` values may be given (a key
    rotation); one match suffices."""
    if header is None:
        raise Forbidden("X-Strava-Signature header is required", reason="signature_missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        match = _SIGNATURE_ITEM.match(item.strip())
        if match is None:
            continue
        key, value = match.groups()
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise Forbidden(
            "X-Strava-Signature must be t=<unix>,v1=<hex>", reason="signature_malformed"
        )
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise Forbidden(
            "X-Strava-Signature timestamp is too old or too new", reason="signature_stale"
        )
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise Forbidden("X-Strava-Signature does not match", reason="signature_mismatch")


class SubscriptionGate:
    """Knows which subscription id events must name, without a database read per request.

    A configured id (STRAVA_SUBSCRIPTION_ID) wins and is never looked up. Otherwise the id that
    `strava-ingest subscription create | view` stored is read at most once per ``ttl``
    seconds; one request refreshes it while others wait on the same read. The read has
    ``timeout`` seconds, so that it and the event's commit together stay within Strava's two
    seconds. When it fails or times out, the last id read stays in use and the read is tried
    again after RETRY_SECONDS; a read still running is awaited again, never started twice.
    Before any read has answered, such a request gets 503 (Strava retries): accepting it would
    accept events for any subscription.

    Parameters:
      engine: where the stored id lives.
      configured: STRAVA_SUBSCRIPTION_ID, or None.
      ttl: seconds a read stays fresh (SUBSCRIPTION_CACHE_SECONDS).
      timeout: seconds a request waits for the read.
      clock: a monotonic clock, injectable for tests.
    """

    RETRY_SECONDS = 1.0

    def __init__(
        self,
        engine: Engine,
        configured: int | None,
        ttl: float,
        timeout: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._configured = configured
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._known: int | None = configured
        self._answered = configured is not None
        self._fresh_until = float("-inf")
        self._lock = asyncio.Lock()
        self._reading: asyncio.Future[int | None] | None = None
        self._warned_unknown = False

    async def expected(self) -> int | None:
        """The id events must name, or None when no subscription is known yet; raises
        Unavailable when the database has not answered the first read."""
        if self._configured is not None:
            return self._configured
        if self._clock() >= self._fresh_until:
            async with self._lock:
                if self._clock() >= self._fresh_until:
                    await self._refresh()
        if not self._answered:
            raise Unavailable("database unavailable", reason="database_unavailable")
        return self._known

    async def _refresh(self) -> None:
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(
                run_in_threadpool(stored_subscription_id, self._engine)
            )
            # Its failure is logged by whoever awaits it; none may be left to (a timeout).
            self._reading.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            # Shielded: a read that outlives this request is awaited by the next refresh.
            known = await asyncio.wait_for(asyncio.shield(self._reading), self._timeout)
        except (SQLAlchemyError, TimeoutError) as error:
            log.warning(
                "could not read the stored subscription id, keeping subscription_id=%s error=%s",
                self._known,
                type(error).__name__,
            )
            self._fresh_until = self._clock() + min(self.RETRY_SECONDS, self._ttl)
            return
        if known != self._known:
            log.info("subscription id now known subscription_id=%s", known)
            self._warned_unknown = False
        self._known = known
        self._answered = True
        self._fresh_until = self._clock() + self._ttl

    async def check(self, subscription_id: int) -> None:
        """Refuse an event for another subscription, and every event while none is known."""
        expected = await self.expected()
        if expected is None:
            if not self._warned_unknown:
                log.warning(
                    "no subscription id known yet (run `strava-ingest subscription create` or "
                    "set STRAVA_SUBSCRIPTION_ID); refusing events with 503 until then"
                )
                self._warned_unknown = True
            raise Unavailable(
                "no webhook subscription is known yet; try again later",
                reason="no_subscription",
            )
        if subscription_id != expected:
            raise Forbidden(
                "subscription_id is not this app's subscription",
                reason="wrong_subscription",
                field="subscription_id",
            )


class RedactPathSecret(logging.Filter):
    """Masks the secret path segment in log records (uvicorn's access log prints the path).

    Parameters:
      secret: the WEBHOOK_SECRET value.
    """

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.replace(self._secret, "***") if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = record.msg.replace(self._secret, "***")
        return True
