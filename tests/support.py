"""Constants and small types shared by the tests (importable: tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from service.cli.run import DutyDeps
from service.config import Settings
from service.emulator import Emulator
from service.emulator.server import EmulatorServer
from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext
from service.ingest.crypto import TokenCipher
from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.messaging import Dispatcher
from service.models import InboxEvent, InboxStatus, utcnow
from service.strava.metered import metered_client
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.ratelimit import RateLimitSnapshot, WindowPair
from service.strava.schemas import TokenResponse

CLIENT_ID = 4242
CLIENT_SECRET = "test-client-secret"
VERIFY_TOKEN = "test-verify-token"
# The secret last segment of the webhook path (WEBHOOK_SECRET), which production mode requires.
WEBHOOK_SECRET = "test-webhook-path-secret-0123"
# An operator's key for /quota and /stats/webhooks (ADMIN_API_KEYS).
ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# The product backend's key for the product API's read routes (READ_API_KEYS).
READ_KEY = "test-read-key-0123456789"
READ = {"authorization": f"Bearer {READ_KEY}"}
# A fixed Fernet key for tests only; real deployments generate theirs (`strava-ingest keygen`).
TOKEN_KEY = "LoTyDJlU3Ef1EE_taUf_kY2fFpS0qCTKRGNmVQu7o-o="


@dataclass
class FakeStrava:
    """The emulator and the loopback server it is reachable on."""

    emulator: Emulator
    server: EmulatorServer

    @property
    def urls(self) -> dict[str, str]:
        """Settings overrides that point the service at this emulator."""
        return {"strava_api_url": self.server.api_url, "strava_oauth_url": self.server.oauth_url}


# The subscription id web apps under test enforce (STRAVA_SUBSCRIPTION_ID).
SUBSCRIPTION_ID = 120475


@dataclass
class Deployed:
    """A started web app, the database behind it and its webhook path."""

    client: TestClient
    engine: Engine
    webhook: str


# The event time of stored webhook events unless a test gives its own.
EVENT_TIME = 1_700_000_000


def stored_event(ctx: IngestContext, object_id: int, owner_id: int, aspect: str, **kw: Any) -> int:
    """Store a webhook event in the inbox as the web app would; its inbox id. `kw` may give
    `object_type` (default "activity"), `event_time` and `updates`."""
    event = WebhookEvent(
        object_type=kw.pop("object_type", "activity"),
        object_id=object_id,
        aspect_type=aspect,
        owner_id=owner_id,
        subscription_id=1,
        event_time=kw.pop("event_time", EVENT_TIME),
        updates=kw.pop("updates", {}),
    )
    return store_event(ctx.engine, event).id


def connect_emulator_athlete(
    engine: Engine, strava: FakeStrava, athlete_id: int | None = None
) -> int:
    """An emulator athlete (by default its first), connected as the OAuth callback connects
    one: its tokens are in our database."""
    if athlete_id is None:
        athlete_id = strava.emulator.athlete_ids[0]
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
    connect_athlete(engine, TokenCipher(TOKEN_KEY), token, "read,activity:read_all", utcnow())
    return athlete_id


def connect_new_emulator_athlete(engine: Engine, strava: FakeStrava) -> int:
    """Another athlete, added to the emulator and connected as the first one is."""
    athlete_id = strava.emulator.add_athlete()
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
    connect_athlete(engine, TokenCipher(TOKEN_KEY), token, "read,activity:read_all", utcnow())
    return athlete_id


_inbox_serial = itertools.count(1)


def inbox_row(
    engine: Engine,
    status: InboxStatus,
    *,
    received_at: datetime,
    attempts: int = 1,
    last_error: str | None = None,
    reason: str | None = None,
    owner_id: int = 1,
) -> int:
    """An inbox row in `status`, received at `received_at` and, unless it failed, finished
    then too; its inbox id. Each row is a distinct activity create of `owner_id` (by default
    an athlete never known)."""
    event = WebhookEvent(
        object_type="activity",
        object_id=next(_inbox_serial),
        aspect_type="create",
        owner_id=owner_id,
        subscription_id=1,
        event_time=EVENT_TIME,
    )
    inbox_id = store_event(engine, event).id
    with Session(engine) as session:
        stored = session.get_one(InboxEvent, inbox_id)
        stored.status = status.value
        stored.received_at = received_at
        stored.processed_at = received_at if status != InboxStatus.FAILED else None
        stored.attempts = attempts
        stored.last_error = last_error
        stored.reason = reason
        session.add(stored)
        session.commit()
    return inbox_id


def inbox_statuses(engine: Engine, *ids: int) -> list[str | None]:
    """Each inbox row's status, None where the row is gone."""
    with Session(engine) as session:
        return [(r.status if (r := session.get(InboxEvent, i)) else None) for i in ids]


