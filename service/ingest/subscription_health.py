"""Is Strava still pushing to us? The checks behind `strava-ingest subscription check` and the
scheduler's watch of the subscription (docs/strava.md §1.5): Strava documents no expiry and
no notice when a subscription stops delivering, so we look.

- listed: Strava lists a subscription for the app (§1.1);
- callback: it calls our callback, secret segment included;
- subscription_id: it is the id the web app accepts events for (service/web/trust.py);
- handshake: the callback answers Strava's validation GET as §1.2 asks;
- last_event: an event arrived within SUBSCRIPTION_SILENCE_ALERT while athletes are connected.

Each finding is ok, warning or error; a check's exit code is the worst of them.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.config import ConfigError, Settings, oauth_base_url
from service.ingest.subscription import (
    stored_callback_url,
    stored_subscription,
    stored_subscription_id,
)
from service.models import Athlete, AthleteStatus, InboxEvent
from service.strava.errors import StravaError
from service.strava.quota.scheduler import QuotaError
from service.strava.schemas import Subscription

log = logging.getLogger(__name__)

# Strava wants the handshake answered within this (docs/strava.md §1.2).
HANDSHAKE_SECONDS = 2.0


class Level(IntEnum):
    """A finding's severity, also the exit code of a check that ends on it."""

    OK = 0
    WARNING = 1
    ERROR = 2


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    detail: str


def worst(findings: Sequence[Finding]) -> Level:
    return max((f.level for f in findings), default=Level.OK)


def callback_url(base_url: str, webhook_path: str, secret: str | None) -> str:
    """Our callback: the public base URL, the webhook path, and the secret segment."""
    url = f"{base_url.rstrip('/')}{webhook_path}"
    return url if secret is None else with_path_secret(url, secret)


def with_path_secret(url: str, secret: str) -> str:
    """``url`` with ``secret`` as its last path segment (unless it is already)."""
    parts = urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    if segments[-1] == secret:
        return url
    return urlunsplit(parts._replace(path="/".join([*segments, secret])))


def shown(url: str | None, webhook_path: str) -> str:
    """`url` fit for a terminal or a log: a last path segment that could be a secret (ours,
    an old one: what WEBHOOK_SECRET allows) is written `***`, unless it is the webhook path's
    own."""
    if url is None:
        return "(none)"
    parts = urlsplit(url)
    head, _, last = parts.path.rstrip("/").rpartition("/")
    own = webhook_path.rstrip("/").rpartition("/")[2]
    if last != own and _SECRET_SHAPED.fullmatch(last):
        parts = parts._replace(path=f"{head}/***")
    return urlunsplit(parts)


# A WEBHOOK_SECRET's shape (service/config.py).
_SECRET_SHAPED = re.compile(r"[A-Za-z0-9_-]{16,}")


def check_listed(
    listed: Sequence[Subscription],
    expected_callback: str | None,
    accepted_id: int | None,
    webhook_path: str,
) -> list[Finding]:
    """What Strava lists against what we expect: our callback (not compared when None), and
    the id we accept."""
    if not listed:
        return [
            Finding(
                "listed",
                Level.ERROR,
                "Strava lists no push subscription for this app, so no event arrives: "
                "`strava-ingest subscription create`",
            )
        ]
    current = listed[0]
    findings = [Finding("listed", Level.OK, f"subscription {current.id} at Strava")]
    ours, theirs = shown(expected_callback, webhook_path), shown(current.callback_url, webhook_path)
    if expected_callback is None:
        pass
    elif current.callback_url == expected_callback:
        findings.append(Finding("callback", Level.OK, f"Strava calls {ours}"))
    elif theirs == ours:
        findings.append(
            Finding(
                "callback",
                Level.ERROR,
                f"Strava calls {theirs} with another secret segment than WEBHOOK_SECRET: "
                "every event is answered 404 (`subscription create --replace`)",
            )
        )
    else:
        findings.append(
            Finding(
                "callback",
                Level.ERROR,
                f"Strava calls {theirs}, not our {ours} (`subscription create --replace`)",
            )
        )
    if accepted_id is None:
        findings.append(
            Finding(
                "subscription_id",
                Level.ERROR,
                "no subscription id is stored, so every event gets 503: "
                "`strava-ingest subscription view` stores Strava's",
            )
        )
    elif accepted_id != current.id:
        findings.append(
            Finding(
                "subscription_id",
                Level.ERROR,
                f"events name subscription {current.id} but the web app accepts only "
                f"{accepted_id} (403 for each): fix STRAVA_SUBSCRIPTION_ID or run "
                "`strava-ingest subscription view`",
            )
        )
    else:
        findings.append(Finding("subscription_id", Level.OK, f"events of {current.id} accepted"))
    return findings


