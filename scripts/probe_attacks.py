#!/usr/bin/env python
"""Attack the running service as a hostile client on loopback would, and show what happens.

Starts the Strava emulator (`strava-ingest emulator`), `strava-ingest serve` and
`strava-ingest worker` in production mode (PostgreSQL and Redis), connects one athlete
through OAuth against the emulator, creates the webhook subscription, then performs each
attack with plain HTTP requests to the public routes (and, for the OAuth attacks, to
/auth/strava/connect and /auth/strava/callback). Per attack it prints the request, the
service's answer, and what was checked afterwards in the database or at the emulator.

The webhook attacks assume the worst case: the attacker already holds the secret path and
the subscription id (a leaked callback URL). Only the first attacks show what happens
without them.

Exit status: 0 when every attack was refused or harmless, 1 when at least one still works,
2 when the probe itself could not run. Every wait has a deadline; all traffic is loopback.
The database given by --database-url is DROPPED and recreated, then dropped at the end; the
Redis db given by --redis-url is flushed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis
from cryptography.fernet import Fernet
from launch import DeadlineExceeded, answers, command, free_port, running, wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from service.db import create_db_engine, drop_database, recreate_database, upgrade_schema
from service.ingest.crypto import TokenCipher, TokenDecryptError
from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    Athlete,
    InboxEvent,
    PendingHydration,
    SyncJob,
)

DEADLINE = 45.0
CLIENT_ID = "4242"
CLIENT_SECRET = "probe-client-secret"  # noqa: S105 (the emulator's, nothing real)
VERIFY_TOKEN = "probe-verify-token"  # noqa: S105
WEBHOOK_SECRET = "probe-webhook-secret-0123456789"  # noqa: S105
ADMIN_KEY = "probe-admin-key-0123456789"
RETURN_URL = "http://127.0.0.1:9/ok"
ACTIVITIES = 6
NEW_FETCH_BUDGET = 10
FORGED_CREATES = 25
COALESCE_SECONDS = 6
REQUEST_TIMEOUT = 2
CONCURRENCY_LIMIT = 20
FINISHED = ("processed", "ignored", "unconfirmed", "failed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_probe",
        help="PostgreSQL database to DROP, recreate, use and drop (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/5",
        help="Redis db to FLUSH and use as the broker (default: %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    return parser.parse_args()


# -- reporting -----------------------------------------------------------------------------


@dataclass
class Outcome:
    attack: str
    refused: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        refused = sum(o.refused for o in self.outcomes)
        broken = len(self.outcomes) - refused
        line = f"{len(self.outcomes)} attacks, {refused} refused or harmless, {broken} NOT"
        if broken:
            line += " (" + "; ".join(o.attack for o in self.outcomes if not o.refused) + ")"
        return line


def show(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        text = json.dumps(body, ensure_ascii=True)
    except ValueError:
        text = repr(response.text[:160])
    return f"{response.status_code} {text}"


class Block:
    """One attack's printed block; `check` records a verdict line."""

    def __init__(self, report: Report, attack: str) -> None:
        self.report = report
        self.outcome = Outcome(attack, True)
        print(f"\n### {attack}", flush=True)

    def request(self, text: str) -> None:
        print(f"  request : {text}", flush=True)

    def answer(self, text: str) -> None:
        print(f"  answer  : {text}", flush=True)

    def check(self, ok: bool, text: str) -> None:
        mark = "ok " if ok else "NOT"
        print(f"  checked : [{mark}] {text}", flush=True)
        self.outcome.refused = self.outcome.refused and ok

    def done(self) -> None:
        verdict = "refused or harmless" if self.outcome.refused else "STILL WORKS"
        print(f"  verdict : {verdict}", flush=True)
        self.report.outcomes.append(self.outcome)


@contextmanager
def attack(report: Report, title: str) -> Iterator[Block]:
    block = Block(report, title)
    try:
        yield block
    except (DeadlineExceeded, subprocess.TimeoutExpired) as error:
        block.check(False, f"the probe gave up waiting: {error}")
    block.done()


# -- the deployment --------------------------------------------------------------------------


@dataclass
class Deployment:
    web: str
    emulator: str
    engine: Engine
    env: dict[str, str]
    workdir: Path
    http: httpx.Client

    @property
    def hook(self) -> str:
        return f"{self.web}/webhooks/strava/{WEBHOOK_SECRET}"

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, f"{self.emulator}/_emulator{path}", **kwargs)
        response.raise_for_status()
        return response

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = self.control("GET", "/calls").json()
        return {k: v for k, v in calls.items() if not k.startswith("GET /oauth")}

    def reset_calls(self) -> None:
        self.control("DELETE", "/calls")

    def subscription_id(self) -> int:
        subscription = self.control("GET", "/subscription").json()
        return int(subscription["id"])

    def post_event(self, **event: Any) -> httpx.Response:
        body = {"subscription_id": self.subscription_id(), "event_time": int(time.time())}
        body.update(event)
        return self.http.post(self.hook, json=body)


