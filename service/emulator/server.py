"""Serve an emulator over real HTTP: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from service.emulator.config import EmulatorConfig
from service.emulator.emulator import Emulator

log = logging.getLogger(__name__)


class BackgroundServer:
    """Any ASGI app under uvicorn on a loopback port in a daemon thread; ``port=0`` picks one.

    The socket is bound here, before the thread starts, so ``url`` is known at once and no
    other process can take the port in between. Tests also use it for webhook callbacks.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        # h11, not httptools (uvicorn's choice once uvicorn[standard] is installed): h11 sends
        # header names as given, so the emulator keeps Strava's wire casing.
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, http="h11"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; return once uvicorn accepts connections (or raise on timeout)."""
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"asgi-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        ticker = threading.Event()
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server did not start on {self.url}")
            ticker.wait(0.01)
        log.info("listening on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for it (in-flight requests get a short grace period)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmulatorServer(BackgroundServer):
    """The emulator on a real port: ``url`` is the root, plus ``api_url`` and ``oauth_url``."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(emulator.app, host, port)
        self.emulator = emulator

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    @property
    def oauth_url(self) -> str:
        return f"{self.url}/oauth"

    def stop(self, timeout: float = 10.0) -> None:
        """Release requests held by ``timeout_next`` first, so shutdown is quick."""
        self.emulator.closing.set()
        super().stop(timeout)


def run(config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted (``strava-ingest emulator --port N``)."""
    emulator = Emulator(config)
    log.info(
        "Strava emulator on http://%s:%d (client_id %d, athletes %s)",
        host,
        port,
        emulator.config.client_id,
        emulator.athlete_ids,
    )
    try:
        uvicorn.run(
            emulator.app, host=host, port=port, log_level="info", lifespan="off", http="h11"
        )
    finally:
        emulator.close()