def check_handshake(
    url: str, verify_token: str, webhook_path: str, *, client: httpx.Client | None = None
) -> Finding:
    """Send Strava's validation GET to `url` (docs/strava.md §1.2): it must answer 200 within
    two seconds with a JSON body echoing the challenge."""
    challenge = secrets.token_hex(8)
    query = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
    where = shown(url, webhook_path)
    own = client is None
    http = client or httpx.Client(timeout=HANDSHAKE_SECONDS + 1)
    started = time.monotonic()
    try:
        response = http.get(url, params=query)
    except httpx.HTTPError as error:
        return Finding("handshake", Level.ERROR, f"{where} does not answer: {type(error).__name__}")
    finally:
        if own:
            http.close()
    took = time.monotonic() - started
    try:
        echoed = response.json().get("hub.challenge") == challenge
    except (ValueError, AttributeError):
        echoed = False
    if response.status_code != 200 or not echoed:
        return Finding(
            "handshake",
            Level.ERROR,
            f"{where} answered {response.status_code} without echoing the challenge",
        )
    if took > HANDSHAKE_SECONDS:
        return Finding(
            "handshake",
            Level.ERROR,
            f"{where} took {took:.1f} s; Strava gives up after {HANDSHAKE_SECONDS:g} s",
        )
    return Finding("handshake", Level.OK, f"{where} answered in {took:.2f} s")


def last_event_received_at(engine: Engine) -> datetime | None:
    """When the newest stored event arrived (None: no event stored). The newest row by id,
    so the primary key answers it however large the inbox is."""
    with Session(engine) as session:
        return session.exec(
            select(InboxEvent.received_at).order_by(col(InboxEvent.id).desc()).limit(1)
        ).first()


def connected_athletes(engine: Engine) -> int:
    with Session(engine) as session:
        count = session.exec(
            select(sa.func.count())
            .select_from(Athlete)
            .where(col(Athlete.status) == AthleteStatus.CONNECTED)
        ).one()
    return int(count)


def check_silence(engine: Engine, now: datetime, silence: timedelta) -> Finding:
    """A warning when no event arrived for `silence` while athletes are connected: they
    record activities, so Strava has stopped pushing or our callback stopped storing."""
    last = last_event_received_at(engine)
    athletes = connected_athletes(engine)
    when = "never" if last is None else f"{last:%Y-%m-%d %H:%M:%S} UTC ({_ago(now - last)} ago)"
    if athletes and (last is None or now - last > silence):
        return Finding(
            "last_event",
            Level.WARNING,
            f"no event received for longer than {_ago(silence)} (last: {when}) while "
            f"{athletes} athlete{'s are' if athletes != 1 else ' is'} connected",
        )
    return Finding("last_event", Level.OK, f"last event received {when}")


def _ago(delta: timedelta) -> str:
    seconds = max(0.0, delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def expected_callback(settings: Settings, engine: Engine) -> str | None:
    """Our callback: from PUBLIC_URL when set (or embedded mode's own address), else the one
    `subscription create` registered; None when neither is known."""
    try:
        base = oauth_base_url(settings)
    except ConfigError:  # production without PUBLIC_URL (a scheduler need not have it)
        return stored_callback_url(engine)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    return callback_url(base, settings.webhook_path, secret)


def accepted_subscription_id(settings: Settings, engine: Engine) -> int | None:
    """The id the web app accepts events for: STRAVA_SUBSCRIPTION_ID, else the stored one."""
    return settings.strava_subscription_id or stored_subscription_id(engine)


def watch(
    settings: Settings,
    engine: Engine,
    list_subscriptions: Callable[[], Sequence[Subscription]],
    now: datetime,
) -> list[Finding]:
    """The scheduler's periodic look: silence while athletes are connected (warning), and
    Strava no longer listing our subscription as we expect it (error), logged."""
    findings = [check_silence(engine, now, settings.subscription_silence_alert)]
    try:
        listed = list_subscriptions()
    except (StravaError, QuotaError) as error:
        # Not knowing is no proof of loss: the next look asks again.
        findings.append(Finding("listed", Level.WARNING, f"Strava not asked: {error}"))
    else:
        findings += check_listed(
            listed,
            expected_callback(settings, engine),
            accepted_subscription_id(settings, engine),
            settings.webhook_path,
        )
    log_findings(findings)
    return findings


def stored_findings(settings: Settings, engine: Engine, now: datetime) -> list[Finding]:
    """What can be told without asking Strava (the operator's page must not spend quota):
    the subscription as `subscription create | view` last stored Strava's listing of it,
    checked as `check_listed` checks a fresh one, and the silence of the event stream."""
    stored = stored_subscription(engine)
    silence = check_silence(engine, now, settings.subscription_silence_alert)
    if stored is None:
        detail = (
            "no subscription stored, so no event is accepted: `strava-ingest subscription "
            "create` makes one, `subscription view` stores the one Strava has"
        )
        return [Finding("listed", Level.ERROR, detail), silence]
    listed = [Subscription(id=stored.id, callback_url=stored.callback_url)]
    # Without the callback Strava reported there is nothing to compare ours with.
    expected = expected_callback(settings, engine) if stored.callback_url is not None else None
    findings = check_listed(
        listed, expected, accepted_subscription_id(settings, engine), settings.webhook_path
    )
    findings[0] = Finding(
        "listed",
        Level.OK,
        f"subscription {stored.id}, as Strava listed it on {stored.stored_at:%Y-%m-%d %H:%M} UTC",
    )
    return [*findings, silence]


def log_findings(findings: Sequence[Finding]) -> None:
    """Warnings and errors as log lines of their level (what the scheduler's watch does)."""
    for finding in findings:
        if finding.level is Level.ERROR:
            log.error("subscription %s: %s", finding.check, finding.detail)
        elif finding.level is Level.WARNING:
            log.warning("subscription %s: %s", finding.check, finding.detail)