def production_env(args: argparse.Namespace, emulator: str, web: str) -> dict[str, str]:
    return {
        "DATABASE_URL": args.database_url,
        "BROKER_URL": args.redis_url,
        "STRAVA_CLIENT_ID": CLIENT_ID,
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOKEN_KEY": Fernet.generate_key().decode(),
        "STRAVA_API_URL": f"{emulator}/api/v3",
        "STRAVA_OAUTH_URL": f"{emulator}/oauth",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_API_KEYS": ADMIN_KEY,
        "PUBLIC_URL": web,
        "OAUTH_RETURN_URLS": RETURN_URL,
        "EVENT_COALESCE_SECONDS": str(COALESCE_SECONDS),
        "WEBHOOK_FETCHES_PER_ATHLETE_PER_WINDOW": str(NEW_FETCH_BUDGET),
        "HTTP_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
        "HTTP_CONCURRENCY_LIMIT": str(CONCURRENCY_LIMIT),
        "LOG_LEVEL": "INFO",
        # The first attack leaves "no subscription yet" cached; re-read it soon after.
        "SUBSCRIPTION_CACHE_SECONDS": "1",
    }


@contextmanager
def deployment(args: argparse.Namespace, workdir: Path) -> Iterator[Deployment]:
    emulator = f"http://127.0.0.1:{free_port()}"
    web_port = free_port()
    web = f"http://127.0.0.1:{web_port}"
    env = production_env(args, emulator, web)
    recreate_database(args.database_url)
    upgrade_schema(args.database_url)
    broker = redis.Redis.from_url(args.redis_url)
    broker.flushdb()
    engine = create_db_engine(args.database_url)
    with ExitStack() as stack:
        stack.callback(drop_database, args.database_url)
        stack.callback(engine.dispose)
        stack.callback(broker.close)
        stack.enter_context(
            running(
                command(
                    "emulator",
                    "--port",
                    emulator.rsplit(":", 1)[1],
                    "--athletes",
                    "2",
                    "--activities",
                    str(ACTIVITIES),
                ),
                env=env,
                log_file=workdir / "emulator.log",
                ready=lambda: answers(f"{emulator}/_emulator/calls"),
            )
        )
        stack.enter_context(
            running(
                command("worker", "--processes", "1", "--threads", "4"),
                env=env,
                cwd=workdir,
                log_file=workdir / "worker.log",
                ready=lambda: broker.zcard("dramatiq:__heartbeats__") > 0,
                timeout=DEADLINE,
            )
        )
        stack.enter_context(
            running(
                command("serve", "--port", str(web_port)),
                env=env,
                cwd=workdir,
                log_file=workdir / "web.log",
                ready=lambda: answers(f"{web}/readyz"),
                timeout=DEADLINE,
            )
        )
        http = stack.enter_context(httpx.Client(timeout=10.0))
        yield Deployment(web, emulator, engine, env, workdir, http)


def wait(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> object:
    return wait_until(condition, timeout=timeout, what=what, interval=0.1)


def inbox_row(dep: Deployment, event_id: int, finished: bool = True) -> InboxEvent:
    def check() -> InboxEvent | None:
        with Session(dep.engine) as session:
            row = session.get(InboxEvent, event_id)
        return row if row is not None and (not finished or row.status in FINISHED) else None

    found = wait(check, f"inbox event {event_id} to finish")
    assert isinstance(found, InboxEvent)
    return found


def athlete_state(dep: Deployment, athlete_id: int) -> tuple[Athlete | None, int]:
    with Session(dep.engine) as session:
        athlete = session.get(Athlete, athlete_id)
        count = session.exec(
            select(func.count()).select_from(Activity).where(Activity.athlete_id == athlete_id)
        ).one()
    return athlete, int(count)


def settled(dep: Deployment, athlete_id: int) -> None:
    """Wait until the backfill has listed and hydrated everything, and no fetch is pending."""
    active = [status.value for status in ACTIVE_SYNC_STATUSES]

    def check() -> bool:
        with Session(dep.engine) as session:
            jobs = session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)).all()
            open_rows = session.exec(
                select(func.count())
                .select_from(Activity)
                .where(
                    Activity.athlete_id == athlete_id,
                    col(Activity.hydration_status).in_(("pending", "partial")),
                )
            ).one()
            pending = session.exec(select(func.count()).select_from(PendingHydration)).one()
            live = session.exec(
                select(func.count())
                .select_from(InboxEvent)
                .where(col(InboxEvent.status).not_in(FINISHED))
            ).one()
        return (
            bool(jobs)
            and all(job.status not in active for job in jobs)
            and open_rows == 0
            and pending == 0
            and live == 0
        )

    wait(check, "the backfill and every fetch to settle", timeout=90)