def exhaust_quota(ctx: IngestContext) -> None:
    """As if Strava had reported every bucket full for the current windows."""
    full = RateLimitSnapshot(
        limit=WindowPair(200, 2000),
        usage=WindowPair(200, 200),
        read_limit=WindowPair(100, 1000),
        read_usage=WindowPair(100, 100),
    )
    ctx.quota.observe("read", 200, full)


def service_env(
    database_url: str,
    strava: FakeStrava | None = None,
    broker_url: str = "memory://",
    **settings: str,
) -> dict[str, str]:
    """The environment of a command or process: our databases, the emulator as Strava (when
    given), and `settings` as extra variables (names as the README gives them)."""
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOKEN_KEY": TOKEN_KEY,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_API_KEYS": ADMIN_KEY,
        "READ_API_KEYS": READ_KEY,
    }
    if strava is not None:
        env["STRAVA_API_URL"] = strava.server.api_url
        env["STRAVA_OAUTH_URL"] = strava.server.oauth_url
    return {**env, **settings}


@dataclass
class FakeUtcClock:
    """An injected UTC clock: it moves only when the test moves it."""

    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@dataclass
class FakeClock:
    """An injected clock: epoch seconds that move only when the test moves them."""

    now: float

    def __call__(self) -> float:
        return self.now


# Round shares that make allowances easy to check by hand.
TIER_SHARES = {
    Tier.ON_DEMAND: (1.0, 1.0),
    Tier.WEBHOOK: (1.0, 1.0),
    Tier.RECENT: (0.85, 0.8),
    Tier.BACKFILL: (0.7, 0.6),
    Tier.RECONCILE: (0.5, 0.4),
}


@dataclass
class Workers:
    """Dramatiq workers running in the test process on a real Redis broker."""

    ctx: IngestContext
    dispatcher: Dispatcher
    athlete_id: int


class LoopbackProxy:
    """A TCP proxy to `upstream` on a loopback port, with two faults to inject. While `flowing`
    is clear it accepts connections and reads what is sent but forwards nothing, in either
    direction: a server that hangs (or a dead network path whose packets are still
    acknowledged), which only a client-side deadline can end. `sever()` drops every
    connection and refuses new ones until `restore()`: a server that is gone."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self._severed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def sever(self) -> None:
        self._severed.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._severed.clear()

    def close(self) -> None:
        self.flowing.set()
        self.sever()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._severed.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.flowing.wait()
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def duty_deps(settings: Settings, engine: Engine) -> DutyDeps:
    """The periodic duties' dependencies: no broker behind the dispatcher, and Strava's client
    metered by an in-memory quota, the one that admits waiting hydrations."""
    quota = MemoryQuotaScheduler(QuotaConfig.from_settings(settings))
    return DutyDeps(
        settings, engine, Dispatcher(StubBroker()), metered_client(settings, quota), quota
    )


def rejected(client: TestClient) -> dict[str, int]:
    """The app's rejected requests by reason, as GET /stats/webhooks counts them."""
    counts: dict[str, int] = client.get("/stats/webhooks", headers=ADMIN).json()["rejected"]
    return counts
