"""The broker goes down during a burst of events: Strava still gets its 200s, and every event
is processed once the broker is back, through the relay (issue 5; README "persist before ack").

The web process and the scheduler (the relay) reach Redis through a TCP proxy that the test
cuts and restores; the worker talks to Redis directly, so only the hand-off is interrupted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.processes import connect, subscribe, web, worker
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select
from support import FakeStrava, service_env

from service.launch import command, running, wait_until
from service.models import Activity, HydrationStatus, InboxEvent, InboxStatus

pytestmark = pytest.mark.e2e

DEADLINE = 45.0
BURST = 12


class SeveringProxy:
    """A TCP proxy to `upstream` on a loopback port; `sever()` drops every connection and
    refuses new ones until `restore()`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
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

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(redis_url: str) -> Iterator[SeveringProxy]:
    parsed = make_url(redis_url)
    severing = SeveringProxy((parsed.host or "127.0.0.1", parsed.port or 6379))
    yield severing
    severing.close()


def test_a_burst_during_a_broker_outage_is_processed_after_it_returns(
    strava: FakeStrava,
    engine: Engine,
    database_url: str,
    redis_url: str,
    proxy: SeveringProxy,
    tmp_path: Path,
) -> None:
    db_number = make_url(redis_url).database or "0"
    env = service_env(
        database_url, strava, redis_url, RELAY_AFTER_SECONDS="1", RELAY_INTERVAL_SECONDS="0.5"
    )
    through_proxy = {**env, "BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{db_number}"}
    with (
        worker(env, tmp_path, redis_url),
        web(through_proxy, tmp_path) as url,
        running(
            command("scheduler"),
            env=through_proxy,
            cwd=tmp_path,
            log_file=tmp_path / "scheduler.log",
        ),
    ):
        athlete_id = connect(url)
        subscribe(url, env)
        proxy.sever()

        created = [strava.emulator.create_activity(athlete_id)["id"] for _ in range(BURST)]
        assert strava.emulator.wait_for_deliveries(timeout=DEADLINE)
        acknowledged = [d for d in strava.emulator.deliveries if d.status == 200]
        with Session(engine) as session:
            waiting = session.exec(select(InboxEvent.status)).all()
        proxy.restore()

        def all_hydrated() -> bool:
            with Session(engine) as session:
                done = session.exec(
                    select(Activity.id)
                    .where(col(Activity.id).in_(created))
                    .where(col(Activity.hydration_status) == HydrationStatus.COMPLETE)
                ).all()
            return len(done) == BURST

        wait_until(all_hydrated, timeout=DEADLINE, what=f"{BURST} hydrated activities")

    assert len(acknowledged) == BURST
    assert waiting == [InboxStatus.RECEIVED.value] * BURST