# -- the attacks -----------------------------------------------------------------------------


def before_subscription(dep: Deployment, report: Report) -> None:
    with attack(report, "events before any subscription id is known") as a:
        body = {
            "subscription_id": 1,
            "event_time": int(time.time()),
            "object_type": "activity",
            "object_id": 1,
            "aspect_type": "create",
            "owner_id": 1,
            "updates": {},
        }
        a.request(f"POST /webhooks/strava/<secret> {json.dumps(body)}")
        response = dep.http.post(dep.hook, json=body)
        a.answer(show(response))
        with Session(dep.engine) as session:
            stored = session.exec(select(func.count()).select_from(InboxEvent)).one()
        a.check(response.status_code == 503, "503 while no subscription is known (Strava retries)")
        a.check(stored == 0, f"{stored} inbox rows stored")


def connect_athlete(dep: Deployment) -> int:
    athletes = dep.control("GET", "/athletes").json()["athletes"]
    dep.control("POST", "/login", json={"athlete_id": athletes[0]})
    response = dep.http.get(f"{dep.web}/auth/strava/connect", follow_redirects=True)
    response.raise_for_status()
    athlete_id = int(response.json()["athlete_id"])
    created = subprocess.run(
        command("subscription", "create", "--callback-url", f"{dep.web}/webhooks/strava"),
        env={**os.environ, **dep.env},
        cwd=dep.workdir,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    print(f"\nconnected athlete {athlete_id} through OAuth; {created.stdout.strip()}")

    def gate_knows_subscription() -> bool:
        # Another subscription's id: 403 once the id is known (503 before), nothing stored.
        response = dep.post_event(
            subscription_id=dep.subscription_id() + 1,
            object_type="activity",
            object_id=1,
            aspect_type="create",
            owner_id=1,
            updates={},
        )
        return response.status_code == 403

    wait(gate_knows_subscription, "the web process to read the stored subscription id")
    settled(dep, athlete_id)
    return athlete_id


def probe_subscription_id(dep: Deployment, report: Report) -> None:
    with attack(report, "finding the subscription id by trying numbers (403 vs 200)") as a:
        real = dep.subscription_id()
        unknown = dep.http.post(f"{dep.web}/no-such-route", json={})
        a.request("POST /webhooks/strava and /webhooks/strava/<wrong> with subscription_id 1..100")
        answers_seen: set[tuple[int, str]] = set()
        for candidate in [*range(1, 101), real]:
            body = {
                "subscription_id": candidate,
                "event_time": int(time.time()),
                "object_type": "activity",
                "object_id": 1,
                "aspect_type": "create",
                "owner_id": 1,
                "updates": {},
            }
            for path in ("/webhooks/strava", "/webhooks/strava/wrong-secret-0123456789"):
                response = dep.http.post(f"{dep.web}{path}", json=body)
                answers_seen.add((response.status_code, response.text))
        get = dep.http.get(f"{dep.web}/webhooks/strava", params={"hub.mode": "subscribe"})
        answers_seen.add((get.status_code, get.text))
        a.answer(f"{len(answers_seen)} distinct answer(s): {sorted(answers_seen)}")
        a.answer(f"unknown route: {unknown.status_code} {unknown.text!r}")
        a.check(
            answers_seen == {(unknown.status_code, unknown.text)},
            "every answer, the real id's included, is the unknown route's 404: nothing to tell",
        )


def forged_deauthorization(dep: Deployment, report: Report, athlete_id: int) -> None:
    with attack(report, f"forged deauthorization of athlete {athlete_id}") as a:
        _, before = athlete_state(dep, athlete_id)
        dep.reset_calls()
        event = {
            "object_type": "athlete",
            "object_id": athlete_id,
            "aspect_type": "update",
            "owner_id": athlete_id,
            "updates": {"authorized": "false"},
        }
        a.request(f"POST /webhooks/strava/<secret> {json.dumps(event)}")
        response = dep.post_event(**event)
        a.answer(show(response))
        row = inbox_row(dep, int(response.json()["event_id"]))
        athlete, count = athlete_state(dep, athlete_id)
        calls = dep.calls()
        a.check(
            row.status == "unconfirmed",
            f"inbox status {row.status!r}, reason {row.reason!r}",
        )
        a.check(
            athlete is not None
            and athlete.status == "connected"
            and athlete.access_token_enc is not None
            and count == before,
            f"athlete {athlete_id} {athlete.status if athlete else 'gone'}, "
            f"tokens {'kept' if athlete and athlete.access_token_enc else 'gone'}, "
            f"{count} of {before} activities",
        )
        a.check(calls == {"GET /athlete": 1}, f"calls at the emulator: {calls}")


def stored_ids(dep: Deployment, athlete_id: int) -> list[int]:
    with Session(dep.engine) as session:
        return list(
            session.exec(
                select(Activity.id)
                .where(Activity.athlete_id == athlete_id)
                .order_by(col(Activity.id))
            ).all()
        )


def forged_delete(dep: Deployment, report: Report, athlete_id: int) -> None:
    target = stored_ids(dep, athlete_id)[0]
    with attack(report, f"forged delete of activity {target}, which Strava still has") as a:
        dep.reset_calls()
        event = {
            "object_type": "activity",
            "object_id": target,
            "aspect_type": "delete",
            "owner_id": athlete_id,
            "updates": {},
        }
        a.request(f"POST /webhooks/strava/<secret> {json.dumps(event)}")
        response = dep.post_event(**event)
        a.answer(show(response))
        row = inbox_row(dep, int(response.json()["event_id"]))
        with Session(dep.engine) as session:
            still = session.get(Activity, target)
        calls = dep.calls()
        a.check(row.status == "unconfirmed", f"inbox status {row.status!r}, reason {row.reason!r}")
        a.check(still is not None, f"activity {target} {'still stored' if still else 'REMOVED'}")
        a.check(calls.get("GET /activities/{id}") == 1, f"1 confirming fetch; calls seen: {calls}")


def far_future_event_time(dep: Deployment, report: Report, athlete_id: int) -> None:
    target = stored_ids(dep, athlete_id)[1]
    with attack(report, "update with event_time 2^63-1 (outranks every later event)") as a:
        event = {
            "object_type": "activity",
            "object_id": target,
            "aspect_type": "update",
            "owner_id": athlete_id,
            "updates": {"title": "pwned"},
            "event_time": 2**63 - 1,
        }
        a.request(f"POST /webhooks/strava/<secret> {json.dumps(event)}")
        response = dep.post_event(**event)
        a.answer(show(response))
        with Session(dep.engine) as session:
            stored = session.exec(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.event_time > int(time.time()) + 3600)
            ).one()
            row = session.get(Activity, target)
            future_stamps = session.exec(
                select(func.count())
                .select_from(Activity)
                .where(col(Activity.synced_event_time) > int(time.time()) + 3600)
            ).one()
        body = response.json() if response.status_code == 400 else {}
        a.check(
            response.status_code == 400 and "event_time" in json.dumps(body),
            "400 naming event_time",
        )
        a.check(stored == 0, f"{stored} inbox rows with a future event_time")
        a.check(
            row is not None and row.name != "pwned" and future_stamps == 0,
            f"title {row.name if row else None!r}; "
            f"{future_stamps} activities stamped in the future",
        )


