"""The demo, on the embedded default (SQLite, in-process broker and worker threads).

It starts the Strava emulator and the service (`strava-ingest serve`, the Procfile's `web`
line) in a fresh working directory, creates the webhook subscription through the real
handshake, connects one athlete through the OAuth routes, makes the emulator push a few
create/update/delete events, and prints what landed in the database.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from launch import answers, command, free_port, running, wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from service.db import create_db_engine
from service.models import Activity, InboxEvent, SyncJob

TIMEOUT = 30.0


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (database and logs)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="strava-ingest-demo-"))
    try:
        run_demo(workdir)
    except Exception as error:
        print(f"\ndemo failed: {error}\nlogs are in {workdir}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"\nworking directory kept: {workdir}")
    else:
        shutil.rmtree(workdir)
    return 0


def run_demo(workdir: Path) -> None:
    emulator_url = f"http://127.0.0.1:{free_port()}"
    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env = {
        "STRAVA_CLIENT_ID": "1000",
        "STRAVA_CLIENT_SECRET": "demo-client-secret",
        "STRAVA_VERIFY_TOKEN": "demo-verify-token",
        "TOKEN_KEY": Fernet.generate_key().decode(),
        "STRAVA_API_URL": f"{emulator_url}/api/v3",
        "STRAVA_OAUTH_URL": f"{emulator_url}/oauth",
        # The embedded default: whatever the caller's shell says, no PostgreSQL, no Redis.
        "DATABASE_URL": "sqlite:///./strava_ingest.db",
        "BROKER_URL": "memory://",
    }
    print(f"working directory: {workdir}")

    step("starting the Strava emulator (no machine here reaches Strava)")
    emulator_port = emulator_url.rsplit(":", 1)[1]
    with running(
        command("emulator", "--port", emulator_port, "--athletes", "1", "--activities", "20"),
        env=env,
        log_file=workdir / "emulator.log",
        ready=lambda: answers(f"{emulator_url}/_emulator/calls"),
    ):
        print(f"emulator at {emulator_url}")
        step("strava-ingest db upgrade")
        subprocess.run(command("db", "upgrade"), env=_merged(env), cwd=workdir, check=True)

        step("starting the service: strava-ingest serve (the Procfile's web line)")
        with running(
            command("serve", "--port", str(web_port)),
            env=env,
            cwd=workdir,
            log_file=workdir / "service.log",
            ready=lambda: answers(f"{web_url}/readyz"),
        ):
            print(f"service at {web_url} (mode: embedded)")
            engine = create_db_engine(f"sqlite:///{workdir / 'strava_ingest.db'}")
            try:
                exercise(engine, env, workdir, emulator_url, web_url)
            finally:
                engine.dispose()


def _merged(env: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **env}


def exercise(
    engine: Engine, env: dict[str, str], workdir: Path, emulator_url: str, web_url: str
) -> None:
    step("strava-ingest subscription create (Strava validates the callback with a GET)")
    created = subprocess.run(
        command("subscription", "create", "--callback-url", f"{web_url}/webhooks/strava"),
        env=_merged(env),
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    print(created.stdout.strip())

    step("connecting an athlete: /auth/strava/connect → Strava authorize → callback")
    with httpx.Client(timeout=10.0) as http:
        connected = http.get(f"{web_url}/auth/strava/connect", follow_redirects=True)
        connected.raise_for_status()
        athlete = connected.json()
        print(athlete)
        athlete_id = athlete["athlete_id"]
        control = f"{emulator_url}/_emulator"

        step("the connect started a backfill of the athlete's history (20 activities)")
        await_job(engine, athlete["sync_job_id"])
        await_state(
            engine,
            lambda rows: len(rows) == 20 and all(_complete(rows, i) for i in rows),
            "the history, listed and hydrated",
        )

        step(
            "the athlete records three activities; Strava pushes a create event for each "
            "(each fetch waits EVENT_COALESCE_SECONDS=3 for more events on the same activity)"
        )
        ids = []
        for _ in range(3):
            response = http.post(f"{control}/athletes/{athlete_id}/activities", json={})
            response.raise_for_status()
            ids.append(response.json()["id"])
        await_state(
            engine, lambda rows: all(_complete(rows, i) for i in ids), "three hydrated rows"
        )

        step("the athlete renames the first one; Strava pushes an update event")
        http.patch(f"{control}/activities/{ids[0]}", json={"title": "Demo tempo run"})
        await_state(
            engine,
            lambda rows: ids[0] in rows and rows[ids[0]].name == "Demo tempo run",
            "the new title",
        )

        step("the athlete deletes the second one; Strava pushes a delete event")
        http.delete(f"{control}/activities/{ids[1]}")
        await_state(engine, lambda rows: ids[1] not in rows, "the deletion")

    step("what landed in the database")
    print_activities(engine)
    print_inbox(engine)


def await_job(engine: Engine, job_id: int) -> None:
    def finished() -> SyncJob | None:
        with Session(engine) as session:
            job = session.get(SyncJob, job_id)
        return job if job is not None and job.status == "completed" else None

    started = time.monotonic()
    job = wait_until(finished, timeout=TIMEOUT, what="the backfill job")
    assert isinstance(job, SyncJob)
    print(
        f"   sync job {job_id} completed after {1000 * (time.monotonic() - started):.0f} ms: "
        f"{job.pages} list calls, {job.new} new activities"
    )


def _complete(rows: dict[int, Activity], activity_id: int) -> bool:
    return activity_id in rows and rows[activity_id].hydration_status == "complete"


def await_state(
    engine: Engine, condition: Callable[[dict[int, Activity]], bool], what: str
) -> None:
    started = time.monotonic()

    def check() -> bool:
        with Session(engine) as session:
            rows = {a.id: a for a in session.exec(select(Activity)).all()}
        return condition(rows)

    wait_until(check, timeout=TIMEOUT, what=what, interval=0.05)
    print(f"   {what}: in the database after {1000 * (time.monotonic() - started):.0f} ms")


def print_activities(engine: Engine) -> None:
    with Session(engine) as session:
        rows = session.exec(select(Activity).order_by(col(Activity.start_date).desc())).all()
    header = f"{'id':>12}  {'name':<28} {'sport':<12} {'km':>7} {'start (local)':<17} hydration"
    print(header)
    print("-" * len(header))
    shown = 6
    for a in rows[:shown]:
        km = f"{(a.distance or 0) / 1000:.2f}"
        local = a.start_date_local.strftime("%Y-%m-%d %H:%M") if a.start_date_local else ""
        laps = len((a.raw_detail or {}).get("laps", []))
        print(
            f"{a.id:>12}  {(a.name or '')[:28]:<28} {a.sport_type or '':<12} {km:>7} "
            f"{local:<17} {a.hydration_status} ({laps} laps)"
        )
    older = rows[shown:]
    if older:
        complete = sum(a.hydration_status == "complete" for a in older)
        print(f"{'':>12}  … and {len(older)} older ones from the backfill, {complete} complete")


def print_inbox(engine: Engine) -> None:
    with Session(engine) as session:
        counts: list[Any] = list(
            session.exec(
                select(InboxEvent.aspect_type, InboxEvent.status, func.count())
                .group_by(col(InboxEvent.aspect_type), col(InboxEvent.status))
                .order_by(col(InboxEvent.aspect_type))
            ).all()
        )
    print("\nwebhook inbox:")
    for aspect, status, count in counts:
        print(f"  {aspect:<8} {status:<10} {count}")


if __name__ == "__main__":
    sys.exit(main())