def budget_of_creates(dep: Deployment, report: Report, athlete_id: int) -> None:
    title = f"{FORGED_CREATES} forged creates of made-up activities (spending the webhook tier)"
    with attack(report, title) as a:
        dep.reset_calls()
        base = 9_000_000_000 + int(time.time()) % 1000 * 1000
        ids = [base + i for i in range(FORGED_CREATES)]
        a.request(
            f"{FORGED_CREATES} x POST /webhooks/strava/<secret> "
            f'{{"object_type":"activity","aspect_type":"create","owner_id":{athlete_id},'
            f'"object_id":{ids[0]}..{ids[-1]}}}'
        )
        statuses: dict[int, int] = {}
        events: list[int] = []
        for activity_id in ids:
            response = dep.post_event(
                object_type="activity",
                object_id=activity_id,
                aspect_type="create",
                owner_id=athlete_id,
                updates={},
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                events.append(int(response.json()["event_id"]))
        a.answer(f"statuses {statuses}")

        def tiers() -> dict[str, int] | None:
            with Session(dep.engine) as session:
                rows = session.exec(
                    select(PendingHydration.tier).where(col(PendingHydration.activity_id).in_(ids))
                ).all()
            if len(rows) < len(ids):
                return None
            counted: dict[str, int] = {}
            for tier in rows:
                counted[tier] = counted.get(tier, 0) + 1
            return counted

        charged = wait(tiers, "every forged create's pending fetch", timeout=COALESCE_SECONDS)
        assert isinstance(charged, dict)
        for event_id in events:
            inbox_row(dep, event_id)
        athlete, _ = athlete_state(dep, athlete_id)
        calls = dep.calls()
        a.check(
            charged.get("webhook", 0) <= NEW_FETCH_BUDGET,
            f"pending fetches by tier: {charged} "
            f"(budget {NEW_FETCH_BUDGET} per athlete per window)",
        )
        a.check(
            athlete is not None and athlete.forged_creates >= FORGED_CREATES,
            f"forged_creates counted: {athlete.forged_creates if athlete else None}",
        )
        a.check(
            athlete is not None and athlete.flagged_at is not None,
            f"athlete flagged: {athlete.flag_reason if athlete else None!r}",
        )
        a.answer(f"calls at the emulator: {calls}")


def unstorable_values(dep: Deployment, report: Report, athlete_id: int) -> None:
    with attack(report, "NaN / NUL / lone surrogate among good events (one group commit)") as a:
        target = stored_ids(dep, athlete_id)[2]
        now = int(time.time())
        subscription = dep.subscription_id()

        def raw(title_json: str, object_id: int, owner_id: int = athlete_id) -> bytes:
            return (
                f'{{"subscription_id":{subscription},"event_time":{now},'
                f'"object_type":"activity","object_id":{object_id},"aspect_type":"update",'
                f'"owner_id":{owner_id},"updates":{{"title":{title_json}}}}}'
            ).encode()

        hostile = {
            "NaN": raw("NaN", target),
            "NUL": raw('"a\\u0000b"', target),
            "lone surrogate": raw('"\\ud800"', target),
        }
        # Good events of an owner we do not know: stored, then `ignored` with no API call.
        good = [raw(f'"good {i}"', 8_000_000_000 + i, owner_id=1) for i in range(6)]
        answers_by: dict[str, httpx.Response] = {}

        def send(name: str, body: bytes) -> None:
            answers_by[name] = httpx.post(
                dep.hook, content=body, headers={"content-type": "application/json"}, timeout=10
            )

        threads = [threading.Thread(target=send, args=item) for item in hostile.items()]
        threads += [
            threading.Thread(target=send, args=(f"good {i}", b)) for i, b in enumerate(good)
        ]
        a.request(
            'concurrently: 3 updates with title NaN, "a\\u0000b", "\\ud800" and 6 good events'
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE)
        for name in hostile:
            a.answer(f"{name}: {show(answers_by[name])}")
        good_statuses = [answers_by[f"good {i}"].status_code for i in range(len(good))]
        a.answer(f"good events: {good_statuses}")
        a.check(
            all(
                answers_by[name].status_code == 400 and "updates" in answers_by[name].text
                for name in hostile
            ),
            "each hostile event 400, naming the field",
        )
        a.check(good_statuses == [200] * len(good), "every good event acknowledged (200)")


def admin_routes(dep: Deployment, report: Report) -> None:
    with attack(report, "reading GET /quota and GET /stats/webhooks without the admin key") as a:
        results = []
        for path in ("/quota", "/stats/webhooks"):
            for headers in ({}, {"Authorization": "Bearer guessed-key-0123456789"}):
                response = dep.http.get(f"{dep.web}{path}", headers=headers)
                label = "no key" if not headers else "wrong key"
                a.request(f"GET {path} ({label})")
                a.answer(show(response))
                results.append(response.status_code)
        a.check(results == [401, 403, 401, 403], "401 without a key, 403 with a wrong one")


def oauth_attacks(dep: Deployment, report: Report) -> None:
    athletes = dep.control("GET", "/athletes").json()["athletes"]
    victim = athletes[1]
    dep.control("POST", "/login", json={"athlete_id": victim})
    with attack(report, "OAuth grant with activity:read unticked, stored as connected") as a:
        start = dep.http.get(f"{dep.web}/auth/strava/connect")
        authorize = urlsplit(start.headers["location"])
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        query["scope"] = "read"
        a.request("GET /auth/strava/connect, then Strava's authorize with scope=read, then back")
        strava = dep.http.get(
            f"{authorize.scheme}://{authorize.netloc}{authorize.path}?{urlencode(query)}"
        )
        back = urlsplit(strava.headers["location"])
        response = dep.http.get(f"{dep.web}{back.path}?{back.query}")
        a.answer(show(response))
        athlete, _ = athlete_state(dep, victim)
        a.check(response.status_code == 400, "the callback refuses the grant")
        a.check(
            athlete is None, f"athlete {victim} {'not stored' if athlete is None else 'STORED'}"
        )

    with attack(report, "open redirect through return_to") as a:
        tries = [
            "http://127.0.0.1:9/okevil",
            "http://127.0.0.1:9/ok/../admin",
            "http://127.0.0.1:9/ok/%2e%2e/admin",
            "http://127.0.0.1:9@evil.example/ok",
            "http://evil.example/ok",
            "http://127.0.0.1:9/ok\\@evil.example",
            "//evil.example/ok",
        ]
        statuses = []
        for url in tries:
            response = dep.http.get(f"{dep.web}/auth/strava/connect", params={"return_to": url})
            a.request(f"GET /auth/strava/connect?return_to={url}")
            a.answer(show(response))
            statuses.append(response.status_code)
        a.check(all(s == 400 for s in statuses), f"all refused with 400: {statuses}")

    with attack(report, "login CSRF: the attacker's callback URL opened by a victim") as a:
        # The attacker starts the flow and authorizes as himself, but does not follow
        # Strava's redirect back: he sends that URL to a victim instead.
        attacker = athletes[1]
        dep.control("POST", "/login", json={"athlete_id": attacker})
        start = dep.http.get(f"{dep.web}/auth/strava/connect", params={"return_to": RETURN_URL})
        strava = dep.http.get(start.headers["location"])
        back = urlsplit(strava.headers["location"])
        a.request(
            "attacker: GET /auth/strava/connect?return_to=<allowed app page>, authorizes as "
            f"athlete {attacker}, keeps /auth/strava/callback?state=…&code=…; victim (another "
            "client, no cookies) opens it"
        )
        with httpx.Client(timeout=10.0) as victim:
            response = victim.get(f"{dep.web}{back.path}?{back.query}")
        location = response.headers.get("location", "")
        a.answer(f"{response.status_code} location={location}" if location else show(response))
        a.check(
            f"athlete_id={attacker}" not in location,
            "the victim's browser is not sent to the app as connected to the attacker's "
            "athlete (the callback must come from the browser that started the connect)",
        )

    with attack(report, "non-ASCII state on the callback (was a 500)") as a:
        a.request("GET /auth/strava/callback?state=%C3%A9t%C3%A9&code=abc&scope=read,activity:read")
        response = dep.http.get(
            f"{dep.web}/auth/strava/callback",
            params={"state": "été", "code": "abc", "scope": "read,activity:read"},
        )
        a.answer(show(response))
        a.check(response.status_code == 400, "400 with a JSON error")

    with attack(report, "Host header building the redirect_uri (code sent to the attacker)") as a:
        a.request("GET /auth/strava/connect  Host: evil.example")
        response = dep.http.get(f"{dep.web}/auth/strava/connect", headers={"Host": "evil.example"})
        location = response.headers.get("location", "")
        redirect_uri = parse_qs(urlsplit(location).query).get("redirect_uri", [""])[0]
        a.answer(f"{response.status_code} redirect_uri={redirect_uri}")
        a.check(
            redirect_uri == f"{dep.web}/auth/strava/callback",
            "redirect_uri is PUBLIC_URL's, not the Host header's",
        )

    with attack(report, "forging a log line through the callback's error parameter") as a:
        forged = "access_denied\r\nFORGED-LINE level=INFO athlete purged"
        a.request(f"GET /auth/strava/callback?error={forged!r}")
        response = dep.http.get(f"{dep.web}/auth/strava/callback", params={"error": forged})
        a.answer(show(response))
        log_lines = (dep.workdir / "web.log").read_text(errors="replace").splitlines()
        forged_lines = [line for line in log_lines if line.startswith("FORGED-LINE")]
        a.check(response.status_code == 400, "400")
        a.check(not forged_lines, f"{len(forged_lines)} log lines start with the forged text")


def connection_attacks(dep: Deployment, report: Report) -> None:
    port = int(dep.web.rsplit(":", 1)[1])
    with attack(report, "slowloris: a request trickled one byte at a time") as a:
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
        head = b"POST /webhooks/strava HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        started = time.monotonic()
        closed_after: float | None = None
        a.request("POST head sent one byte per 0.2 s, never finished")
        deadline = started + REQUEST_TIMEOUT + 10
        index = 0
        while time.monotonic() < deadline:
            try:
                sock.send(head[index % len(head) : index % len(head) + 1])
                index += 1
                data = sock.recv(1024)
                if data == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                time.sleep(0.2)
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
        sock.close()
        a.answer(
            f"connection closed by the server after {closed_after:.1f} s"
            if closed_after is not None
            else "still open"
        )
        a.check(
            closed_after is not None and closed_after < REQUEST_TIMEOUT + 3,
            f"closed within HTTP_REQUEST_TIMEOUT_SECONDS={REQUEST_TIMEOUT} (+ slack)",
        )

    with attack(report, "oversized request head (64 KiB of headers)") as a:
        a.request("GET /healthz with a 64 KiB X-Pad header")
        response = dep.http.get(f"{dep.web}/healthz", headers={"X-Pad": "a" * 65536})
        a.answer(show(response))
        a.check(response.status_code == 431, "431")

    with attack(report, f"{CONCURRENCY_LIMIT + 5} idle connections held open") as a:
        socks = [
            socket.create_connection(("127.0.0.1", port), timeout=2)
            for _ in range(CONCURRENCY_LIMIT + 5)
        ]
        a.request(f"{len(socks)} connections opened and left silent, then GET /healthz")
        try:
            during = httpx.get(f"{dep.web}/healthz", timeout=5)
            a.answer(f"while held: {show(during)}")
            a.check(during.status_code == 503, "503 past HTTP_CONCURRENCY_LIMIT, nothing queued")

            def all_closed() -> bool:
                for sock in socks:
                    sock.settimeout(0.05)
                    try:
                        if sock.recv(1) != b"":
                            return False
                    except TimeoutError:
                        return False
                    except OSError:
                        pass
                return True

            wait(all_closed, "the idle connections to be closed", timeout=REQUEST_TIMEOUT + 10)
            after = httpx.get(f"{dep.web}/healthz", timeout=5)
            a.answer(f"after the server closed them: {show(after)}")
            a.check(after.status_code == 200, "the idle connections were closed by the server")
        finally:
            for sock in socks:
                sock.close()


def key_rotation(dep: Deployment, report: Report, athlete_id: int) -> None:
    with attack(report, "stolen TOKEN_KEY stays useful after a rotation") as a:
        old = dep.env["TOKEN_KEY"]
        new = Fernet.generate_key().decode()
        a.request("operator: TOKEN_KEY=<new>,<old> strava-ingest keys rotate")
        done = subprocess.run(
            command("keys", "rotate"),
            env={**os.environ, **dep.env, "TOKEN_KEY": f"{new},{old}"},
            cwd=dep.workdir,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        a.answer(f"exit {done.returncode}: {done.stdout.strip()}")
        athlete, _ = athlete_state(dep, athlete_id)
        assert athlete is not None
        assert athlete.access_token_enc is not None
        ciphertext = athlete.access_token_enc
        readable_new = readable(TokenCipher(new), ciphertext)
        readable_old = readable(TokenCipher(old), ciphertext)
        a.check(
            done.returncode == 0 and readable_new and not readable_old,
            f"stored token readable with the new key: {readable_new}, "
            f"with the old (stolen) key: {readable_old}",
        )


def readable(cipher: TokenCipher, ciphertext: str) -> bool:
    try:
        cipher.decrypt(ciphertext)
    except TokenDecryptError:
        return False
    return True


def forged_refetch_of_stored(dep: Deployment, report: Report, athlete_id: int) -> None:
    ids = stored_ids(dep, athlete_id)
    title = (
        f"forged updates with a key Strava never sends, for the {len(ids)} stored activities, "
        "twice (fetches outside the per-athlete budget)"
    )
    with attack(report, title) as a:
        dep.reset_calls()
        before, _ = athlete_state(dep, athlete_id)
        assert before is not None
        counted_before = before.new_fetch_count
        a.request(
            f'{len(ids)} x POST /webhooks/strava/<secret> {{"aspect_type":"update",'
            f'"owner_id":{athlete_id},"object_id":<stored>,"updates":{{"x":"1"}}}}, '
            "then again after the coalescing window"
        )
        tiers: dict[str, int] = {}
        for burst in range(2):
            events = []
            for activity_id in ids:
                response = dep.post_event(
                    object_type="activity",
                    object_id=activity_id,
                    aspect_type="update",
                    owner_id=athlete_id,
                    updates={"x": str(burst)},
                )
                events.append(int(response.json()["event_id"]))

            def pending() -> list[str] | None:
                with Session(dep.engine) as session:
                    rows = session.exec(
                        select(PendingHydration.tier).where(
                            col(PendingHydration.activity_id).in_(ids)
                        )
                    ).all()
                return list(rows) if len(rows) == len(ids) else None

            rows = wait(pending, "the forged updates' pending fetches", timeout=COALESCE_SECONDS)
            assert isinstance(rows, list)
            for tier in rows:
                tiers[tier] = tiers.get(tier, 0) + 1
            # Past the budget a fetch waits at the `recent` tier, whose share of the window
            # may be spent by now: waiting for quota is an outcome here, not a hang.
            for event_id in events:
                wait(
                    lambda event_id=event_id: (
                        inbox_row(dep, event_id, finished=False).status
                        in (*FINISHED, "rate_limited")
                    ),
                    f"inbox event {event_id} to finish or wait for quota",
                )
        after, _ = athlete_state(dep, athlete_id)
        assert after is not None
        fetches = dep.calls().get("GET /activities/{id}", 0)
        a.answer(f"{fetches} GET /activities/{{id}} at the emulator; pending tiers {tiers}")
        a.check(
            tiers.get("webhook", 0) <= NEW_FETCH_BUDGET,
            f"webhook-tier fetches {tiers.get('webhook', 0)} within the budget of "
            f"{NEW_FETCH_BUDGET}; budget counter {counted_before} -> {after.new_fetch_count}",
        )


def accepted_title_update(dep: Deployment, report: Report, athlete_id: int) -> None:
    target = stored_ids(dep, athlete_id)[3]
    print("\n### (accepted, not counted) forged title/private update of a stored activity")
    dep.reset_calls()
    event = {
        "object_type": "activity",
        "object_id": target,
        "aspect_type": "update",
        "owner_id": athlete_id,
        "updates": {"title": "forged title", "private": "true"},
    }
    print(f"  request : POST /webhooks/strava/<secret> {json.dumps(event)}")
    response = dep.post_event(**event)
    print(f"  answer  : {show(response)}")
    row = inbox_row(dep, int(response.json()["event_id"]))
    with Session(dep.engine) as session:
        activity = session.get(Activity, target)
    calls = dep.calls()
    name = activity.name if activity else None
    private = activity.private if activity else None
    print(
        f"  checked : inbox {row.status!r}; activity {target} name {name!r}, private {private}; "
        f"calls {calls or 'none'} (Strava says these keys need no fetch, docs/strava.md §1.3)"
    )
    report.accepted.append(f"forged title/private update applied locally, activity {target}")

    with attack(report, f"the forged title of activity {target} outliving reconciliation") as a:
        for args in (["sync", str(athlete_id)], ["sync", str(athlete_id), "--full"]):
            a.request(f"operator: strava-ingest {' '.join(args)}, then wait for the job")
            done = subprocess.run(
                command(*args),
                env={**os.environ, **dep.env},
                cwd=dep.workdir,
                capture_output=True,
                text=True,
                timeout=DEADLINE,
            )
            a.answer(f"exit {done.returncode}: {done.stdout.strip().splitlines()[0]}")
            settled(dep, athlete_id)
            with Session(dep.engine) as session:
                job = session.exec(
                    select(SyncJob)
                    .where(SyncJob.athlete_id == athlete_id)
                    .order_by(col(SyncJob.id).desc())
                ).first()
            if job is not None:
                a.answer(
                    f"job {job.id} ({job.kind}) {job.status}: {job.pages} list calls, "
                    f"{job.listed} listed, {job.updated} updated"
                )
        with Session(dep.engine) as session:
            activity = session.get(Activity, target)
        strava_title = next(
            (
                listed["name"]
                for listed in dep.control("GET", f"/athletes/{athlete_id}/activities").json()
                if listed["id"] == target
            ),
            None,
        )
        name = activity.name if activity else None
        a.check(
            name == strava_title,
            f"stored name {name!r}, Strava's {strava_title!r} (a listing rewrites a row when "
            "Strava's summary differs from the stored one, which the local update edited)",
        )


def run(dep: Deployment, report: Report) -> None:
    before_subscription(dep, report)
    athlete_id = connect_athlete(dep)
    probe_subscription_id(dep, report)
    forged_deauthorization(dep, report, athlete_id)
    forged_delete(dep, report, athlete_id)
    # Early, while the reconcile tier's share of the read quota is still unspent.
    accepted_title_update(dep, report, athlete_id)
    far_future_event_time(dep, report, athlete_id)
    unstorable_values(dep, report, athlete_id)
    admin_routes(dep, report)
    oauth_attacks(dep, report)
    connection_attacks(dep, report)
    budget_of_creates(dep, report, athlete_id)
    forged_refetch_of_stored(dep, report, athlete_id)
    key_rotation(dep, report, athlete_id)


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="strava-ingest-probe-"))
    report = Report()
    print(f"logs: {workdir}")
    try:
        with deployment(args, workdir) as dep:
            run(dep, report)
    except Exception as error:
        print(f"\nprobe failed: {type(error).__name__}: {error}\nlogs are in {workdir}")
        return 2
    print(f"\n{report.summary()}")
    if report.accepted:
        print(f"accepted and documented (docs/security.md): {'; '.join(report.accepted)}")
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(o.refused for o in report.outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
